"""The VGGish input pipeline, exactly, as a torch module that runs batched on the model's device.

    16 kHz mono (batch, time)
    -> frames of 400 samples (25 ms) every 160 (10 ms), no padding
    -> periodic Hann window -> |rfft| with n_fft 512 (magnitude, not power)
    -> 64 mel bands, 125-7500 Hz: the reference's own HTK filterbank (triangles linear in mel, unnormalised,
       the DC bin zeroed; not librosa's, whose HTK triangles are linear in Hz)
    -> ln(mel + 0.01)                                              (batch, 64, frames)
    -> examples of 96 frames every 96 frames, no padding             (batch, n_examples, 64, 96)

As in the reference (``mel_features.py`` / ``vggish_input.py`` of the TensorFlow release and its PyTorch
port), a trailing partial example is dropped, so audio shorter than 0.975 s (15,600 samples) yields no
example; ``pad_short=True`` zero-pads such audio to one example instead. The reference resamples with
resampy; :func:`waveform_to_examples` resamples with soxr.

Shapes follow audiocnn (``(n_mels, frames)``); the reference returns ``(n_examples, frames, n_mels)``.

Example:
    >>> fe = VGGishInput()
    >>> fe(torch.randn(2, 48000)).shape        # 3 s -> 3 examples of 64 bands x 96 frames
    torch.Size([2, 3, 64, 96])
    >>> fe.num_examples(15599), VGGishInput(pad_short=True).num_examples(8000)
    (0, 1)
"""
from __future__ import annotations

import numpy as np
import torch

from audiocnn.audio import resample
from torch import Tensor, nn

__all__ = ["VGGishInput", "vggish_mel_matrix", "waveform_to_examples"]

SAMPLE_RATE = 16000
WIN_LENGTH = 400
HOP_LENGTH = 160
N_FFT = 512
N_MELS = 64
F_MIN, F_MAX = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96
EXAMPLE_SAMPLES = WIN_LENGTH + (EXAMPLE_FRAMES - 1) * HOP_LENGTH
"""15,600 samples (0.975 s) under one example."""


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def vggish_mel_matrix(*, n_mels: int = N_MELS, n_freqs: int = N_FFT // 2 + 1, sample_rate: int = SAMPLE_RATE,
                      f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """The VGGish mel filterbank, ``(n_mels, n_freqs)`` float64 (reference: ``spectrogram_to_mel_matrix``, transposed).

    FFT bin ``k`` sits at ``k * (sample_rate / 2) / (n_freqs - 1)`` Hz; band ``i`` is a triangle, linear on the
    HTK mel scale, between mel edges ``i`` and ``i + 2`` of ``n_mels + 2`` equally spaced from ``f_min`` to
    ``f_max``, peaking at 1 (no area normalisation). The DC bin gets no weight.
    """
    nyquist = sample_rate / 2.0
    if not 0.0 <= f_min < f_max <= nyquist:
        raise ValueError(f"need 0 <= f_min < f_max <= {nyquist:g}, got f_min={f_min}, f_max={f_max}")
    bins_mel = _hz_to_mel(np.linspace(0.0, nyquist, n_freqs))
    edges = np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins_mel[None, :] - lower) / (center - lower)
    falling = (upper - bins_mel[None, :]) / (upper - center)
    fb = np.maximum(0.0, np.minimum(rising, falling))
    fb[:, 0] = 0.0
    return fb


