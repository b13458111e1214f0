"""Delta and delta-delta features along frames, as ``librosa.feature.delta(S, width=width, order=k, mode="interp")``.

librosa takes the ``k``-th derivative of a Savitzky-Golay fit of degree ``k`` over ``width`` frames. Inside the
spectrogram that is one convolution; in ``interp`` mode the first and last ``width // 2`` frames take the
derivative of one polynomial fitted to the first (last) ``width`` frames, a fixed linear map computed here once.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Deltas"]


def _edge_maps(width: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """``(width // 2, width)`` maps from the first (last) ``width`` frames to the derivatives at the edge frames."""
    half = width // 2
    t = np.arange(width, dtype=np.float64)
    fit = np.linalg.pinv(np.vander(t, order + 1, increasing=True))  # samples -> polynomial coefficients
    k = np.arange(order + 1)
    scale = np.array([math.factorial(j) / math.factorial(j - order) if j >= order else 0.0 for j in k])

    def deriv_at(pos: np.ndarray) -> np.ndarray:
        return (scale * pos[:, None] ** np.clip(k - order, 0, None)) @ fit

    return deriv_at(t[:half]), deriv_at(t[width - half:])


class Deltas(nn.Module):
    """Static features and their deltas up to ``order``, stacked as channels.

    Args:
        order: 0 (static only), 1 (and delta) or 2 (and delta-delta).
        width: odd number of frames, ``>= 3``; spectrograms need at least this many frames.

    Shape:
        ``(batch, n_features, frames) -> (batch, 1 + order, n_features, frames)``; ``order=0`` returns its input.

    Example:
        >>> Deltas(order=2, width=9)(torch.randn(8, 64, 100)).shape
        torch.Size([8, 3, 64, 100])
    """

    def __init__(self, *, order: int = 0, width: int = 9) -> None:
        super().__init__()
        if order not in (0, 1, 2) or width < 3 or width % 2 == 0:
            raise ValueError(f"Deltas needs order 0, 1 or 2 and an odd width >= 3, got order={order}, width={width}")
        self.order, self.width = int(order), int(width)
        import scipy.signal  # about 1.5 s to import: only for a model with deltas

        for k in range(1, order + 1):
            taps = scipy.signal.savgol_coeffs(width, k, deriv=k, use="dot")
            left, right = _edge_maps(width, k)
            self.register_buffer(f"taps{k}", torch.from_numpy(taps).float().view(1, 1, -1), persistent=False)
            self.register_buffer(f"left{k}", torch.from_numpy(left.T).float(), persistent=False)  # (width, half)
            self.register_buffer(f"right{k}", torch.from_numpy(right.T).float(), persistent=False)

    @property
    def channels(self) -> int:
        """Feature maps out: ``1 + order``."""
        return 1 + self.order

    def delta(self, x: Tensor, k: int) -> Tensor:
        """``librosa.feature.delta(x, width=width, order=k, mode="interp")``: ``(..., frames) -> (..., frames)``."""
        if x.shape[-1] < self.width:
            raise ValueError(f"deltas of width {self.width} need at least {self.width} frames, got {x.shape[-1]}")
        rows = x.reshape(-1, 1, x.shape[-1])
        inner = F.conv1d(rows, getattr(self, f"taps{k}")).view(*x.shape[:-1], -1)
        left = torch.matmul(x[..., :self.width], getattr(self, f"left{k}"))
        right = torch.matmul(x[..., -self.width:], getattr(self, f"right{k}"))
        return torch.cat([left, inner, right], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        if self.order == 0:
            return x
        return torch.stack([x, *(self.delta(x, k) for k in range(1, self.order + 1))], dim=1)

    def extra_repr(self) -> str:
        return f"order={self.order}, width={self.width}"
