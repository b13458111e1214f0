"""A run's front-end rewritten in real-valued operations, so one exported graph goes from waveform to logits.

ONNX has no complex tensors, so ``torch.stft`` / ``torch.fft.rfft`` do not export ("STFT does not support complex
types"). Every front-end kind that rests on a short-time transform is the same few real operations:

    wave (batch, time) -> pad (frontend.center, frontend.pad_mode) -> conv1d with [Re; Im] kernels, stride hop
    -> re**2 + im**2 -> ** (power / 2) -> mel filterbank (mel, logmel, mfcc) -> dB / ln / dB + DCT

The kernels are the windowed DFT (``window[n] * cos(2 pi k n / n_fft)`` and ``-sin``) for the STFT-based kinds, and
nnAudio's own CQT kernels for ``cqt``; window, mel filterbank and CQT kernels are read from the run's front-end
module itself (librosa's backend takes the torch backend's, which are librosa's), never re-derived from other
defaults. The log step is the front-end's own (:meth:`Frontend.finish`), so dB, ``top_db`` and the DCT are shared.

Example:
    >>> real = real_frontend(model.frontend)      # (batch, time) -> (batch, n_features, frames), no complex ops
    >>> (real(wave) - model.frontend(wave)).abs().max()
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor, nn

from audiocnn.core.errors import ModelError
from audiocnn.features import Frontend
from audiocnn.features.frontends import (
    LibrosaFrontend, NnAudioFrontend, TorchaudioFrontend, TorchFrontend, WaveformFrontend,
)

__all__ = ["RealFrontend", "real_frontend"]


class RealFrontend(Frontend):
    """A :class:`Frontend` whose spectrum is a strided ``conv1d`` with real and imaginary kernels.

    Args:
        settings: the original front-end's settings (kind, power, log, ``top_db`` ... are used as they are).
        sample_rate: its sample rate.
        kernels: ``(2 * bins, 1, width)``: the real parts of the ``bins`` filters, then their imaginary parts.
        pad: samples of padding on each side before framing (``frontend.center``), with ``settings.pad_mode``.
        mel_fb: ``(n_mels, bins)`` filterbank applied to the power spectrum, or ``None``.

    Shape:
        ``(batch, time) -> (batch, n_features, frames)``, ``frames = 1 + (time + 2 pad - width) // hop_length``.
    """

    def __init__(self, settings, sample_rate: int, *, kernels: Tensor, pad: int, mel_fb: Tensor | None) -> None:
        super().__init__(settings, sample_rate)
        if kernels.dim() != 3 or kernels.shape[0] % 2 or kernels.shape[1] != 1:
            raise ValueError(f"kernels must be (2 * bins, 1, width), got {tuple(kernels.shape)}")
        self.bins = kernels.shape[0] // 2
        self.pad = int(pad)
        self.frame_length = int(kernels.shape[-1])
        self.register_buffer("kernels", kernels.float().contiguous(), persistent=False)
        self.register_buffer("mel_fb", None if mel_fb is None else mel_fb.float().contiguous(), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        span = num_samples + 2 * self.pad - self.frame_length
        if span < 0:
            raise ValueError(f"{num_samples} samples are fewer than one frame of {self.frame_length}")
        return 1 + span // self.settings.hop_length

    def _spectrum(self, x: Tensor) -> Tensor:
        c = self.settings
        x = x.unsqueeze(1)                                             # (batch, 1, time)
        if self.pad:
            x = nn.functional.pad(x, (self.pad, self.pad), mode=c.pad_mode)
        y = nn.functional.conv1d(x, self.kernels, stride=c.hop_length)  # (batch, 2 * bins, frames)
        re, im = y[:, :self.bins], y[:, self.bins:]
        S = re * re + im * im
        if c.power != 2.0:
            S = S.pow(c.power / 2.0)
        return S if self.mel_fb is None else torch.matmul(self.mel_fb, S)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bins={self.bins}, width={self.frame_length}, pad={self.pad}"


def _dft_kernels(frame_window: Tensor, n_fft: int) -> Tensor:
    """``(2 * (n_fft // 2 + 1), 1, n_fft)``: ``w[n] cos(2 pi k n / n_fft)`` then ``-w[n] sin(...)``, built in float64."""
    w = frame_window.detach().cpu().double().numpy()
    angle = 2.0 * np.pi * np.outer(np.arange(n_fft // 2 + 1), np.arange(n_fft)) / n_fft
    return torch.from_numpy(np.concatenate([np.cos(angle) * w, -np.sin(angle) * w])[:, None, :])


def _centred(window: Tensor, n_fft: int) -> Tensor:
    """A ``win_length`` window centred in ``n_fft`` samples, as ``torch.stft`` and ``librosa.stft`` place it."""
    left = (n_fft - window.shape[-1]) // 2
    return nn.functional.pad(window.detach().double(), (left, n_fft - window.shape[-1] - left))


def real_frontend(frontend: nn.Module) -> nn.Module:
    """The exportable equivalent of a run's front-end: a :class:`RealFrontend`, or the front-end itself when it is
    real-valued already (``waveform``, an image run's identity).

    Raises:
        ModelError: a front-end module with no real-valued equivalent, saying why.
    """
    if isinstance(frontend, (WaveformFrontend, nn.Identity)):
        return frontend
    if not isinstance(frontend, Frontend):
        raise ModelError(f"front-end {type(frontend).__name__} is not an audiocnn Frontend; export knows the "
                         "torch, librosa, nnaudio and torchaudio backends only")
    c, sr = frontend.settings, frontend.sample_rate
    centre = c.center
    if isinstance(frontend, LibrosaFrontend):
        # librosa computes in numpy: take the torch backend's window and filterbank, which are librosa's
        frontend = dataclasses.replace(c, backend="torch").build(sr)
    if isinstance(frontend, TorchFrontend):
        kernels = _dft_kernels(frontend.frame_window, c.n_fft)
        mel_fb = getattr(frontend, "mel_fb", None)
        pad = c.n_fft // 2
    elif isinstance(frontend, NnAudioFrontend):
        layer = frontend.layer
        if c.kind == "cqt":  # CQT1992v2: conv1d with its kernels, scaled by sqrt(filter length) (librosa's norm)
            scale = layer.lenghts.double().sqrt().view(-1, 1, 1)
            kernels = torch.cat([layer.cqt_kernels_real.double() * scale, layer.cqt_kernels_imag.double() * scale])
            mel_fb, pad = None, int(layer.kernel_width) // 2
        else:
            stft = layer.stft if hasattr(layer, "stft") else layer
            bins = stft.freq_bins
            kernels = torch.cat([stft.wcos[:bins].double(), stft.wsin[:bins].double()])
            mel_fb, pad = getattr(layer, "mel_basis", None), int(stft.pad_amount)
    elif isinstance(frontend, TorchaudioFrontend):
        spec = frontend.layer.spectrogram if hasattr(frontend.layer, "spectrogram") else frontend.layer
        kernels = _dft_kernels(_centred(spec.window, c.n_fft), c.n_fft)
        fb = getattr(getattr(frontend.layer, "mel_scale", None), "fb", None)   # torchaudio's is (freq, n_mels)
        mel_fb, pad = (None if fb is None else fb.t()), c.n_fft // 2
    else:
        raise ModelError(f"front-end {type(frontend).__name__} (frontend.backend={c.backend}) has no real-valued "
                         "equivalent for export")
    return RealFrontend(c, sr, kernels=kernels, pad=pad if centre else 0, mel_fb=mel_fb)
