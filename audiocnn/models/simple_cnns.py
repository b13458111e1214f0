"""Small plain image CNNs, as stage specs over ConvNet.

Input ``(batch, in_chans, height, width)``; a flatten head, so the input size is fixed when the model is built.
"""
from __future__ import annotations

from typing import Sequence

from audiocnn.models.backbone import ConvNet, Stage
from audiocnn.models.registry import register_model

__all__ = ["small_convnet"]


@register_model
def small_convnet(*, num_classes: int = 1, in_chans: int = 3, input_size: Sequence[int] | None = None, width: int = 32,
                  hidden: int = 64, drop_rate: float = 0.5, **kwargs) -> ConvNet:
    """The classic small image classifier of the Keras course example (cats vs dogs, 150x150): three stages of
    3x3 conv (valid padding) + ReLU + 2x2 max-pool with 32, 64, 128 channels, flatten, dense ``hidden`` + ReLU,
    dropout, linear. No normalisation layers. One output with ``data.task: binary`` (sigmoid and binary
    cross-entropy live in the engine). ``input_size`` defaults to ``(in_chans, 150, 150)``.
    """
    stages = [Stage("conv", width * 2 ** i, pool="max", pool_size=2, args={"kernel_size": 3, "padding": 0})
              for i in range(3)]
    kwargs.setdefault("norm_layer", "none")
    return ConvNet(stages, num_classes=num_classes, in_chans=in_chans, global_pool="flatten", head_hidden=(hidden,),
                   drop_rate=drop_rate, input_size=tuple(input_size or (in_chans, 150, 150)), **kwargs)
