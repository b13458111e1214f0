"""The augmentation mechanism: one registry (:data:`AUGMENTS`) of training-only transforms, each with its recipe keys,
applied by stage in the fixed order :data:`AUGMENT_STAGES`; here, the spectrogram masks and mixup.

Every registered transform is an ``nn.Module`` that is the identity in eval mode and draws its randomness from the
global RNGs the engine seeds from ``trainer.seed`` and checkpoints, so a resumed run draws the same. The stages, in
the order an audio example meets them::

    wave (batch, time)      speed -> stretch -> pitch -> shift -> gain -> eq -> reverb -> noise   (wave_augment)
    front-end               vtlp: the mel filters warped per example                               (vtlp)
    batch                   mixup: inputs blended with a partner, targets blended in the loss     (here)
    spectrogram maps        masks: SpecAugment's frequency and time bands                          (here)

The audio modality builds each stage from its ``augment.*`` keys (``audiocnn.modalities.audio``); images take
mixup from here and their own geometric :class:`~audiocnn.features.image.ImageAugment`.

Example:
    >>> AUGMENTS.get("masks")(freq_masks=2, time_masks=2)
    >>> mixup = AUGMENTS.get("mixup")(alpha=0.2)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from audiocnn.core.errors import ConfigError
from audiocnn.core.registry import Registry

__all__ = ["AUGMENTS", "AUGMENT_STAGES", "Mix", "Mixup", "SpecAugment"]

AUGMENTS: Registry[type[nn.Module]] = Registry("augmentation")
AUGMENT_STAGES: dict[str, tuple[str, ...]] = {
    "wave": ("speed", "stretch", "pitch", "shift", "gain", "eq", "reverb", "noise"),
    "frontend": ("vtlp",),
    "batch": ("mixup",),
    "spec": ("masks",),
}
"""Each stage's registered transforms, in the order they are applied."""

Mix = tuple[Tensor, float]
"""A mixup draw: ``(perm, lam)``, each example's partner and the blend weight."""


def _masks(batch: int, size: int, count: int, max_width: int, device: torch.device) -> Tensor:
    """``(batch, size)`` bool: ``count`` random bands per example, each ``0..max_width`` wide."""
    pos = torch.arange(size, device=device)
    hit = torch.zeros(batch, size, dtype=torch.bool, device=device)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (batch, 1), device=device).clamp(max=size)
        start = (torch.rand(batch, 1, device=device) * (size - width + 1)).long()
        hit |= (pos >= start) & (pos < start + width)
    return hit


@AUGMENTS.register("masks")
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


@AUGMENTS.register("mixup")
class Mixup(nn.Module):
    """Mixup (Zhang et al., 2018), ``augment.mixup_alpha``: each example blended with a partner from the batch.

    :meth:`draw` picks the partners and the weight ``lam ~ Beta(alpha, alpha)`` (NumPy's global RNG, then torch's,
    both seeded and checkpointed by the engine); :meth:`forward` blends the inputs, and the caller blends the
    losses: ``loss = lam * criterion(out, y) + (1 - lam) * criterion(out, y[perm])``.

    Args:
        alpha: the Beta distribution's parameter; 0 switches mixup off (0.1-0.4 is usual; 1: ``lam`` uniform).

    Shape:
        ``(batch, ...) -> (batch, ...)``.

    Example:
        >>> mixup = Mixup(alpha=0.2).train()
        >>> m = mixup.draw(32)            # None in eval mode or with alpha 0
        >>> x = mixup(spec, m)
    """

    def __init__(self, *, alpha: float = 0.0) -> None:
        super().__init__()
        if alpha < 0:
            raise ConfigError(f"augment.mixup_alpha must be >= 0 (0: off), got {alpha}")
        self.alpha = float(alpha)

    def draw(self, batch_size: int, device: torch.device | str = "cpu") -> Mix | None:
        """The partners and the weight for one batch, or ``None`` (eval mode, ``alpha`` 0)."""
        if not self.training or self.alpha <= 0:
            return None
        lam = float(np.random.beta(self.alpha, self.alpha))
        return torch.randperm(batch_size, device=device), lam

    def forward(self, x: Tensor, mix: Mix | None = None) -> Tensor:
        """``lam * x + (1 - lam) * x[perm]`` for ``mix=(perm, lam)``; ``x`` itself for ``None``."""
        if mix is None:
            return x
        perm, lam = mix
        return lam * x + (1.0 - lam) * x[perm]

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
