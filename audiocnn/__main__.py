"""``python -m audiocnn`` and the ``audiocnn`` command. The OpenMP wait policy is set here, before torch loads
(:func:`audiocnn.core.threads.prepare_environment`); then the command line runs."""
import sys

from audiocnn.core.threads import prepare_environment


def main(argv: list[str] | None = None) -> int:
    prepare_environment()
    from audiocnn.cli import main as cli_main  # imports torch: after the environment is set

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
