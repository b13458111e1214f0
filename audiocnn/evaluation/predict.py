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

from audiocnn.engine.tasks import task_outputs
from audiocnn.evaluation.evaluate import load_run

__all__ = ["AUDIO_EXTENSIONS", "expand_inputs", "predict_files"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus")


def expand_inputs(inputs: Iterable[str | Path], extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """Files as given; folders searched recursively for files with ``extensions`` (sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in extensions and f.is_file())
        else:
            out.append(p)
    return out


@torch.no_grad()
def predict_files(run_dir: str | Path, inputs: Iterable[str | Path], *, top_k: int = 3, checkpoint: str = "best",
                  device: str | None = None, hop: float | None = None, batch_size: int = 64) -> list[dict]:
    """One result per file: ``{"path", "top": [(label, prob), ...]}`` or ``{"path", "error"}``.

    A bad file gives an ``error`` entry and never stops the others.
    """
    from audiocnn.audio import AudioError, load_audio, sliding_windows

    model, cfg, labels, task = load_run(run_dir, checkpoint=checkpoint, device=device)
    dev = next(model.parameters()).device
    if cfg.frontend.kind == "image":
        return _predict_images(model, cfg, labels, task, inputs, top_k=top_k, batch_size=batch_size)
    sr = cfg.data.sample_rate
    n = int(round(cfg.data.duration * sr))
    hop_n = int(round((hop if hop is not None else cfg.data.window_hop) * sr))
    results = []
    for path in expand_inputs(inputs):
        try:
            wave = load_audio(path, sr)
        except AudioError as e:
            results.append({"path": str(path), "error": e.reason})
            continue
        windows = sliding_windows(wave, n, hop_n)
        outs = []
        for i in range(0, len(windows), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(windows[i:i + batch_size])).to(dev)
            outs.append(task_outputs(task, model(chunk)).reshape(len(chunk), -1).cpu())
        probs = torch.cat(outs).mean(0).numpy()
        entry: dict = {"path": str(path), "duration_s": round(len(wave) / sr, 3), "windows": len(windows)}
        results.append(_describe(entry, probs, labels, task, top_k))
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


@torch.no_grad()
def _predict_images(model, cfg, labels: list[str], task: str, inputs: Iterable[str | Path], *, top_k: int,
                    batch_size: int) -> list[dict]:
    """One entry per image file, decoded at the run's ``data.image_size`` and ``data.channels``."""
    from audiocnn.data.images import IMAGE_EXTENSIONS, ImageError, ImageStore, image_shape

    channels, height, width = image_shape(cfg.data)
    store = ImageStore(size=(height, width), channels=channels, max_bytes=0)
    dev = next(model.parameters()).device
    results: list[dict] = []
    good: list[tuple[int, np.ndarray]] = []
    for path in expand_inputs(inputs, IMAGE_EXTENSIONS):
        try:
            good.append((len(results), store.load(str(path))))
            results.append({"path": str(path)})
        except ImageError as e:
            results.append({"path": str(path), "error": e.reason})
    for i in range(0, len(good), batch_size):
        chunk = good[i:i + batch_size]
        x = torch.from_numpy(np.stack([image for _, image in chunk])).to(dev).float().div_(255.0)
        probs = task_outputs(task, model(x)).reshape(len(chunk), -1).cpu().numpy()
        for (j, _), p in zip(chunk, probs):
            _describe(results[j], p, labels, task, top_k)
    return results
