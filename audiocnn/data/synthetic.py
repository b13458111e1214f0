"""A deterministic synthetic dataset that needs time-frequency structure to solve.

Every class is a frequency sweep that covers one band uniformly; classes differ only in the shape
of the trajectory: ``up``, ``down``, ``up_down``, ``down_up``, ``up_down_up``, ... (number of
linear segments and starting direction). Each segment spans the whole band, so every class spends
the same time at every frequency: the long-term spectrum carries no class information and a linear
model on the clip-mean spectrum stays near chance, while a model that sees time (a CNN on the
spectrogram) solves it. Per clip, the band position and width, the sweep's onset and length, the
level and the noise (SNR) are random.

Example:
    >>> root = generate("data/synthetic", num_classes=4, num_per_class=10, duration=1.0, sample_rate=16000)
    >>> sorted(p.name for p in root.iterdir())
    ['down', 'down_up', 'synthetic.json', 'up', 'up_down']
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from audiocnn.core.errors import ConfigError
from audiocnn.core.io import atomic_write, atomic_write_text, check_writable

__all__ = ["MAX_CLASSES", "SPLIT_FRACTIONS", "class_names", "generate", "synthetic_clip"]

VERSION = 1
"""Bumped whenever the generator changes, so stale folders are regenerated."""
MAX_CLASSES = 12
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
"""Official split, per class by index: the first 70 % train, the next 15 % val, the rest test."""
MARKER = "synthetic.json"
_SEED = 20240611


def class_names(num_classes: int) -> list[str]:
    """``["up", "down", "up_down", "down_up", ...]``: segments ``c // 2 + 1``, starting up when ``c`` is even."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"data.num_classes={num_classes}: the synthetic dataset has 2 to {MAX_CLASSES} classes")
    names = []
    for c in range(num_classes):
        dirs = ["up", "down"] if c % 2 == 0 else ["down", "up"]
        names.append("_".join(dirs[k % 2] for k in range(c // 2 + 1)))
    return names


def synthetic_clip(class_index: int, rng: np.random.Generator, *, duration: float, sample_rate: int) -> np.ndarray:
    """One clip of class ``class_index``.

    Args:
        class_index: ``c``: the sweep has ``c // 2 + 1`` linear segments, the first rising when ``c`` is even.
        rng: source of the per-clip randomness (band, timing, level, noise).
        duration: seconds.
        sample_rate: Hz.

    Returns:
        ``(round(duration * sample_rate),)`` float32, peak below 1.
    """
    n = int(round(duration * sample_rate))
    segments = class_index // 2 + 1
    f_lo = sample_rate * rng.uniform(0.03, 0.10)
    f_hi = f_lo + sample_rate * rng.uniform(0.10, 0.20)
    length = max(int(n * rng.uniform(0.7, 0.9)), segments * 8)
    onset = int(rng.integers(0, n - length + 1))

    # triangle-wave trajectory: each segment crosses the whole band once, so the time spent per Hz
    # (hence the average spectrum) does not depend on the number of segments
    pos = np.arange(length) / length * segments
    frac = pos - np.floor(pos)
    rising = (np.floor(pos).astype(int) + (class_index % 2)) % 2 == 0
    freq = f_lo + (f_hi - f_lo) * np.where(rising, frac, 1.0 - frac)
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate + rng.uniform(0, 2 * np.pi)
    fade = min(int(0.01 * sample_rate), length // 4)
    env = np.ones(length)
    if fade > 0:
        ramp = np.sin(np.linspace(0, np.pi / 2, fade)) ** 2
        env[:fade], env[-fade:] = ramp, ramp[::-1]

    wave = np.zeros(n)
    wave[onset:onset + length] = np.sin(phase) * env
    snr_db = rng.uniform(5.0, 20.0)
    signal_power = np.mean(wave[onset:onset + length] ** 2)
    wave += rng.standard_normal(n) * np.sqrt(signal_power / 10 ** (snr_db / 10))
    wave *= rng.uniform(0.3, 0.9) / np.max(np.abs(wave))
    return wave.astype(np.float32)


def _params(num_classes: int, num_per_class: int, duration: float, sample_rate: int) -> dict:
    return {"version": VERSION, "num_classes": num_classes, "num_per_class": num_per_class,
            "duration": float(duration), "sample_rate": int(sample_rate)}


def generate(root: str | Path, *, num_classes: int, num_per_class: int, duration: float, sample_rate: int) -> Path:
    """Write ``root/<class>/<class>_<i:04d>.wav`` (16-bit PCM) once.

    A marker file ``synthetic.json`` records the parameters; the folder is rebuilt when they change
    and left alone otherwise. The marker is written last, so an interrupted run starts over.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    if num_per_class < 1:
        raise ConfigError(f"data.num_per_class={num_per_class}: need at least one clip per class")
    if duration <= 0 or sample_rate <= 0:
        raise ConfigError(f"data.duration={duration} and data.sample_rate={sample_rate} must be positive")
    names = class_names(num_classes)
    params = _params(num_classes, num_per_class, duration, sample_rate)
    marker = root / MARKER
    if marker.is_file():
        try:
            old = json.loads(marker.read_text())
        except (OSError, ValueError):
            old = None
        if old == params:
            return root
    check_writable(root, setting="data.root")  # a read-only root fails here, in one line
    # only ever remove folders this generator makes (class names), never anything else in root
    marker.unlink(missing_ok=True)
    for name in class_names(MAX_CLASSES):
        if (root / name).is_dir():
            shutil.rmtree(root / name)
    for c, name in enumerate(names):
        for i in range(num_per_class):
            rng = np.random.default_rng([_SEED, c, i])
            wave = synthetic_clip(c, rng, duration=duration, sample_rate=sample_rate)
            buf = io.BytesIO()
            sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
            atomic_write(root / name / f"{name}_{i:04d}.wav", lambda f: f.write(buf.getvalue()),
                         setting="data.root")
    atomic_write_text(marker, json.dumps(params, indent=2) + "\n", setting="data.root")
    return root
