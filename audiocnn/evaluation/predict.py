"""``audiocnn predict RUN_DIR file.wav folder/``: top-k labels with probabilities.

Long files are cut into windows of the recipe's ``data.duration`` (hop ``data.window_hop``) and the
window outputs are averaged; windows go through the model in batches, so memory stays bounded.
A run of an image recipe (``frontend.kind: image``) takes image files (PNG, JPEG ...), resized and converted
as in training.

``audiocnn predict NAME --weights W file.wav``: a released model (``panns_cnn14`` ..., see
:mod:`audiocnn.models.released`) with its own front-end and label names. A file up to the model's training
clip length (``clip_s``, 10 s for PANNs) goes through whole, as the reference taggers take it; a longer one in
windows of ``clip_s`` every ``hop`` seconds (default ``clip_s``), averaged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from audiocnn.audio import AUDIO_EXTENSIONS, AudioError, load_audio, sliding_windows
from audiocnn.audio.io import find_inputs
from audiocnn.build import build_released
from audiocnn.core.runtime import pick_device
from audiocnn.data.images import ImageError
from audiocnn.modalities import Classifier, modality_of
from audiocnn.runs import load_run
from audiocnn.tasks import get_task

__all__ = ["describe_outputs", "predict_files", "predict_released", "window_outputs"]

Reader = Callable[[Path], tuple[torch.Tensor, dict]]


@torch.no_grad()
def predict_files(run_dir: str | Path, inputs: Iterable[str | Path], *, top_k: int = 3, checkpoint: str = "best",
                  device: str | None = None, hop: float | None = None, batch_size: int = 64) -> list[dict]:
    """One result per file: ``{"path", "top": [(label, prob), ...]}`` or ``{"path", "error"}``.

    Audio files are scored over sliding windows (``hop`` seconds apart, default ``data.window_hop``) whose
    outputs are averaged; images as one input. A bad file gives an ``error`` entry and never stops the others.
    """
    model, cfg, labels, task = load_run(run_dir, checkpoint=checkpoint, device=device)
    modality = modality_of(cfg)
    return _predict(model, lambda path: modality.read_file(cfg, path, hop=hop), modality.extensions, inputs,
                    labels=labels, task=task, top_k=top_k, batch_size=batch_size)


@torch.no_grad()
def predict_released(name: str, inputs: Iterable[str | Path], *, weights: str | Path, top_k: int = 3,
                     device: str | None = None, hop: float | None = None, batch_size: int = 8) -> list[dict]:
    """:func:`predict_files` for a released model (``panns_cnn14`` ...) and its weights file.

    Raises:
        UnknownNameError: not a released model. PretrainedError: weights that do not fit (naming keys, shapes
            and what the file looks like).
    """
    model, entry = build_released(name, weights)
    model.to(pick_device(device))
    sr, clip = entry.sample_rate, int(round(entry.clip_s * entry.sample_rate))
    step = max(1, int(round((hop or entry.clip_s) * sr)))
    shortest = int(round(entry.embed_window_s * sr))

    def read(path: Path) -> tuple[torch.Tensor, dict]:
        wave = load_audio(path, sr)
        if len(wave) <= clip:  # whole, zero-padded only up to the shortest input the network takes
            windows = np.pad(wave, (0, max(0, shortest - len(wave))))[None]
        else:
            windows = sliding_windows(wave, clip, step)
        info = {"duration_s": round(len(wave) / sr, 3), "windows": len(windows)}
        return torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)), info

    return _predict(model, read, AUDIO_EXTENSIONS, inputs, labels=entry.label_names(), task=entry.task,
                    top_k=top_k, batch_size=batch_size)


def _predict(model: torch.nn.Module, read: Reader, extensions: tuple[str, ...], inputs: Iterable[str | Path], *,
             labels: list[str], task: str, top_k: int, batch_size: int) -> list[dict]:
    results = []
    for path, _ in find_inputs(inputs, extensions):
        try:
            x, info = read(path)
        except (AudioError, ImageError) as e:
            results.append({"path": str(path), "error": e.reason})
            continue
        probs = window_outputs(model, task, x, batch_size=batch_size).mean(0).numpy()
        results.append(describe_outputs({"path": str(path), **info}, probs, labels, task, top_k))
    return results


@torch.no_grad()
def window_outputs(model: Classifier, task: str, x: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
    """The task's outputs (probabilities) for a stack of model inputs, ``batch_size`` at a time.

    Args:
        model: in eval mode, on its device.
        x: ``(n, ...)`` inputs as :meth:`Modality.read_file` gives them (audio windows ``(n, samples)``).

    Returns:
        ``(n, outputs)`` float32 on the CPU (multiclass: ``(n, classes)``).
    """
    dev = next(model.parameters()).device
    t = get_task(task)
    outs = [t.outputs(model(x[i:i + batch_size].to(dev))).reshape(len(x[i:i + batch_size]), -1).cpu()
            for i in range(0, len(x), batch_size)]
    return torch.cat(outs)


def describe_outputs(entry: dict, probs: np.ndarray, labels: list[str], task: str, top_k: int) -> dict:
    """``entry`` with ``top`` (``[(label, prob), ...]``, best first) or, for regression, ``values``, from the
    clip's ``(outputs,)`` probabilities."""
    if task == "multiclass" or task == "multilabel":
        order = np.argsort(-probs)[:top_k]
        entry["top"] = [(labels[i], float(probs[i])) for i in order]
    elif task == "binary":
        pos = float(probs[0])
        names = labels if len(labels) == 2 else ["negative", "positive"]
        entry["top"] = sorted([(names[1], pos), (names[0], 1 - pos)], key=lambda t: -t[1])[:top_k]
    else:
        entry["values"] = {name: float(v) for name, v in zip(labels, probs)}
    return entry
