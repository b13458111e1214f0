"""Spectrogram augmentation: SpecAugment masks and mixup."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from audiocnn.core.errors import ConfigError

__all__ = ["SpecAugment", "draw_mixup", "mix"]


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
                raise ConfigError(f"augment.{name} must be >= 0, got {value}")
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


def draw_mixup(batch_size: int, alpha: float, device: torch.device | str = "cpu") -> tuple[Tensor, float] | None:
    """Mixup (Zhang et al., 2018): a partner for each example and the blend weight, or ``None`` when ``alpha <= 0``.

    ``lam ~ Beta(alpha, alpha)`` from NumPy's global RNG and ``perm`` from torch's, both seeded (and checkpointed)
    by the engine, so a resumed run draws the same. The caller mixes the inputs with :func:`mix` and the losses:
    ``loss = lam * criterion(out, y) + (1 - lam) * criterion(out, y[perm])``.

    Example:
        >>> m = draw_mixup(32, alpha=0.2)
        >>> x = mix(spec, m)
    """
    if alpha <= 0:
        return None
    lam = float(np.random.beta(alpha, alpha))
    return torch.randperm(batch_size, device=device), lam


def mix(x: Tensor, mixup: tuple[Tensor, float] | None) -> Tensor:
    """``lam * x + (1 - lam) * x[perm]`` for ``mixup=(perm, lam)``; ``x`` itself for ``None``."""
    if mixup is None:
        return x
    perm, lam = mixup
    return lam * x + (1.0 - lam) * x[perm]
