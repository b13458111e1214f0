"""MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", ICCV 2019) as stage data over :class:`ConvNet`.

:data:`MOBILENET_V3_LARGE` is the paper's Table 1 (the bottleneck rows); :func:`mobilenet_v3_large_stages` scales
it by a width multiplier with MobileNet's channel rounding (:func:`~audiocnn.models.blocks.make_divisible`) and
returns the stem, the stages (one per bottleneck, then the 1x1 conv to six times the last width) and the width of
the head's hidden layer. With the defaults, 3 input channels, 1000 classes and ``act_layer="hardswish"`` it is
torchvision's ``mobilenet_v3_large`` (5,483,032 parameters). Registered networks built on it:
``efficientat_mn04/10/40`` (:mod:`audiocnn.models.efficientat`).

Example:
    >>> stem, stages, hidden = mobilenet_v3_large_stages(0.4, se_gate="sigmoid")
    >>> stem[0].out_chans, stages[-1].out_chans, hidden
    (8, 384, 512)
"""
from __future__ import annotations

from typing import Sequence

from audiocnn.core.errors import ConfigError
from audiocnn.models.backbone import Stage
from audiocnn.models.blocks import make_divisible

__all__ = ["MOBILENET_V3_LARGE", "mobilenet_v3_large_stages"]

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
STEM_CHANS = 16
HEAD_HIDDEN = 1280
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
    if width_mult <= 0:
        raise ConfigError(f"width_mult must be positive, got {width_mult}")
    if len(strides) != 4:
        raise ConfigError(f"strides: MobileNetV3 has four downsampling strides, got {tuple(strides)}")

    def width(c: int) -> int:
        return make_divisible(c * width_mult, 8)

    stem = [Stage("conv", width(STEM_CHANS), stride=2, args={"kernel_size": 3})]
    stages, downsampling = [], iter(strides)
    for kernel, expanded, out, use_se, act, stride in MOBILENET_V3_LARGE:
        stages.append(Stage("mobilenet_v3", width(out), stride=next(downsampling) if stride == 2 else 1, args={
            "kernel_size": kernel, "expanded_chans": width(expanded), "use_se": use_se, "act_layer": act,
            "se_gate": se_gate}))
    last = MOBILENET_V3_LARGE[-1][2]
    stages.append(Stage("conv", LAST_CONV_EXPANSION * width(last), args={"kernel_size": 1}))
    return stem, stages, width(HEAD_HIDDEN)
