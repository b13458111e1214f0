"""Resampling on the device, as an ``nn.Module`` (soxr, in :func:`audiocnn.audio.resample`, is CPU and NumPy only)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SincResampler"]


class SincResampler(nn.Module):
    """Band-limited resampling between two integer rates on the device: polyphase, Kaiser-windowed sinc.

    ``(batch, time)`` at ``orig_freq`` -> ``(batch, ceil(time * new_freq / orig_freq))`` at ``new_freq``.
    Output sample ``j`` is the band-limited wave at input time ``j * orig_freq / new_freq`` samples (the
    first samples coincide, as with soxr and librosa); the wave is zero outside the input.

    With ``up / down`` the rate ratio in lowest terms, output phase ``p`` (of ``up``) of every ``down``-th
    input sample is one strided convolution, so all phases are one ``conv1d`` with ``up`` output channels.
    The low-pass cuts at ``rolloff`` times the lower of the two Nyquist frequencies; ``zeros`` sinc zero
    crossings each side under a Kaiser window of ``beta`` give a transition about ``5.7 / zeros`` of
    that Nyquist wide and about ``beta / 0.11 + 9`` dB of stop-band attenuation. The defaults: flat to 0.9,
    -90 dB beyond 0.995 of the lower Nyquist frequency.

    Args:
        orig_freq / new_freq: input and output rates (Hz, positive integers).
        zeros: sinc zero crossings on each side of the centre.
        beta: Kaiser window shape.
        rolloff: cutoff as a fraction of the lower Nyquist frequency.

    Example:
        >>> SincResampler(16000, 8000)(torch.randn(2, 16001)).shape
        torch.Size([2, 8001])
    """

    def __init__(self, orig_freq: int, new_freq: int, *, zeros: int = 64, beta: float = 8.96, rolloff: float = 0.95):
        super().__init__()
        if int(orig_freq) != orig_freq or int(new_freq) != new_freq or orig_freq <= 0 or new_freq <= 0:
            raise ValueError(f"rates must be positive integers, got {orig_freq} and {new_freq}")
        g = math.gcd(int(orig_freq), int(new_freq))
        self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)
        self.down, self.up = self.orig_freq // g, self.new_freq // g
        cutoff = rolloff * min(1.0, self.up / self.down)          # fraction of the input Nyquist frequency
        reach = zeros / cutoff                                     # half-length in input samples
        self.lead = math.ceil(reach)                               # input samples before an output's own
        phase = torch.arange(self.up, dtype=torch.float64) * self.down / self.up
        offsets = torch.arange(-self.lead, math.ceil(float(phase[-1]) + reach) + 1, dtype=torch.float64)
        t = phase[:, None] - offsets[None, :]                      # (up, taps): output time - input time
        inside = (t.abs() <= reach).to(torch.float64)
        window = torch.special.i0(beta * torch.sqrt((1 - (t / reach) ** 2).clamp_min(0))) / torch.special.i0(
            torch.tensor(beta, dtype=torch.float64))
        h = cutoff * torch.sinc(cutoff * t) * window * inside
        h = h / h.sum(1, keepdim=True)                             # unit gain at 0 Hz in every phase
        self.register_buffer("kernel", h.to(torch.float32)[:, None, :], persistent=False)  # (up, 1, taps)

    def output_length(self, num_samples: int) -> int:
        """Samples out for ``num_samples`` in."""
        return -(-num_samples * self.up // self.down)

    def forward(self, wave: Tensor) -> Tensor:
        """``(batch, time)`` -> ``(batch, output_length(time))``, float32."""
        batch, n = wave.shape
        out_len = self.output_length(n)
        if out_len == 0:
            return wave.new_zeros(batch, 0, dtype=self.kernel.dtype)
        taps = self.kernel.shape[-1]
        per_phase = -(-out_len // self.up)
        right = max(0, (per_phase - 1) * self.down + taps - self.lead - n)
        x = F.pad(wave.to(self.kernel.dtype)[:, None], (self.lead, right))
        y = F.conv1d(x, self.kernel, stride=self.down)             # (batch, up, per_phase)
        return y.transpose(1, 2).reshape(batch, per_phase * self.up)[:, :out_len]

    def extra_repr(self) -> str:
        return f"{self.orig_freq} -> {self.new_freq} Hz, {self.kernel.shape[-1]} taps x {self.up} phases"
