"""MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", ICCV 2019) as stage data over :class:`ConvNet`.

:data:`MOBILENET_V3_LARGE` is the paper's Table 1 (the bottleneck rows); :func:`mobilenet_v3_large_stages` scales
it by a width multiplier with MobileNet's channel rounding (:func:`~audiocnn.models.blocks.make_divisible`) and
returns the stem, the stages (one per bottleneck, then the 1x1 conv to six times the last width) and the width of
the head's hidden layer. With the defaults, 3 input channels, 1000 classes and ``act_layer="hardswish"`` it is
torchvision's ``mobilenet_v3_large`` (5,483,032 parameters). Registered networks built on it:
``efficientat_mn04/10/40`` (:mod:`audiocnn.models.efficientat`). :data:`MOBILENET_V3_SMALL` (Table 2) is
registered as ``mobilenet_v3_small`` (torchvision's 2,542,856 parameters at width 1.0) and, for one-channel
spectrograms at width 0.5, ``mnv3_small_audio``.

Example:
    >>> stem, stages, hidden = mobilenet_v3_large_stages(0.4, se_gate="sigmoid")
    >>> stem[0].out_chans, stages[-1].out_chans, hidden
    (8, 384, 512)
"""
from __future__ import annotations

from typing import Sequence

from audiocnn.core.errors import ConfigError
from audiocnn.models.backbone import ConvNet, Stage
from audiocnn.models.blocks import make_divisible
from audiocnn.models.registry import register_model

__all__ = ["MOBILENET_V3_LARGE", "MOBILENET_V3_SMALL", "mnv3_small_audio", "mobilenet_v3_large_stages",
           "mobilenet_v3_small", "mobilenet_v3_small_stages"]

MOBILENET_V3_LARGE = [
    # (kernel, expanded, out, squeeze-excitation, activation, stride)
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 2),
    (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1),
    (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", 2),
    (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1),
]
"""The bottlenecks of MobileNetV3-Large at width 1.0 (EfficientAT makes the four strides of 2 configurable). The
stem is a 3x3 stride-2 conv to 16 channels with hard-swish."""
MOBILENET_V3_SMALL = [
    # (kernel, expanded, out, squeeze-excitation, activation, stride)
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", 2),
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", 2),
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
]
"""The bottlenecks of MobileNetV3-Small at width 1.0 (the paper's Table 2); same stem as Large, head 1024."""
STEM_CHANS = 16
HEAD_HIDDEN = 1280
SMALL_HEAD_HIDDEN = 1024
LAST_CONV_EXPANSION = 6
"""The 1x1 conv after the bottlenecks widens the last width six times (160 -> 960)."""


def mobilenet_v3_large_stages(width_mult: float = 1.0, *, se_gate: str = "hard_sigmoid",
                              strides: Sequence[int] = (2, 2, 2, 2)) -> tuple[list[Stage], list[Stage], int]:
    """Stem, stages and head width of MobileNetV3-Large scaled by ``width_mult``.

    Every width (stem, expanded, out, head) is ``make_divisible(width * width_mult, 8)``; the squeeze width of
    a block with SE is ``make_divisible(expanded // 4, 8)`` and its gate ``se_gate``; the last conv has
    ``6 * make_divisible(160 * width_mult)`` channels. The network's ``act_layer`` should be ``hardswish`` (stem,
    last conv and head); each bottleneck states its own.

    Args:
        width_mult: channel multiplier (EfficientAT: 0.1 ... 4.0).
        se_gate: ``hard_sigmoid`` (torchvision's MobileNetV3) or ``sigmoid`` (EfficientAT).
        strides: the strides of the four downsampling bottlenecks, in order (2 in the paper).

    Returns:
        ``(stem, stages, head_hidden)``: pass them to ``ConvNet(stages, stem=stem, head_hidden=(head_hidden,),
        act_layer="hardswish")``.
    """
    return _stages(MOBILENET_V3_LARGE, HEAD_HIDDEN, width_mult, se_gate=se_gate, strides=strides)


def mobilenet_v3_small_stages(width_mult: float = 1.0, *, se_gate: str = "hard_sigmoid",
                              strides: Sequence[int] = (2, 2, 2, 2)) -> tuple[list[Stage], list[Stage], int]:
    """Stem, stages and head width of MobileNetV3-Small (:data:`MOBILENET_V3_SMALL`, head 1024) scaled by
    ``width_mult``, with the same rounding and arguments as :func:`mobilenet_v3_large_stages`.

    Example:
        >>> stem, stages, hidden = mobilenet_v3_small_stages(0.5)
        >>> stem[0].out_chans, stages[-1].out_chans, hidden
        (8, 288, 512)
    """
    return _stages(MOBILENET_V3_SMALL, SMALL_HEAD_HIDDEN, width_mult, se_gate=se_gate, strides=strides)


def _stages(table: Sequence[tuple], head_hidden: int, width_mult: float, *, se_gate: str,
            strides: Sequence[int]) -> tuple[list[Stage], list[Stage], int]:
    if width_mult <= 0:
        raise ConfigError(f"width_mult must be positive, got {width_mult}")
    if len(strides) != 4:
        raise ConfigError(f"strides: MobileNetV3 has four downsampling strides, got {tuple(strides)}")

    def width(c: int) -> int:
        return make_divisible(c * width_mult, 8)

    stem = [Stage("conv", width(STEM_CHANS), stride=2, args={"kernel_size": 3})]
    stages, downsampling = [], iter(strides)
    for kernel, expanded, out, use_se, act, stride in table:
        stages.append(Stage("mobilenet_v3", width(out), stride=next(downsampling) if stride == 2 else 1, args={
            "kernel_size": kernel, "expanded_chans": width(expanded), "use_se": use_se, "act_layer": act,
            "se_gate": se_gate}))
    last = table[-1][2]
    stages.append(Stage("conv", LAST_CONV_EXPANSION * width(last), args={"kernel_size": 1}))
    return stem, stages, width(head_hidden)


@register_model(example=(1, 3, 224, 224))
def mobilenet_v3_small(*, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0,
                       drop_rate: float = 0.2, **kwargs) -> ConvNet:
    """MobileNetV3-Small (Howard et al. 2019, Table 2); at width 1.0, 3 channels and 1000 classes it has
    torchvision's ``mobilenet_v3_small`` parameter count (2,542,856)."""
    stem, stages, hidden = mobilenet_v3_small_stages(width_mult)
    return ConvNet(stages, stem=stem, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                   head_hidden=(hidden,), **{"act_layer": "hardswish", **kwargs})


@register_model
def mnv3_small_audio(*, num_classes: int = 10, in_chans: int = 1, width_mult: float = 0.5, drop_rate: float = 0.2,
                     **kwargs) -> ConvNet:
    """MobileNetV3-Small for one-channel spectrograms ``(batch, 1, n_mels, frames)``, from scratch, at width 0.5
    by default (any ``n_mels`` and length: global pooling before the head)."""
    return mobilenet_v3_small(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult,
                              drop_rate=drop_rate, **kwargs)
