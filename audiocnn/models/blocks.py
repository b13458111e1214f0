"""Building blocks shared by every model family, for 1-D and 2-D inputs.

Every block has the signature ``Block(in_chans, out_chans, *, stride, dims, norm_layer, act_layer, **args)``
and is registered in :data:`BLOCKS` so a stage spec can name it.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from audiocnn.registry import Registry

__all__ = ["BLOCKS", "BasicBlock", "Bottleneck", "ConvNormAct", "VGGBlock", "get_act", "get_norm", "conv_nd", "pool_nd"]

BLOCKS: Registry[Callable[..., nn.Module]] = Registry("block")

_ACTS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU,
         "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu6": nn.ReLU6, "identity": nn.Identity}


def get_act(name: str | Callable[[], nn.Module] | None) -> nn.Module:
    """Activation by name (``relu``, ``gelu``, ``silu``...) or by class."""
    if name is None or name == "none":
        return nn.Identity()
    if callable(name) and not isinstance(name, str):
        return name()
    if name not in _ACTS:
        raise ValueError(f"unknown act_layer {name!r}; choose from {', '.join(_ACTS)}")
    act = _ACTS[name]
    return act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.ELU, nn.LeakyReLU) else act()


def get_norm(name: str | None, num_features: int, dims: int) -> nn.Module:
    """Normalisation by name: ``batchnorm``, ``groupnorm``, ``layernorm`` (over channels), ``none``."""
    if name in (None, "none"):
        return nn.Identity()
    if name == "batchnorm":
        return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(num_features)
    if name == "groupnorm":
        return nn.GroupNorm(min(32, num_features), num_features)
    if name == "layernorm":
        return nn.GroupNorm(1, num_features)
    raise ValueError(f"unknown norm_layer {name!r}; choose from batchnorm, groupnorm, layernorm, none")


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    return (nn.Conv1d if dims == 1 else nn.Conv2d)(*args, **kwargs)


def pool_nd(kind: str, dims: int, size: int | tuple, stride: int | tuple | None = None, padding: int = 0,
            ceil_mode: bool = False) -> nn.Module:
    """``max`` or ``avg`` pooling in 1-D or 2-D."""
    if kind == "max":
        cls = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
    elif kind == "avg":
        cls = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
    else:
        raise ValueError(f"unknown pool {kind!r}; use max or avg")
    return cls(size, stride=stride, padding=padding, ceil_mode=ceil_mode)


class ConvNormAct(nn.Sequential):
    """conv -> norm -> act. ``(batch, in_chans, *spatial) -> (batch, out_chans, *spatial / stride)``."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int | tuple = 3, *, stride: int | tuple = 1,
                 padding: int | tuple | None = None, groups: int = 1, dilation: int = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu", bias: bool | None = None):
        if padding is None:
            ks = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
            padding = dilation * (ks - 1) // 2 if isinstance(kernel_size, int) else tuple(dilation * (k - 1) // 2 for k in kernel_size)
        use_norm = norm_layer not in (None, "none")
        super().__init__(
            conv_nd(dims, in_chans, out_chans, kernel_size, stride=stride, padding=padding, groups=groups,
                    dilation=dilation, bias=(not use_norm) if bias is None else bias),
            get_norm(norm_layer, out_chans, dims),
            get_act(act_layer),
        )


@BLOCKS.register("conv")
def conv_block(in_chans: int, out_chans: int, *, stride: int = 1, dims: int = 2, norm_layer: str | None = "batchnorm",
               act_layer: str | None = "relu", kernel_size: int | tuple = 3, padding: int | tuple | None = None,
               groups: int = 1, dilation: int = 1, bias: bool | None = None) -> nn.Module:
    """One conv-norm-act layer (a stage of depth ``n`` stacks ``n`` of them)."""
    return ConvNormAct(in_chans, out_chans, kernel_size, stride=stride, padding=padding, groups=groups,
                       dilation=dilation, dims=dims, norm_layer=norm_layer, act_layer=act_layer, bias=bias)


@BLOCKS.register("vgg")
class VGGBlock(nn.Sequential):
    """``convs`` 3x3 conv-norm-act layers, the unit of VGG-style and PANNs-style CNNs."""

    def __init__(self, in_chans: int, out_chans: int, *, stride: int = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu", convs: int = 2,
                 kernel_size: int = 3):
        layers = [ConvNormAct(in_chans if i == 0 else out_chans, out_chans, kernel_size, stride=stride if i == 0 else 1,
                              dims=dims, norm_layer=norm_layer, act_layer=act_layer) for i in range(convs)]
        super().__init__(*layers)


def _shortcut(in_chans: int, out_chans: int, stride: int, dims: int, norm_layer: str | None) -> nn.Module:
    """Identity, or a strided 1x1 projection when the shape changes."""
    if stride == 1 and in_chans == out_chans:
        return nn.Identity()
    return ConvNormAct(in_chans, out_chans, 1, stride=stride, padding=0, dims=dims, norm_layer=norm_layer,
                       act_layer=None)


@BLOCKS.register("basic")
class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_chans: int, out_chans: int, *, stride: int = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu"):
        super().__init__()
        self.conv1 = ConvNormAct(in_chans, out_chans, 3, stride=stride, dims=dims, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(out_chans, out_chans, 3, dims=dims, norm_layer=norm_layer, act_layer=None)
        self.shortcut = _shortcut(in_chans, out_chans, stride, dims, norm_layer)
        self.act = get_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


@BLOCKS.register("bottleneck")
class Bottleneck(nn.Module):
    """ResNet / ResNeXt bottleneck: 1x1 reduce, 3x3 (grouped) conv, 1x1 expand, with shortcut.

    ``out_chans`` is the block's output width; the inner width is
    ``out_chans // expansion * base_width / 64 * groups`` as in ResNeXt.
    """

    def __init__(self, in_chans: int, out_chans: int, *, stride: int = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu", expansion: int = 4,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        width = int(out_chans // expansion * (base_width / 64.0)) * groups
        self.conv1 = ConvNormAct(in_chans, width, 1, padding=0, dims=dims, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(width, width, 3, stride=stride, groups=groups, dims=dims, norm_layer=norm_layer,
                                 act_layer=act_layer)
        self.conv3 = ConvNormAct(width, out_chans, 1, padding=0, dims=dims, norm_layer=norm_layer, act_layer=None)
        self.shortcut = _shortcut(in_chans, out_chans, stride, dims, norm_layer)
        self.act = get_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))
