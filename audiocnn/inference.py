"""Outputs of a model over a loader: the one forward pass that validation, evaluation and reports share."""
from __future__ import annotations

import contextlib
from typing import Iterable

import numpy as np
import torch

from audiocnn.modalities import Classifier
from audiocnn.tasks import get_task

__all__ = ["autocast", "evaluate_loader", "progress"]


def autocast(device: torch.device, precision: str):
    """``torch.autocast`` for ``trainer.precision`` (``fp32``: no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def progress(iterable: Iterable, enabled: bool, desc: str, total: int | None = None):
    """A tqdm bar when ``enabled`` (a terminal), else the iterable itself."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm  # imported on a terminal only
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


@torch.no_grad()
def evaluate_loader(model: Classifier, loader, task: str, device: torch.device, *, precision: str = "fp32",
                    show_progress: bool = False, desc: str = "eval") -> tuple[np.ndarray, np.ndarray, float]:
    """Clip-level outputs, targets and mean loss. Windows of one clip are averaged (``clip_index``).

    Returns:
        ``outputs`` as the task's activation gives them (multiclass ``(clips, classes)``), ``targets`` ``(clips, ...)``
        and the mean loss of the clip-averaged logits.
    """
    t = get_task(task)
    model.eval()
    outputs, targets, losses, count = [], [], 0.0, 0
    for batch in progress(loader, show_progress, desc):
        wave = batch.wave.to(device)
        target = batch.target.to(device)
        with autocast(device, precision):
            logits = model(wave).float()
        n_clips = target.shape[0]
        index = batch.clip_index.to(device)
        counts = torch.bincount(index, minlength=n_clips).clamp(min=1).unsqueeze(1).float()
        clip_logits = torch.zeros(n_clips, logits.shape[1], device=device).index_add_(0, index, logits) / counts
        probs = t.outputs(logits)
        probs2d = probs.reshape(len(probs), -1)
        clip_out = torch.zeros(n_clips, probs2d.shape[1], device=device).index_add_(0, index, probs2d) / counts
        losses += t.loss(clip_logits, target).item() * n_clips
        count += n_clips
        outputs.append(clip_out.reshape(n_clips, *probs.shape[1:]).cpu().numpy())
        targets.append(target.cpu().numpy())
    if not outputs:
        return np.zeros((0,)), np.zeros((0,)), float("nan")
    return np.concatenate(outputs), np.concatenate(targets), losses / max(count, 1)
