"""Image batches on the device: augmentation (training only) and per-channel normalisation.

The image counterpart of SpecAugment and FrequencyNorm. Images arrive as ``(batch, channels, height, width)``
float in [0, 1]; geometry is done in batches by kornia (pure PyTorch, so it runs wherever the model runs).

Example:
    >>> aug = ImageAugment(rotation=10, translate=0.1, hflip=0.5)
    >>> norm = ChannelNorm(3).fit(images for images, _ in train_batches)
    >>> x = norm(aug(images))        # augmented in model.train(), untouched in model.eval()
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from audiocnn.core.errors import ConfigError
from audiocnn.features.normalize import FrequencyNorm

__all__ = ["IMAGE_KIND", "ChannelNorm", "ImageAugment", "invert"]

IMAGE_KIND = "image"
"""``frontend.kind`` of image runs: the batches are images already, so the front-end is the identity."""


def invert(x: Tensor) -> Tensor:
    """The photographic negative: ``1 - x`` on [0, 1] images (``255 - pixel`` on bytes)."""
    return 1.0 - x


class ImageAugment(nn.Module):
    """Random affine (rotation, translation, shear, zoom), horizontal flip and inversion, only while ``self.training``.

    Every example draws its own parameters from torch's global RNG, so ``torch.manual_seed`` makes it
    repeatable (and a resumed run repeats it). Areas moved in from outside the image repeat the border
    (Keras' ``fill_mode='nearest'``), which keeps a digit's background, dark or inverted, uniform.
    Inversion comes last, so it is exact: ``1 - x`` of the (transformed) image.

    Args:
        invert: probability of ``x -> 1 - x``.
        rotation: degrees, drawn from [-rotation, rotation].
        translate: largest shift, as a fraction of width and height.
        shear: degrees, drawn from [-shear, shear].
        zoom: scale drawn from [1 - zoom, 1 + zoom].
        hflip: probability of a horizontal flip.

    Shape:
        ``(batch, channels, height, width) -> (batch, channels, height, width)``.

    Example:
        >>> aug = ImageAugment(rotation=15, shear=10, zoom=0.1).train()
        >>> aug(torch.rand(8, 1, 28, 28)).shape
        torch.Size([8, 1, 28, 28])
    """

    def __init__(self, *, invert: float = 0.0, rotation: float = 0.0, translate: float = 0.0, shear: float = 0.0,
                 zoom: float = 0.0, hflip: float = 0.0) -> None:
        super().__init__()
        for name, value, top in (("invert", invert, 1), ("hflip", hflip, 1), ("translate", translate, 1),
                                 ("zoom", zoom, 0.99), ("rotation", rotation, 180), ("shear", shear, 89)):
            if not 0 <= value <= top:
                raise ConfigError(f"augment.{name}={value} must be in [0, {top}]")
        self.invert_p = float(invert)
        self.geometry = nn.Identity()
        steps = []
        if rotation or translate or shear or zoom:
            import kornia.augmentation as K  # imported only when used: it takes a second

            steps.append(K.RandomAffine(degrees=float(rotation), translate=(translate, translate) if translate else None,
                                        scale=(1.0 - zoom, 1.0 + zoom) if zoom else None, shear=float(shear) or None,
                                        padding_mode="border", p=1.0))
        if hflip:
            import kornia.augmentation as K

            steps.append(K.RandomHorizontalFlip(p=float(hflip)))
        if steps:
            self.geometry = nn.Sequential(*steps)
        self.settings = dict(invert=invert, rotation=rotation, translate=translate, shear=shear, zoom=zoom,
                             hflip=hflip)

    @property
    def active(self) -> bool:
        return any(self.settings.values())

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not self.active:
            return x
        if x.dim() != 4:
            raise ValueError(f"ImageAugment expects (batch, channels, height, width), got {tuple(x.shape)}")
        dtype = x.dtype
        x = self.geometry(x.float()).to(dtype)
        if self.invert_p:
            hit = torch.rand(x.shape[0], device=x.device) < self.invert_p
            x = torch.where(hit[:, None, None, None], invert(x), x)
        return x

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items() if v)


class ChannelNorm(FrequencyNorm):
    """``(x - mean[c]) / std[c]`` for every channel ``c``, with statistics of the training images.

    :class:`FrequencyNorm` over ``(batch, channels, height * width)``: the same persistent buffers,
    streaming fit and identity-until-fitted behaviour.

    Shape:
        ``(batch, channels, height, width) -> (batch, channels, height, width)``.

    Example:
        >>> norm = ChannelNorm(1).fit([mnist_batch])      # mean ~0.1307, std ~0.3081 on MNIST
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.n_features:
            raise ValueError(f"ChannelNorm({self.n_features}) expects (batch, {self.n_features}, height, width) "
                             f"images, got {tuple(x.shape)}")
        return super().forward(x.flatten(2)).view_as(x)

    @torch.no_grad()
    def fit(self, batches: Iterable[Tensor]) -> "ChannelNorm":
        """Per-channel mean and std (population) over every pixel of ``batches`` ``(batch, C, H, W)``."""
        return super().fit(b.flatten(2) for b in batches)
