"""EfficientAT's log-mel front-end (the reference's ``AugmentMelSTFT`` in evaluation mode), batched on the device.

    32 kHz mono (batch, time)
    -> pre-emphasis y[n] = x[n + 1] - 0.97 x[n]                     (batch, time - 1): one sample shorter
    -> STFT: n_fft 1024, hop 320 (10 ms), a symmetric Hann window of 800 samples centred in the 1024,
       centred frames with reflect padding (torch.stft's default)
    -> power |X|^2
    -> 128 Kaldi mel banks, 0 - 15,000 Hz (triangles linear on the mel scale 1127 ln(1 + f / 700), no
       normalisation, over the 512 bins below Nyquist; the Nyquist bin gets no weight)
    -> ln(mel + 1e-5)
    -> (x + 4.5) / 5                                              (batch, 128, frames)

Frames: ``1 + (time - 1) // 320``. The reference's upper edge defaults to ``sr // 2 - 1000`` (half its
2000 Hz range of random ``fmax`` jitter); its training-time jitter of the band edges and its frequency and time
masking are not reproduced: this module computes the evaluation features in training mode too (train with
audiocnn's own ``SpecAugment``). The reference builds the mel banks with ``torchaudio.compliance.kaldi.get_mel_banks``;
:func:`kaldi_mel_banks` is that formula, without torchaudio. The network sees ``features.unsqueeze(1)``.

Example:
    >>> fe = EfficientATMel()
    >>> fe(torch.randn(2, 32000)).shape        # 1 s -> 100 frames
    torch.Size([2, 128, 100])
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from audiocnn.core.errors import ConfigError
from audiocnn.features.kernels import FixedKernels, exact_float32

__all__ = ["EfficientATMel", "kaldi_mel_banks"]

SAMPLE_RATE = 32000
N_FFT = 1024
WIN_LENGTH = 800
HOP_LENGTH = 320
N_MELS = 128
PREEMPHASIS = 0.97
LOG_OFFSET = 1e-5
SHIFT, SCALE = 4.5, 5.0
"""The reference's fixed normalisation: ``(log_mel + 4.5) / 5``."""
F_MAX_MARGIN = 1000.0
"""The reference's default upper band edge is ``sample_rate // 2 - 1000``."""


def _mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def kaldi_mel_banks(*, n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                    f_min: float = 0.0, f_max: float = SAMPLE_RATE / 2 - F_MAX_MARGIN) -> np.ndarray:
    """Kaldi's mel filterbank (no VTLN warping), ``(n_mels, n_fft // 2 + 1)`` float64.

    Mel edges: ``n_mels + 2`` points equally spaced on ``1127 ln(1 + f / 700)`` from ``f_min`` to ``f_max``;
    band ``i`` rises linearly *in mel* from edge ``i`` to 1 at edge ``i + 1`` and falls to 0 at edge ``i + 2``,
    evaluated at FFT bin ``k`` (``k * sample_rate / n_fft`` Hz) for the ``n_fft // 2`` bins below Nyquist; the
    last (Nyquist) column is zero, as the reference pads it. ``f_max <= 0`` counts down from Nyquist, as in Kaldi.
    """
    nyquist = sample_rate / 2.0
    if f_max <= 0:
        f_max += nyquist
    if n_fft % 2 or not (0.0 <= f_min < f_max <= nyquist) or n_mels < 4:
        raise ConfigError(f"Kaldi mel banks need an even n_fft (got {n_fft}), 0 <= f_min < f_max <= {nyquist:g} "
                          f"(got {f_min}, {f_max}) and n_mels > 3 (got {n_mels})")
    lo, hi = _mel(f_min), _mel(f_max)
    delta = (hi - lo) / (n_mels + 1)
    left = lo + delta * np.arange(n_mels)[:, None]
    center, right = left + delta, left + 2 * delta
    mel = _mel(np.arange(n_fft // 2) * sample_rate / n_fft)[None, :]
    banks = np.maximum(0.0, np.minimum((mel - left) / (center - left), (right - mel) / (right - center)))
    return np.pad(banks, ((0, 0), (0, 1)))


class EfficientATMel(FixedKernels):
    """Waveform ``(batch, time)`` -> EfficientAT's normalised log-mel ``(batch, n_mels, 1 + (time - 1) // hop)``.

    Float32 always (autocast off, TF32 off on CUDA); the window and mel banks are fixed buffers kept out of
    ``state_dict()``. Arguments in torchaudio's names; the defaults are the released models' settings.

    Args:
        sample_rate: of the input waves (the released models: 32,000 Hz).
        n_fft / win_length / hop_length: STFT geometry (a symmetric Hann window of ``win_length``).
        n_mels: mel bands.
        f_min / f_max: band edges in Hz; ``f_max=None`` is the reference's ``sample_rate // 2 - 1000``.
        preemphasis: the coefficient of ``x[n + 1] - c x[n]``.
        log_offset: added before the natural log.
    """

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, win_length: int = WIN_LENGTH,
                 hop_length: int = HOP_LENGTH, n_mels: int = N_MELS, f_min: float = 0.0,
                 f_max: Optional[float] = None, preemphasis: float = PREEMPHASIS, log_offset: float = LOG_OFFSET):
        super().__init__()
        if not 1 <= win_length <= n_fft or hop_length < 1:
            raise ConfigError(f"need 1 <= win_length <= n_fft and hop_length >= 1, got win_length={win_length}, "
                              f"n_fft={n_fft}, hop_length={hop_length}")
        self.sample_rate, self.n_fft, self.win_length, self.hop_length = sample_rate, n_fft, win_length, hop_length
        self.n_mels = self.n_features = n_mels
        self.f_min = float(f_min)
        self.f_max = float(sample_rate // 2 - F_MAX_MARGIN if f_max is None else f_max)
        self.preemphasis, self.log_offset = preemphasis, log_offset
        banks = kaldi_mel_banks(n_mels=n_mels, n_fft=n_fft, sample_rate=sample_rate, f_min=self.f_min, f_max=self.f_max)
        self.register_buffer("mel_fb", torch.from_numpy(banks).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames ``forward`` returns for ``num_samples`` samples (pre-emphasis drops one, centring keeps the rest)."""
        return 1 + (num_samples - 1) // self.hop_length

    def forward(self, wave: Tensor) -> Tensor:
        """``(batch, time) -> (batch, n_mels, frames)``, float32; ``time`` must exceed ``n_fft // 2 + 1``."""
        if wave.dim() != 2:
            raise ValueError(f"EfficientAT front-end input must be (batch, time), got {tuple(wave.shape)}")
        if wave.shape[-1] - 1 <= self.n_fft // 2:
            raise ValueError(f"{wave.shape[-1]} samples are too few for EfficientAT's reflect-padded STFT; need more "
                             f"than {self.n_fft // 2 + 1} ({(self.n_fft // 2 + 2) / self.sample_rate:.3f} s)")
        with torch.autocast(device_type=wave.device.type, enabled=False), exact_float32(wave.device):
            x = wave.float()
            x = x[:, 1:] - self.preemphasis * x[:, :-1]
            X = torch.stft(x, self.n_fft, hop_length=self.hop_length, win_length=self.win_length, window=self.window,
                           center=True, pad_mode="reflect", return_complex=True)
            mel = torch.matmul(self.mel_fb, X.real.square() + X.imag.square())
            return ((mel + self.log_offset).log() + SHIFT) / SCALE

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, win_length={self.win_length}, "
                f"hop_length={self.hop_length}, n_mels={self.n_mels}, f_min={self.f_min:g}, f_max={self.f_max:g}")
