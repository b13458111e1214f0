"""Per-channel energy normalisation (PCEN; Wang et al., ICASSP 2017), as ``librosa.pcen`` computes it.

    M[t] = (1 - b) M[t - 1] + b E[t],  M[-1] = 1 (librosa's initial state ``lfilter_zi``)
    PCEN = bias**power * expm1(power * log1p(E * (eps + M)**(-gain) / bias))

with ``b`` from ``time_constant``, the sample rate and the hop, exactly as librosa derives it. The recursion is
run in blocks of frames, each block one matrix product with the decay weights ``b (1 - b)**(i - j)`` (all at most
1, so nothing overflows), carrying ``M`` from block to block: exact, and batched on the device.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["PCEN", "PCEN_INPUT_SCALE", "pcen_b"]

PCEN_INPUT_SCALE = 2.0 ** 31
"""librosa's docs scale a spectrogram of float audio (in [-1, 1]) by ``2**31`` before ``librosa.pcen``: PCEN's
defaults were tuned on 32-bit integer audio. The front-end does the same."""


def pcen_b(*, time_constant: float, sample_rate: int, hop_length: int) -> float:
    """The smoothing coefficient ``b`` of ``librosa.pcen`` for a time constant in seconds."""
    t_frames = time_constant * sample_rate / float(hop_length)
    return (math.sqrt(1 + 4 * t_frames ** 2) - 1) / (2 * t_frames ** 2)


class PCEN(nn.Module):
    """``librosa.pcen(S, sr=sample_rate, hop_length=hop_length, gain=..., ...)`` on a batch, along frames.

    Args:
        sample_rate: sample rate of the waves the spectrogram came from.
        hop_length: samples between frames.
        gain, bias, power, time_constant, eps: librosa's names and defaults.
        block: frames per matrix product of the smoothing recursion.

    Shape:
        ``(batch, n_features, frames) -> (batch, n_features, frames)``; ``S`` non-negative.

    Example:
        >>> pcen = PCEN(sample_rate=16000, hop_length=256)
        >>> pcen(mel * PCEN_INPUT_SCALE).shape     # mel: (8, 64, 63)
        torch.Size([8, 64, 63])
    """

    def __init__(self, *, sample_rate: int, hop_length: int, gain: float = 0.98, bias: float = 2.0,
                 power: float = 0.5, time_constant: float = 0.4, eps: float = 1e-6, block: int = 128) -> None:
        super().__init__()
        self.gain, self.bias, self.power, self.eps = float(gain), float(bias), float(power), float(eps)
        self.b = pcen_b(time_constant=time_constant, sample_rate=sample_rate, hop_length=hop_length)
        i = torch.arange(block, dtype=torch.float64)
        lag = i[:, None] - i[None, :]
        weights = torch.where(lag >= 0, self.b * (1 - self.b) ** lag.clamp(min=0), torch.zeros(()))
        # float64 powers, float32 buffers (the front-end computes in float32)
        self.register_buffer("weights_t", weights.T.float().contiguous(), persistent=False)  # (j, i)
        self.register_buffer("decay", ((1 - self.b) ** (i + 1)).float(), persistent=False)

    def smooth(self, S: Tensor) -> Tensor:
        """The smoothed energy ``M``: ``scipy.signal.lfilter([b], [1, b - 1], S, zi=lfilter_zi)`` along frames."""
        block = self.decay.shape[0]
        carry = S.new_ones(S.shape[:-1])
        out = []
        for t0 in range(0, S.shape[-1], block):
            chunk = S[..., t0:t0 + block]
            n = chunk.shape[-1]
            m = torch.matmul(chunk, self.weights_t[:n, :n]) + carry[..., None] * self.decay[:n]
            carry = m[..., -1]
            out.append(m)
        return torch.cat(out, dim=-1)

    def forward(self, S: Tensor) -> Tensor:
        smooth = torch.exp(-self.gain * (math.log(self.eps) + torch.log1p(self.smooth(S) / self.eps)))
        if self.power == 0:
            return torch.log1p(S * smooth)
        if self.bias == 0:
            return torch.exp(self.power * (torch.log(S) + torch.log(smooth)))
        return self.bias ** self.power * torch.expm1(self.power * torch.log1p(S * smooth / self.bias))

    def extra_repr(self) -> str:
        return f"b={self.b:.5f}, gain={self.gain}, bias={self.bias}, power={self.power}, eps={self.eps}"
