"""``audiocnn predict RUN_DIR file.wav folder/``: top-k labels with probabilities.

Long files are cut into windows of the recipe's ``data.duration`` (hop ``data.window_hop``) and the
window outputs are averaged; windows go through the model in batches, so memory stays bounded.
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


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders searched recursively for audio files (sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
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
        if task == "multiclass" or task == "multilabel":
            order = np.argsort(-probs)[:top_k]
            entry["top"] = [(labels[i], float(probs[i])) for i in order]
        elif task == "binary":
            pos = float(probs[0])
            names = labels if len(labels) == 2 else ["negative", "positive"]
            entry["top"] = sorted([(names[1], pos), (names[0], 1 - pos)], key=lambda t: -t[1])
        else:
            entry["values"] = {name: float(v) for name, v in zip(labels, probs)}
        results.append(entry)
    return results
