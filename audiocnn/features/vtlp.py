"""Vocal-tract-length perturbation (Jaitly and Hinton, 2013): each training example's mel filters on a warped
frequency axis, so a voice sounds as if from a longer or shorter vocal tract, with its timing untouched.

The warp of Jaitly and Hinton's paper, with ``F = boundary * nyquist`` (0.8 by default)::

    w(f) = alpha * f                                             for f <= F * min(alpha, 1) / alpha
    w(f) = nyquist - (nyquist - F * min(alpha, 1)) / (nyquist - F * min(alpha, 1) / alpha) * (nyquist - f)   above

so ``w`` maps ``[0, nyquist]`` onto itself. Filter ``m`` of the warped bank weights bin ``f`` by the unwarped
triangle ``m`` at ``w(f)`` (librosa's triangles and Slaney normalisation, computed exactly at the warped
frequencies, as Kaldi's VTLN warps its filter edges): a tone at ``f0`` lands in the band a tone at ``alpha * f0``
fills. ``alpha`` is drawn per example from ``steps`` factors evenly spaced in ``[low, high]``; the banks are
computed once. Training only, with the torch back-end's mel kinds (``mel``, ``logmel``, ``mfcc``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from audiocnn.core.errors import ConfigError
from audiocnn.features.augment import AUGMENTS
from audiocnn.features.filters import mel_filters
from audiocnn.features.frontends import MEL_KINDS, Frontend, FrontendSettings
from audiocnn.features.kernels import FixedKernels, exact_float32
from audiocnn.features.wave_augment import factor_grid

__all__ = ["VTLP", "vtlp_warp", "warped_mel_filters"]


def vtlp_warp(freqs: np.ndarray, alpha: float, *, nyquist: float, boundary: float = 0.8) -> np.ndarray:
    """``w(f)`` of the module docstring, elementwise, in Hz."""
    f_hi = boundary * nyquist
    knee = f_hi * min(alpha, 1.0) / alpha
    slope = (nyquist - f_hi * min(alpha, 1.0)) / (nyquist - knee)
    f = np.asarray(freqs, dtype=np.float64)
    return np.where(f <= knee, alpha * f, nyquist - slope * (nyquist - f))


def warped_mel_filters(*, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool,
                       norm: str | None, alpha: float, boundary: float = 0.8) -> np.ndarray:
    """``librosa.filters.mel(...)`` with each filter read at the warped bin frequencies: ``(n_mels, 1 + n_fft // 2)``.

    ``alpha=1`` gives librosa's bank."""
    return mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm,
                       warp=lambda f: vtlp_warp(f, alpha, nyquist=sr / 2.0, boundary=boundary))


@AUGMENTS.register("vtlp")
class VTLP(FixedKernels):
    """``augment.vtlp_prob``: features of ``wave`` through ``frontend``, each chosen example's mel bank warped.

    Args:
        frontend: the run's front-end (torch back-end, a mel kind); its settings and ``finish`` are used.
        prob: probability per example (0 disables).
        low / high / steps: the warp factors, ``steps`` evenly spaced in ``[low, high]`` (rounded to 0.01).
        boundary: the warp's knee as a fraction of the Nyquist frequency.

    Shape:
        ``(batch, time) -> (batch, n_features, frames)``, as ``frontend``; in eval mode ``frontend(wave)`` itself.
        ``drawn["alpha"]``: ``(batch,)`` the factors of the last training call (1 when untouched).
    """

    def __init__(self, frontend: Frontend, *, prob: float = 0.0, low: float = 0.9, high: float = 1.1,
                 steps: int = 5, boundary: float = 0.8) -> None:
        super().__init__()
        s = frontend.settings
        if s.backend != "torch" or s.kind not in MEL_KINDS:
            raise ConfigError(f"augment.vtlp_prob warps the mel filters of frontend.backend=torch with a mel kind "
                              f"({', '.join(MEL_KINDS)}); this recipe has backend={s.backend}, kind={s.kind}")
        self.prob = float(prob)
        self.factors = factor_grid(low, high, steps)
        self.power = FrontendSettings.of(dataclasses.replace(s, kind="stft")).build(frontend.sample_rate)
        banks = [warped_mel_filters(sr=frontend.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=frontend.f_min,
                                    fmax=frontend.f_max, htk=s.mel_scale == "htk", norm=s.norm, alpha=a,
                                    boundary=boundary) for a in [1.0, *self.factors]]
        self.register_buffer("banks", torch.from_numpy(np.stack(banks)), persistent=False)  # (1 + steps, mels, freq)
        self.register_buffer("alphas", torch.tensor([1.0, *self.factors]), persistent=False)  # each bank's factor
        self.drawn: dict[str, Tensor] = {}

    def forward(self, wave: Tensor, frontend: Frontend) -> Tensor:
        if not self.training or self.prob <= 0:
            return frontend(wave)
        batch, dev = wave.shape[0], wave.device
        pick = torch.randint(0, len(self.factors), (batch,), device=dev) + 1
        pick = torch.where(torch.rand(batch, device=dev) < self.prob, pick, 0)  # bank 0: unwarped
        self.drawn = {"alpha": self.alphas[pick]}
        if not bool((pick > 0).any()):
            return frontend(wave)
        with torch.autocast(device_type=dev.type, enabled=False), exact_float32(dev):
            spec = self.power(wave.float())                                    # (batch, freq, frames), |X|**power
            return frontend.finish(torch.bmm(self.banks[pick], spec))

    def extra_repr(self) -> str:
        return f"prob={self.prob}, factors={self.factors}"
