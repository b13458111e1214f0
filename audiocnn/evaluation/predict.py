"""``audiocnn predict RUN_DIR file.wav folder/``: top-k labels with probabilities.

Long files are cut into windows of the recipe's ``data.duration`` (hop ``data.window_hop``) and the
window outputs are averaged; windows go through the model in batches, so memory stays bounded.
A run of an image recipe (``frontend.kind: image``) takes image files (PNG, JPEG ...), resized and converted
as in training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from audiocnn.audio import AudioError
from audiocnn.audio.io import find_inputs
from audiocnn.data.images import ImageError
from audiocnn.modalities import modality_of
from audiocnn.runs import load_run
from audiocnn.tasks import get_task

__all__ = ["predict_files"]


@torch.no_grad()
def predict_files(run_dir: str | Path, inputs: Iterable[str | Path], *, top_k: int = 3, checkpoint: str = "best",
                  device: str | None = None, hop: float | None = None, batch_size: int = 64) -> list[dict]:
    """One result per file: ``{"path", "top": [(label, prob), ...]}`` or ``{"path", "error"}``.

    Audio files are scored over sliding windows (``hop`` seconds apart, default ``data.window_hop``) whose
    outputs are averaged; images as one input. A bad file gives an ``error`` entry and never stops the others.
    """
    model, cfg, labels, task = load_run(run_dir, checkpoint=checkpoint, device=device)
    modality, t = modality_of(cfg), get_task(task)
    dev = next(model.parameters()).device
    results = []
    for path, _ in find_inputs(inputs, modality.extensions):
        try:
            x, info = modality.read_file(cfg, path, hop=hop)
        except (AudioError, ImageError) as e:
            results.append({"path": str(path), "error": e.reason})
            continue
        outs = [t.outputs(model(x[i:i + batch_size].to(dev))).reshape(len(x[i:i + batch_size]), -1).cpu()
                for i in range(0, len(x), batch_size)]
        probs = torch.cat(outs).mean(0).numpy()
        results.append(_describe({"path": str(path), **info}, probs, labels, task, top_k))
    return results


def _describe(entry: dict, probs: np.ndarray, labels: list[str], task: str, top_k: int) -> dict:
    if task == "multiclass" or task == "multilabel":
        order = np.argsort(-probs)[:top_k]
        entry["top"] = [(labels[i], float(probs[i])) for i in order]
    elif task == "binary":
        pos = float(probs[0])
        names = labels if len(labels) == 2 else ["negative", "positive"]
        entry["top"] = sorted([(names[1], pos), (names[0], 1 - pos)], key=lambda t: -t[1])
    else:
        entry["values"] = {name: float(v) for name, v in zip(labels, probs)}
    return entry