class VGGishInput(nn.Module):
    """16 kHz waveform ``(batch, time)`` -> VGGish log-mel examples ``(batch, n_examples, 64, 96)``, float32.

    The window and filterbank are non-persistent float64 buffers: they move with ``.to(device)`` (keeping
    their dtype) and never enter a ``state_dict``. The spectrum is computed in float64 (float32 on Apple MPS,
    which has none) even under ``torch.autocast``: in float32 the FFT's rounding error, relative to a loud
    frame, reaches 2e-4 in ``ln(mel + 0.01)`` of its quiet bands; in float64 the output matches the reference
    to float32 rounding. The result is float32.

    Args:
        hop_frames: frames (10 ms each) between example starts; 96 (0.96 s) as the reference.
        pad_short: zero-pad audio shorter than one example (15,600 samples) to one example instead of
            returning none.
    """

    sample_rate = SAMPLE_RATE
    n_features = N_MELS
    example_frames = EXAMPLE_FRAMES
    example_samples = EXAMPLE_SAMPLES

    def __init__(self, *, hop_frames: int = EXAMPLE_FRAMES, pad_short: bool = False):
        super().__init__()
        if hop_frames < 1:
            raise ValueError(f"hop_frames must be >= 1, got {hop_frames}")
        self.hop_frames = int(hop_frames)
        self.pad_short = bool(pad_short)
        n = torch.arange(WIN_LENGTH, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2.0 * torch.pi * n / WIN_LENGTH)  # periodic Hann
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_fb", torch.from_numpy(vggish_mel_matrix()), persistent=False)

    @property
    def hop_samples(self) -> int:
        """Samples between example starts."""
        return self.hop_frames * HOP_LENGTH

    def num_frames(self, num_samples: int) -> int:
        """Log-mel frames of ``num_samples`` samples (0 when shorter than one 400-sample frame)."""
        return max(0, 1 + (num_samples - WIN_LENGTH) // HOP_LENGTH) if num_samples >= WIN_LENGTH else 0

    def num_examples(self, num_samples: int) -> int:
        """Examples :meth:`forward` returns for ``num_samples`` samples."""
        if num_samples < EXAMPLE_SAMPLES:
            return 1 if self.pad_short and num_samples > 0 else 0
        return 1 + (self.num_frames(num_samples) - EXAMPLE_FRAMES) // self.hop_frames

    def log_mel(self, wave: Tensor) -> Tensor:
        """``(batch, time) -> (batch, 64, frames)``: ``ln(mel(|rfft(hann * frame, 512)|) + 0.01)``, float32."""
        if wave.dim() != 2:
            raise ValueError(f"VGGish input must be a wave of shape (batch, time), got {tuple(wave.shape)}")
        if wave.shape[-1] < WIN_LENGTH:
            raise ValueError(f"{wave.shape[-1]} samples are fewer than one 25 ms frame ({WIN_LENGTH} samples)")
        if wave.device.type == "cpu" and not wave.requires_grad:
            return self._log_mel_numpy(wave)
        return self._log_mel_torch(wave)

    def _log_mel_torch(self, wave: Tensor) -> Tensor:
        dtype = torch.float32 if wave.device.type == "mps" else torch.float64
        with torch.autocast(device_type=wave.device.type, enabled=False):
            frames = wave.to(dtype).unfold(-1, WIN_LENGTH, HOP_LENGTH) * self.window.to(dtype)  # (batch, frames, 400)
            magnitude = torch.fft.rfft(frames, n=N_FFT).abs()                                  # (batch, frames, 257)
            mel = torch.matmul(magnitude, self.mel_fb.to(dtype).T).transpose(1, 2)             # (batch, 64, frames)
            return torch.log(mel + LOG_OFFSET).float()

    def _log_mel_numpy(self, wave: Tensor) -> Tensor:
        """The same in NumPy, for CPU tensors: its pocketfft and complex ``abs`` take a quarter of the CPU time
        torch's take at this size (65 vs 280 ms for 128 examples on 2 cores), a third of bf16 VGGish's cost."""
        x = wave.detach().numpy().astype(np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(x, WIN_LENGTH, axis=-1)[:, ::HOP_LENGTH] * self.window.numpy()
        magnitude = np.abs(np.fft.rfft(frames, N_FFT))                                       # (batch, frames, 257)
        mel = (magnitude.reshape(-1, magnitude.shape[-1]) @ self.mel_fb.numpy().T).reshape(*magnitude.shape[:2], -1)
        return torch.from_numpy(np.log(mel + LOG_OFFSET).astype(np.float32).transpose(0, 2, 1))

    def forward(self, wave: Tensor) -> Tensor:
        """``(batch, time)`` at 16 kHz -> ``(batch, num_examples(time), 64, 96)`` float32."""
        if wave.dim() != 2:
            raise ValueError(f"VGGish input must be a wave of shape (batch, time), got {tuple(wave.shape)}")
        n = wave.shape[-1]
        if n < EXAMPLE_SAMPLES:
            if not (self.pad_short and n > 0):
                return wave.new_zeros(wave.shape[0], 0, N_MELS, EXAMPLE_FRAMES, dtype=torch.float32)
            wave = nn.functional.pad(wave, (0, EXAMPLE_SAMPLES - n))
        lm = self.log_mel(wave)                                       # (batch, 64, frames)
        return lm.unfold(-1, EXAMPLE_FRAMES, self.hop_frames).permute(0, 2, 1, 3).contiguous()

    def _apply(self, fn, recurse=True):
        # model.half() / model.to(torch.bfloat16) must not round the window and filterbank: follow the device
        # only (in float32 on MPS, which has no float64)
        def keep_dtype(t: Tensor) -> Tensor:
            device = fn(t[:0].float()).device
            return t.to(device=device, dtype=torch.float32 if device.type == "mps" else t.dtype)

        return super()._apply(keep_dtype, recurse)

    def extra_repr(self) -> str:
        return f"hop_frames={self.hop_frames}, pad_short={self.pad_short}"


def waveform_to_examples(data: np.ndarray, sample_rate: int, *, hop_frames: int = EXAMPLE_FRAMES,
                         pad_short: bool = False, device: str | torch.device = "cpu") -> Tensor:
    """One waveform to VGGish examples, as the reference function of that name (soxr instead of resampy).

    Args:
        data: ``(time,)`` mono or ``(time, channels)`` (channels averaged), nominally in [-1, 1].
        sample_rate: rate of ``data``; resampled to 16 kHz with soxr when different.

    Returns:
        ``(n_examples, 64, 96)`` float32 (the reference's ``(n_examples, 1, 96, 64)`` is
        ``out.transpose(1, 2)[:, None]``).
    """

    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    data = resample(data, int(sample_rate), SAMPLE_RATE)
    fe = VGGishInput(hop_frames=hop_frames, pad_short=pad_short).to(device)
    return fe(torch.from_numpy(np.ascontiguousarray(data)).to(device)[None])[0]
