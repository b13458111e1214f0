"""The one generic conv network: a stem, a list of stages (data), and a classifier head.

A model family is a list of :class:`Stage` specs; a named model is a registered function that writes
that list. 1-D and 2-D networks are the same class with ``dims=1`` or ``dims=2``.

Shapes: 2-D ``(batch, in_chans, n_mels, frames) -> (batch, num_classes)``;
1-D ``(batch, in_chans, time) -> (batch, num_classes)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from audiocnn.core.errors import ConfigError
from audiocnn.models.blocks import BLOCKS, get_act, pool_nd

__all__ = ["ClassifierHead", "ConvNet", "Stage"]


@dataclass
class Stage:
    """One stage: ``depth`` blocks of type ``block``, the first with ``stride``, then optional pooling.

    Args:
        block: a registered block name (``conv``, ``vgg``, ``basic``, ``bottleneck``...).
        out_chans: output channels of every block in the stage.
        depth: number of blocks.
        stride: stride of the first block.
        pool: ``max`` or ``avg`` pooling after the stage, or None.
        pool_size / pool_stride / pool_padding: pooling geometry (stride defaults to size).
        pool_ceil_mode: round the pooled size up (Caffe-style pooling, as GoogLeNet's weights expect).
        drop_rate: dropout after the stage (as PANNs CNNs do).
        args: extra keyword arguments for every block (``groups``, ``expansion``, ``kernel_size``...); an
            ``act_layer`` or ``norm_layer`` here overrides the network's for this stage.
    """

    block: str
    out_chans: int
    depth: int = 1
    stride: int | tuple = 1
    pool: str | None = None
    pool_size: int | tuple = 2
    pool_stride: int | tuple | None = None
    pool_padding: int = 0
    pool_ceil_mode: bool = False
    drop_rate: float = 0.0
    args: dict[str, Any] = field(default_factory=dict)


def _global_pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Pool a feature map ``(batch, C, *spatial)`` to ``(batch, C)``."""
    if kind == "avg":
        return x.flatten(2).mean(-1)
    if kind == "max":
        return x.flatten(2).amax(-1)
    if kind == "avgmax":
        # PANNs: average over frequency, then mean + max over time.
        if x.ndim == 4:
            x = x.mean(2)
        return x.mean(-1) + x.amax(-1)
    raise ConfigError(f"unknown global_pool {kind!r}; use avg, max, avgmax or flatten")


class ClassifierHead(nn.Module):
    """Pool, optional hidden layers, dropout, linear.

    ``global_pool='flatten'`` flattens the feature map (optionally after adaptive average pooling to
    ``pool_size``), so its width is inferred from a dummy forward, never computed by hand.
    """

    def __init__(self, in_features: int, num_classes: int, *, global_pool: str = "avg",
                 pool_size: int | tuple | None = None, dims: int = 2, hidden: Sequence[int] = (),
                 drop_rate: float = 0.0, act_layer: str = "relu", hidden_dropout_first: bool = False):
        super().__init__()
        self.global_pool = global_pool
        self.adaptive = None
        if pool_size is not None:
            self.adaptive = (nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d)(pool_size)
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            if hidden_dropout_first and drop_rate:
                layers.append(nn.Dropout(drop_rate))
            layers += [nn.Linear(width, h), get_act(act_layer)]
            if not hidden_dropout_first and drop_rate:
                layers.append(nn.Dropout(drop_rate))
            width = h
        self.hidden = nn.Sequential(*layers)
        self.num_features = width
        self.drop = nn.Dropout(drop_rate) if drop_rate and not hidden else nn.Identity()
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.adaptive is not None:
            x = self.adaptive(x)
        if self.global_pool == "flatten":
            return x.flatten(1)
        return _global_pool(x, self.global_pool)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(self.pool(x))
        if pre_logits:
            return x
        return self.fc(self.drop(x))


class ConvNet(nn.Module):
    """Generic CNN: ``stem -> stages -> head``, driven by :class:`Stage` data.

    Args:
        stages: the stage specs.
        num_classes: outputs of the head (0 for a feature extractor).
        in_chans: input channels (1 for a spectrogram, 3 for RGB, n_mels for a 1-D model on frames).
        dims: 1 or 2.
        stem: optional stages run before ``stages`` (not counted in ``feature_info``).
        global_pool: ``avg``, ``max``, ``avgmax`` (PANNs) or ``flatten``.
        head_pool_size: adaptive average pooling size before a flatten head (VGG: 7).
        head_hidden: widths of hidden fully connected layers in the head.
        drop_rate: dropout in the head.
        input_size: ``(in_chans, *spatial)`` of a typical input; required for a flatten head.
        norm_layer / act_layer: by name, for every block.
    """

    def __init__(self, stages: Sequence[Stage], *, num_classes: int = 10, in_chans: int = 1, dims: int = 2,
                 stem: Sequence[Stage] = (), global_pool: str = "avg", head_pool_size: int | tuple | None = None,
                 head_hidden: Sequence[int] = (), drop_rate: float = 0.0, head_dropout_first: bool = False,
                 input_size: Sequence[int] | None = None, norm_layer: str | None = "batchnorm",
                 act_layer: str = "relu"):
        super().__init__()
        if dims not in (1, 2):
            raise ConfigError(f"dims must be 1 or 2, got {dims}")
        self.dims = dims
        self.in_chans = in_chans
        self.num_classes = num_classes
        chans = in_chans
        self.stem, chans, reduction = self._make_stages(stem, chans, dims, norm_layer, act_layer, 1, None)
        self.stages, chans, _ = self._make_stages(stages, chans, dims, norm_layer, act_layer, reduction,
                                                  info := [])
        self.feature_info = info
        self.out_chans = chans
        self._head_args = dict(global_pool=global_pool, pool_size=head_pool_size, dims=dims, hidden=tuple(head_hidden),
                               drop_rate=drop_rate, act_layer=act_layer, hidden_dropout_first=head_dropout_first)
        in_features = chans
        if global_pool == "flatten":
            if input_size is None:
                raise ConfigError("global_pool='flatten' needs input_size=(in_chans, ...) to infer the flatten width")
            in_features = self._infer_flatten(input_size, head_pool_size)
        self.head = ClassifierHead(in_features, num_classes, **self._head_args)
        self.num_features = self.head.num_features

    @staticmethod
    def _make_stages(specs, chans, dims, norm_layer, act_layer, reduction, info):
        modules = []
        for i, spec in enumerate(specs):
            make = BLOCKS.get(spec.block)
            blocks: list[nn.Module] = []
            for d in range(spec.depth):
                # a stage's args may override the network's norm and activation (MobileNetV3 mixes ReLU and
                # hard-swish blocks)
                layer_args = {"norm_layer": norm_layer, "act_layer": act_layer, **spec.args}
                blocks.append(make(chans, spec.out_chans, stride=spec.stride if d == 0 else 1, dims=dims,
                                   **layer_args))
                chans = spec.out_chans
            s = spec.stride if isinstance(spec.stride, int) else max(spec.stride)
            reduction *= s
            if spec.pool:
                blocks.append(pool_nd(spec.pool, dims, spec.pool_size, spec.pool_stride, spec.pool_padding,
                                      spec.pool_ceil_mode))
                ps = spec.pool_stride or spec.pool_size
                reduction *= ps if isinstance(ps, int) else max(ps)
            if spec.drop_rate:
                blocks.append(nn.Dropout(spec.drop_rate))
            modules.append(nn.Sequential(*blocks))
            if info is not None:
                info.append({"num_chs": chans, "reduction": reduction, "module": f"stages.{i}"})
        return nn.Sequential(*modules), chans, reduction

    @torch.no_grad()
    def _infer_flatten(self, input_size: Sequence[int], pool_size) -> int:
        was_training = self.training
        self.eval()
        x = self.stages(self.stem(torch.zeros(1, *input_size)))
        if pool_size is not None:
            x = (nn.AdaptiveAvgPool1d if self.dims == 1 else nn.AdaptiveAvgPool2d)(pool_size)(x)
        self.train(was_training)
        return x[0].numel()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_chans, *spatial) -> (batch, out_chans, *spatial / reduction)``."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer (transfer learning to a new label set)."""
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.head.num_features, num_classes) if num_classes > 0 else nn.Identity()
