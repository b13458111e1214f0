"""``audiocnn evaluate RUN_DIR``: test-split metrics, confusion matrix (PNG and CSV), per-class report.

Files go to ``RUN_DIR/eval/``: ``{split}_metrics.json``, ``{split}_report.json``,
``{split}_confusion.csv``, ``{split}_confusion.png`` and ``{split}_predictions.csv``. A split is
``train``, ``val``, ``test`` or an extra test set of ``data.extra_tests`` (``test_inverted``).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiocnn.config import Config, config_from_dict
from audiocnn.engine.checkpoint import load_checkpoint
from audiocnn.engine.logging import write_json
from audiocnn.evaluation.metrics import classification_report, compute_metrics, confusion_matrix
from audiocnn.utils import atomic_write, atomic_write_text, pick_device

__all__ = ["evaluate_run", "load_run", "plot_confusion"]


def load_run(run_dir: str | Path, *, checkpoint: str = "best", device: str | torch.device | None = None):
    """Rebuild the model of a run from its checkpoint: ``(model, cfg, labels, task)``, in eval mode."""
    from audiocnn.models.classifier import build_classifier

    run_dir = Path(run_dir)
    path = Path(checkpoint) if checkpoint.endswith(".pt") else run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.exists() and checkpoint == "best":
        path = run_dir / "checkpoints" / "last.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}; is {run_dir} an audiocnn run folder "
                                "(made by `audiocnn train`)?")
    state = load_checkpoint(path)
    cfg: Config = config_from_dict(state["config"])
    device = pick_device("auto") if device is None else torch.device(device)
    model = build_classifier(cfg, state["labels"], pretrained=False)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg, state["labels"], state["task"]


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


def evaluate_run(run_dir: str | Path, *, split: str = "test", checkpoint: str = "best", data: Any = None,
                 device: str | torch.device | None = None, quiet: bool = False) -> dict[str, float]:
    """Evaluate a run's checkpoint on one split and write the artefacts listed in the module docstring."""
    from audiocnn.engine.loop import evaluate_loader, load_data

    run_dir = Path(run_dir)
    model, cfg, labels, task = load_run(run_dir, checkpoint=checkpoint, device=device)
    device = next(model.parameters()).device
    if data is None:
        data = load_data(cfg, log=(lambda *_: None) if quiet else print)
    if split not in data.loaders:
        raise ValueError(f"split {split!r} is empty for data.name={cfg.data.name!r}; choose from {', '.join(data.loaders)}")
    outputs, targets, loss = evaluate_loader(model, data.loaders[split], task, device, precision=cfg.trainer.precision)
    metrics = {"loss": loss, **compute_metrics(task, outputs, targets, labels, cfg.trainer.top_k)}
    out = run_dir / "eval"
    write_json(out / f"{split}_metrics.json", {"split": split, "checkpoint": checkpoint, "n": int(len(targets)), **metrics})
    examples = data.splits.parts()[split]
    _write_predictions(out / f"{split}_predictions.csv", examples, outputs, targets, labels, task)
    if task != "regression":
        write_json(out / f"{split}_report.json", classification_report(task, outputs, targets, labels))
    if task in ("multiclass", "binary"):
        names = labels if task == "multiclass" else (labels if len(labels) == 2 else ["negative", "positive"])
        cm = confusion_matrix(task, outputs, targets, len(names))
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
    return metrics


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
