"""``audiocnn evaluate RUN_DIR``: test-split metrics, confusion matrix (PNG and CSV), per-class report.

Files go to ``RUN_DIR/eval/``: ``{split}_metrics.json``, ``{split}_report.json``,
``{split}_confusion.csv``, ``{split}_confusion.png`` and ``{split}_predictions.csv``. A split is
``train``, ``val``, ``test`` or an extra test set of ``data.extra_tests`` (``test_inverted``).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiocnn.config import Config
from audiocnn.core.errors import DataError
from audiocnn.core.io import atomic_write, atomic_write_text, write_json
from audiocnn.data import Example
from audiocnn.inference import evaluate_loader
from audiocnn.modalities import Classifier, Data
from audiocnn.runs import load_data, load_run
from audiocnn.tasks import get_task

__all__ = ["Evaluation", "evaluate_model", "evaluate_run", "plot_confusion"]


@dataclass
class Evaluation:
    """One split's clip-level outputs and metrics, computed once; the report reads them instead of running again."""

    split: str
    checkpoint: str
    metrics: dict[str, float]
    outputs: np.ndarray
    targets: np.ndarray
    examples: list[Example]


def plot_confusion(cm: np.ndarray, labels: list[str], path: str | Path, title: str = "") -> None:
    """Row-normalised confusion matrix with counts, saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def evaluate_model(model: Classifier, cfg: Config, labels: list[str], data: Data, run_dir: str | Path, *,
                   split: str = "test", checkpoint: str = "best", quiet: bool = False) -> Evaluation:
    """Run ``model`` over one split once and write the artefacts listed in the module docstring."""
    run_dir = Path(run_dir)
    if split not in data.loaders:
        raise DataError(f"split {split!r} is empty for data.name={cfg.data.name!r}; choose from {', '.join(data.loaders)}")
    task = get_task(cfg.data.task)
    device = next(model.parameters()).device
    outputs, targets, loss = evaluate_loader(model, data.loaders[split], task.name, device,
                                             precision=cfg.trainer.precision)
    metrics = {"loss": loss, **task.metrics(outputs, targets, labels, cfg.trainer.top_k)}
    out = run_dir / "eval"
    skipped = sum(1 for name, _, _ in data.splits.skipped if name == split)  # bad files data.on_error: skip left out
    write_json(out / f"{split}_metrics.json", {"split": split, "checkpoint": checkpoint, "n": int(len(targets)),
                                               "skipped": skipped, **metrics})
    examples = data.splits.parts()[split]
    _write_predictions(out / f"{split}_predictions.csv", examples, outputs, targets, labels, task.name)
    if task.classes:
        write_json(out / f"{split}_report.json", task.report(outputs, targets, labels))
    confusion = task.confusion(outputs, targets, labels)
    if confusion is not None:
        names, cm = confusion
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["true\\pred", *names])
        for name, row in zip(names, cm):
            w.writerow([name, *row.tolist()])
        atomic_write_text(out / f"{split}_confusion.csv", buf.getvalue())
        acc = metrics.get("accuracy", float("nan"))
        plot_confusion(cm, names, out / f"{split}_confusion.png", title=f"{cfg.name} {split}: accuracy {acc:.3f}")
    if not quiet:
        print(f"{run_dir} [{split}, {checkpoint}] " + " | ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        print(f"wrote {out}/")
    return Evaluation(split, checkpoint, metrics, outputs, targets, list(examples))


def evaluate_run(run_dir: str | Path, *, split: str = "test", checkpoint: str = "best", data: Data | None = None,
                 device: str | torch.device | None = None, quiet: bool = False) -> dict[str, float]:
    """``audiocnn evaluate``: load a run's checkpoint and evaluate it on one split (:func:`evaluate_model`)."""
    model, cfg, labels, _ = load_run(run_dir, checkpoint=checkpoint, device=device)
    if data is None:
        data = load_data(cfg, log=(lambda *_: None) if quiet else print)
    return evaluate_model(model, cfg, labels, data, run_dir, split=split, checkpoint=checkpoint, quiet=quiet).metrics


def _write_predictions(path: Path, examples, outputs: np.ndarray, targets: np.ndarray, labels: list[str], task: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    if task == "multiclass":
        w.writerow(["path", "target", "predicted", "confidence"])
        for ex, o, t in zip(examples, outputs, targets):
            w.writerow([ex.path, labels[int(t)], labels[int(o.argmax())], f"{o.max():.4f}"])
    elif task == "regression":
        w.writerow(["path", *[f"target_{n}" for n in labels], *[f"pred_{n}" for n in labels]])
        for ex, o, t in zip(examples, outputs, targets):
            w.writerow([ex.path, *np.ravel(t).tolist(), *np.ravel(o).round(5).tolist()])
    else:
        w.writerow(["path", "target", "probabilities"])
        for ex, o, t in zip(examples, outputs, targets):
            w.writerow([ex.path, np.ravel(t).tolist(), np.round(np.ravel(o), 4).tolist()])
    atomic_write_text(path, buf.getvalue())
