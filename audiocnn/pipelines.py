"""What ``audiocnn train`` does, end to end: train, then evaluate the best checkpoint on every test split and
write the report, with the data decoded once, the best checkpoint loaded once and each test split run once.

    audiocnn train recipes/digits.yaml optim.lr=3e-4
    audiocnn train --resume runs/digits/20260101-120000
    audiocnn train --resume runs/digits/20260101-120000 trainer.epochs=60    # extend it
    torchrun --nproc_per_node=4 -m audiocnn train recipes/digits.yaml     # see audiocnn.engine.distributed
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from audiocnn.config import Config
from audiocnn.engine import train as fit
from audiocnn.engine.logging import RunLogger
from audiocnn.evaluation.evaluate import evaluate_model
from audiocnn.evaluation.report import write_report
from audiocnn.runs import load_run

__all__ = ["train"]


def train(cfg: Config | None, *, resume: str | Path | None = None, overrides: Sequence[str] = (),
          quiet: bool = False) -> Path:
    """Train a recipe (or resume a run, with ``overrides`` of the keys that may change: see
    :func:`audiocnn.engine.train`), evaluate and report; returns the run folder.

    Under torchrun every process trains; rank 0 alone evaluates the test splits (``test`` and
    ``data.extra_tests``) and writes ``report.html`` (``trainer.report``).
    """
    trained = fit(cfg, resume=resume, overrides=overrides, quiet=quiet)
    if not trained.is_main:
        return trained.run_dir
    run_dir, data, cfg = trained.run_dir, trained.data, trained.cfg  # the best checkpoint's may predate a resume
    log = RunLogger(run_dir, quiet=quiet)
    model, _, labels, _ = load_run(run_dir, checkpoint="best", device=trained.device)
    evaluations = {}
    for split in [name for name in data.loaders if name.startswith("test")]:
        ev = evaluate_model(model, cfg, labels, data, run_dir, split=split, checkpoint="best", quiet=True)
        evaluations[split] = ev
        log.info(f"{split} (best checkpoint): " + " | ".join(f"{k} {v:.4f}" for k, v in ev.metrics.items()
                                                             if isinstance(v, float)))
    if cfg.trainer.report:
        try:  # a report must never fail a finished training
            path = write_report(run_dir, data=data, model=model, checkpoint="best", evaluation=evaluations.get("test"))
            log.info(f"report: {path}")
        except Exception as e:  # noqa: BLE001
            log.info(f"warning: report.html not written ({type(e).__name__}: {e}); retry: audiocnn report {run_dir}")
    return run_dir
