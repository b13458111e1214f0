"""Run folders as a service: create one race-free, find its checkpoints, rebuild its model and its data.

A run folder is ``runs/<recipe>/<timestamp>/`` with ``config.yaml``, ``metrics.csv``, ``log.txt``, ``labels.json``,
``env.txt`` and ``checkpoints/{best,last}.pt``. Training, evaluation, ``predict``, ``embed``, ``report`` and the
HEAR module all open runs through here.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from audiocnn.build import build_classifier
from audiocnn.config import Config, config_from_dict
from audiocnn.core.checkpoint import load_checkpoint
from audiocnn.core.errors import CheckpointError, ConfigError
from audiocnn.core.io import atomic_write_text, make_dirs
from audiocnn.core.runtime import pick_device
from audiocnn.modalities import Classifier, Data, modality_of

__all__ = ["LoadedRun", "checkpoint_path", "load_data", "load_run", "make_run_dir", "read_skipped", "write_skipped"]


def make_run_dir(output_dir: str | Path, name: str) -> Path:
    """A new, unique ``output_dir/name/YYYYmmdd-HHMMSS[-i]`` folder with ``checkpoints/`` inside.

    The folder is claimed by ``mkdir`` itself (no check-then-create), so runs started in the same second, in
    several processes, each get their own.
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = Path(output_dir) / name
    make_dirs(parent, setting="trainer.output_dir")
    for i in range(10_000):
        path = parent / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / "checkpoints").mkdir()
        return path
    raise FileExistsError(f"{parent}: 10000 run folders named {stamp}*; remove some")


def checkpoint_path(run_dir: str | Path, checkpoint: str = "best") -> Path:
    """``best``, ``last`` or a ``.pt`` path; ``best`` falls back to ``last`` when no epoch improved.

    Raises:
        ConfigError: another name (``worst``, ``model.pth``).
        CheckpointError: the run folder has no checkpoint, or the ``.pt`` file does not exist.
    """
    run_dir = Path(run_dir)
    if checkpoint.endswith(".pt"):
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"--checkpoint {checkpoint}: no such file; give best, last or an existing .pt file "
                                  f"(the run's are in {run_dir / 'checkpoints'})")
        return path
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"--checkpoint {checkpoint!r}: use best, last or the path of a .pt file")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a folder; give a run folder made by `audiocnn train`")
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.exists() and checkpoint == "best":
        path = run_dir / "checkpoints" / "last.pt"
    if not path.exists():
        raise CheckpointError(f"no checkpoint in {run_dir / 'checkpoints'}; is {run_dir} an audiocnn run folder "
                              "(made by `audiocnn train`)?")
    return path


class LoadedRun(NamedTuple):
    """A run's model (eval mode, on its device), resolved recipe, label names and task."""

    model: Classifier
    cfg: Config
    labels: list[str]
    task: str


def load_run(run_dir: str | Path, *, checkpoint: str = "best", device: str | torch.device | None = None) -> LoadedRun:
    """Rebuild the model of a run from its checkpoint: ``(model, cfg, labels, task)``, in eval mode."""
    state = load_checkpoint(checkpoint_path(run_dir, checkpoint))
    cfg = config_from_dict(state["config"])
    device = pick_device(device)
    model = build_classifier(cfg, state["labels"], pretrained=False)
    model.load_state_dict(state["model"])
    return LoadedRun(model.to(device).eval(), cfg, state["labels"], state["task"])


def load_data(cfg: Config, *, log: Callable[[str], None] = print) -> Data:
    """Build the splits, decode every file once (bad files reported before any epoch), make the loaders."""
    data = modality_of(cfg).load_data(cfg)
    log(f"data: {cfg.data.name} | {len(data.splits.labels)} labels | "
        + " | ".join(f"{name} {len(examples)}" for name, examples in data.splits.parts().items()))
    return data


SKIPPED_FIELDS = ["split", "path", "reason"]


def write_skipped(run_dir: Path, skipped: list[tuple[str, str, str]]) -> Path | None:
    """``RUN/skipped.csv``: the files ``data.on_error: skip`` left out, one row each (none: no file)."""
    if not skipped:
        return None
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(SKIPPED_FIELDS)
    w.writerows(skipped)
    atomic_write_text(Path(run_dir) / "skipped.csv", buf.getvalue())
    return Path(run_dir) / "skipped.csv"


def read_skipped(run_dir: str | Path) -> list[dict[str, str]]:
    """The rows of ``RUN/skipped.csv`` (``[]`` when nothing was skipped)."""
    path = Path(run_dir) / "skipped.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
