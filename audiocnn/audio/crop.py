"""Cut waves to a fixed length: one crop (training, centre evaluation) or sliding windows.

Example:
    >>> fix_length(np.ones(10, np.float32), 4, mode="center").shape
    (4,)
    >>> sliding_windows(np.ones(10, np.float32), 4, 3).shape   # starts 0, 3, 6; last padded
    (3, 4)
"""
from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["fix_length", "num_windows", "sliding_windows"]


def fix_length(
    wave: np.ndarray,
    num_samples: int,
    *,
    mode: Literal["random", "center", "start"] = "center",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Crop or zero-pad ``(time,)`` to ``(num_samples,)``.

    Args:
        wave: ``(time,)`` samples.
        num_samples: output length.
        mode: ``random``: a random crop, or the wave at a random offset in zeros when shorter;
            ``center``: centre crop, or the wave centred in zeros; ``start``: the first
            ``num_samples``, zero-padded at the end.
        rng: required for ``random`` so crops are reproducible.

    Returns:
        ``(num_samples,)`` float32, a new array (never a view of ``wave``).
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if mode not in ("random", "center", "start"):
        raise ValueError(f"mode must be 'random', 'center' or 'start', got {mode!r}")
    if mode == "random" and rng is None:
        raise ValueError("fix_length(mode='random') needs rng=np.random.default_rng(seed) for reproducible crops")
    wave = np.asarray(wave)
    n = wave.shape[0]
    slack = abs(n - num_samples)
    if mode == "start":
        offset = 0
    elif mode == "center":
        offset = slack // 2
    else:
        offset = int(rng.integers(0, slack + 1))
    if n >= num_samples:
        return np.array(wave[offset:offset + num_samples], dtype=np.float32)
    out = np.zeros(num_samples, dtype=np.float32)
    out[offset:offset + n] = wave
    return out


def num_windows(length: int, num_samples: int, hop_samples: int) -> int:
    """How many windows :func:`sliding_windows` makes for a wave of ``length`` samples."""
    if num_samples <= 0 or hop_samples <= 0:
        raise ValueError(f"num_samples and hop_samples must be positive, got {num_samples}, {hop_samples}")
    return 1 + -(-max(0, length - num_samples) // hop_samples)


def sliding_windows(wave: np.ndarray, num_samples: int, hop_samples: int) -> np.ndarray:
    """Windows of ``num_samples`` every ``hop_samples`` that together cover the whole wave.

    Args:
        wave: ``(time,)`` samples.
        num_samples: window length.
        hop_samples: distance between window starts.

    Returns:
        ``(n_windows, num_samples)`` float32 with ``n_windows >= 1``; window ``i`` starts at
        ``i * hop_samples``; the last one reaches the end of the wave and is zero-padded past it.
    """
    wave = np.asarray(wave)
    n = num_windows(wave.shape[0], num_samples, hop_samples)
    total = (n - 1) * hop_samples + num_samples
    padded = np.zeros(total, dtype=np.float32)
    padded[:wave.shape[0]] = wave[:total]
    starts = np.arange(n) * hop_samples
    return padded[starts[:, None] + np.arange(num_samples)[None, :]]
