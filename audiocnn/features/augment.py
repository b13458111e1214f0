"""Spectrogram augmentation: SpecAugment masks and mixup."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["SpecAugment", "mixup_batch"]


def _masks(batch: int, size: int, count: int, max_width: int, device: torch.device) -> Tensor:
    """``(batch, size)`` bool: ``count`` random bands per example, each ``0..max_width`` wide."""
    pos = torch.arange(size, device=device)
    hit = torch.zeros(batch, size, dtype=torch.bool, device=device)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (batch, 1), device=device).clamp(max=size)
        start = (torch.rand(batch, 1, device=device) * (size - width + 1)).long()
        hit |= (pos >= start) & (pos < start + width)
    return hit


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al., 2019), only while ``self.training``.

    Each example gets its own ``freq_masks`` bands of ``0..freq_mask_param`` rows and
    ``time_masks`` bands of ``0..time_mask_param`` frames, set to 0 (the mean once the input has
    gone through :class:`FrequencyNorm`). In eval mode, or with zero masks, it is the identity.

    Args:
        freq_masks: frequency masks per example.
        freq_mask_param: widest frequency mask, in rows.
        time_masks: time masks per example.
        time_mask_param: widest time mask, in frames.

    Shape:
        ``(batch, n_features, frames) -> (batch, n_features, frames)``; any ``(batch, ..., n_features, frames)``.

    Example:
        >>> aug = SpecAugment(freq_masks=2, freq_mask_param=8, time_masks=2, time_mask_param=16)
        >>> x = aug(norm(frontend(wave)))   # masked in model.train(), untouched in model.eval()
    """

    def __init__(self, freq_masks: int = 0, freq_mask_param: int = 8,
                 time_masks: int = 0, time_mask_param: int = 16) -> None:
        super().__init__()
        for name, value in (("freq_masks", freq_masks), ("freq_mask_param", freq_mask_param),
                            ("time_masks", time_masks), ("time_mask_param", time_mask_param)):
            if value < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {value}")
        self.freq_masks, self.freq_mask_param = int(freq_masks), int(freq_mask_param)
        self.time_masks, self.time_mask_param = int(time_masks), int(time_mask_param)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or (self.freq_masks == 0 and self.time_masks == 0):
            return x
        if x.dim() < 3:
            raise ValueError(f"SpecAugment expects (batch, n_features, frames), got {tuple(x.shape)}")
        batch, n_rows, n_frames = x.shape[0], x.shape[-2], x.shape[-1]
        rows = _masks(batch, n_rows, self.freq_masks, self.freq_mask_param, x.device)
        frames = _masks(batch, n_frames, self.time_masks, self.time_mask_param, x.device)
        hit = rows[:, :, None] | frames[:, None, :]
        hit = hit.view(batch, *([1] * (x.dim() - 3)), n_rows, n_frames)
        return x.masked_fill(hit, 0.0)

    def extra_repr(self) -> str:
        return (f"freq_masks={self.freq_masks}, freq_mask_param={self.freq_mask_param}, "
                f"time_masks={self.time_masks}, time_mask_param={self.time_mask_param}")


def mixup_batch(x: Tensor, y: Tensor, alpha: float,
                generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor, Tensor, float]:
    """Mixup (Zhang et al., 2018): blend each example with a random partner from the batch.

    ``lam ~ Beta(alpha, alpha)``; the caller mixes the losses:
    ``loss = lam * criterion(out, y_a) + (1 - lam) * criterion(out, y_b)``.

    Args:
        x: ``(batch, ...)`` inputs (spectrograms).
        y: ``(batch, ...)`` targets (class indices or multi-hot rows).
        alpha: Beta parameter; ``<= 0`` disables (returns ``x, y, y, 1.0``).
        generator: a CPU ``torch.Generator`` for reproducible draws (default: torch's global RNG).

    Returns:
        ``(lam * x + (1 - lam) * x[perm], y, y[perm], lam)``.

    Example:
        >>> xm, y_a, y_b, lam = mixup_batch(spec, labels, alpha=0.2)
    """
    if alpha <= 0:
        return x, y, y, 1.0
    # torch has no Beta sampler that takes a generator: seed numpy's from it
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], y, y[perm.to(y.device)], lam
