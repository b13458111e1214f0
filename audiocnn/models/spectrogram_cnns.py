"""Spectrogram CNNs: VGG-style (PANNs CNN-like) and ResNet-style, as stage specs over ConvNet.

Input ``(batch, 1, n_mels, frames)``; any ``n_mels`` and length (global pooling at the end).
"""
from __future__ import annotations

from audiocnn.models.backbone import ConvNet, Stage
from audiocnn.models.registry import register_model

__all__ = ["cnn_small", "cnn_tiny", "resnet_small"]


def _vgg_stages(widths: tuple[int, ...], stage_drop: float) -> list[Stage]:
    # 2x2 average pooling after each stage, as in PANNs' ConvBlock.
    return [Stage("vgg", w, pool="avg", pool_size=2, drop_rate=stage_drop) for w in widths]


@register_model
def cnn_tiny(*, num_classes: int = 10, in_chans: int = 1, width: int = 16, drop_rate: float = 0.1, **kwargs) -> ConvNet:
    """Three VGG stages (16-32-64 by default): smoke tests and the offline quickstart."""
    return ConvNet(_vgg_stages((width, width * 2, width * 4), 0.0), num_classes=num_classes, in_chans=in_chans,
                   global_pool="avgmax", drop_rate=drop_rate, **kwargs)


@register_model
def cnn_small(*, num_classes: int = 10, in_chans: int = 1, width: int = 32, stage_drop: float = 0.1,
              drop_rate: float = 0.3, **kwargs) -> ConvNet:
    """Four VGG stages (32-64-128-256), PANNs-style avg+max pooling head (about 1.2 M parameters)."""
    return ConvNet(_vgg_stages((width, width * 2, width * 4, width * 8), stage_drop), num_classes=num_classes,
                   in_chans=in_chans, global_pool="avgmax", drop_rate=drop_rate, **kwargs)


@register_model
def resnet_small(*, num_classes: int = 10, in_chans: int = 1, width: int = 32, depths: tuple = (2, 2, 2, 2),
                 drop_rate: float = 0.3, **kwargs) -> ConvNet:
    """ResNet-18-shaped spectrogram CNN at 1/2 width: 3x3 stem, four stages of basic blocks."""
    stem = [Stage("conv", width, stride=1, args={"kernel_size": 3})]
    stages = [Stage("basic", width * 2 ** i, depth=d, stride=1 if i == 0 else 2) for i, d in enumerate(depths)]
    return ConvNet(stages, stem=stem, num_classes=num_classes, in_chans=in_chans, global_pool="avgmax",
                   drop_rate=drop_rate, **kwargs)
