"""Filterbanks and windows the front-ends are built from, in NumPy and torch alone.

librosa's definitions, computed here so that building a front-end does not import librosa and scipy.signal (about
2 s of every command's start-up); tests/test_features.py checks them against ``librosa.filters.mel`` and
``scipy.signal.get_window``.

- :func:`mel_frequencies`: ``librosa.mel_frequencies`` (Slaney's auditory toolbox scale, or HTK's).
- :func:`mel_filters`: ``librosa.filters.mel`` as ``(n_mels, 1 + n_fft // 2)``; with ``warp``, each triangle read
  at warped bin frequencies (VTLP).
- :func:`get_window`: ``scipy.signal.get_window(name, length, fftbins=True)``.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

__all__ = ["get_window", "hz_to_mel", "mel_filters", "mel_frequencies", "mel_to_hz"]

# Slaney's scale: linear (200/3 Hz per mel) up to 1 kHz, logarithmic (27 mels per factor 6.4) above
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray, *, htk: bool = False) -> np.ndarray:
    """Frequencies in Hz to mels, elementwise (float64)."""
    hz = np.asarray(hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log_part, hz / _F_SP)


def mel_to_hz(mels: np.ndarray, *, htk: bool = False) -> np.ndarray:
    """Mels to frequencies in Hz, elementwise (float64): the inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mels, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mels >= _MIN_LOG_MEL, log_part, _F_SP * mels)


def mel_frequencies(n_mels: int, *, fmin: float, fmax: float, htk: bool = False) -> np.ndarray:
    """``n_mels`` frequencies (Hz) evenly spaced in mels from ``fmin`` to ``fmax``, both included."""
    lo, hi = hz_to_mel(np.array([fmin, fmax]), htk=htk)
    return mel_to_hz(np.linspace(lo, hi, n_mels), htk=htk)


def mel_filters(*, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool = False,
                norm: Optional[str] = "slaney", warp: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Triangular mel filters, ``(n_mels, 1 + n_fft // 2)`` float32: ``librosa.filters.mel`` when ``warp`` is None.

    Filter ``m`` rises from ``mel_f[m]`` to its peak at ``mel_f[m + 1]`` and falls to ``mel_f[m + 2]``, with
    ``mel_f = mel_frequencies(n_mels + 2, ...)``; ``norm="slaney"`` scales each to unit area (``2 / width``),
    ``None`` leaves peaks at 1. ``warp`` maps the bins' frequencies (Hz) before the triangles are read there.
    """
    if norm not in ("slaney", None):
        raise ValueError(f"norm={norm!r}: expected 'slaney' or None")
    bins = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    if warp is not None:
        bins = np.asarray(warp(bins), dtype=np.float64)
    mel_f = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - bins[None, :]
    weights = np.maximum(0.0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


_TORCH_WINDOWS = {  # names scipy.signal.get_window takes, each tested against it
    "hann": torch.hann_window, "hamming": torch.hamming_window,
    "blackman": torch.blackman_window, "bartlett": torch.bartlett_window,
    "boxcar": lambda n, **kw: torch.ones(n, dtype=kw["dtype"]),
    "rectangular": lambda n, **kw: torch.ones(n, dtype=kw["dtype"]),
}


def get_window(name: str, length: int) -> np.ndarray:
    """A periodic (DFT-even) window of ``length`` samples, float64, for a name ``scipy.signal.get_window`` takes.

    The common windows are computed with torch; any other name goes to scipy (imported only then), whose
    ``ValueError`` names what it does not know."""
    make = _TORCH_WINDOWS.get(name) if isinstance(name, str) else None
    if make is not None:
        return make(length, periodic=True, dtype=torch.float64).numpy()
    import scipy.signal

    return scipy.signal.get_window(name, length, fftbins=True)
