"""Building blocks shared by every model family, for 1-D and 2-D inputs.

Every block has the signature ``Block(in_chans, out_chans, *, stride, dims, norm_layer, act_layer, **args)``
and is registered in :data:`BLOCKS` so a stage spec can name it.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from audiocnn.core.errors import ConfigError
from audiocnn.core.registry import Registry

__all__ = ["BLOCKS", "BasicBlock", "Bottleneck", "ConvNormAct", "DenseBlock", "DenseLayer", "DropPath",
           "FrequencyBatchNorm", "Inception", "InvertedResidual", "NormAct", "SqueezeExcite", "Transition", "VGGBlock",
           "get_act", "get_norm", "conv_nd", "make_divisible", "mobilenet_v3_block", "pool_nd"]

BLOCKS: Registry[Callable[..., nn.Module]] = Registry("block")

_ACTS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU,
         "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu6": nn.ReLU6, "hardswish": nn.Hardswish,
         "hard_sigmoid": nn.Hardsigmoid, "identity": nn.Identity}


def get_act(name: str | Callable[[], nn.Module] | None) -> nn.Module:
    """Activation by name (``relu``, ``gelu``, ``silu``...) or by class."""
    if name is None or name == "none":
        return nn.Identity()
    if callable(name) and not isinstance(name, str):
        return name()
    if name not in _ACTS:
        raise ConfigError(f"unknown act_layer {name!r}; choose from {', '.join(_ACTS)}")
    act = _ACTS[name]
    return act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Hardswish) else act()


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNet's channel rounding: ``value`` to the nearest multiple of ``divisor`` (at least ``min_value``,
    default ``divisor``), one step up when rounding would lose more than 10%. Width multipliers and squeeze
    widths of MobileNetV2/V3 and EfficientAT go through it: ``make_divisible(16 * 0.4) == 8``,
    ``make_divisible(72 // 4) == 24``."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def get_norm(name: str | Callable[[int], nn.Module] | None, num_features: int, dims: int) -> nn.Module:
    """Normalisation by name: ``batchnorm``, ``groupnorm``, ``layernorm`` (over channels), ``none``;
    or a callable taking the channel count, e.g. ``partial(nn.BatchNorm2d, eps=1e-3)``."""
    if name in (None, "none"):
        return nn.Identity()
    if callable(name) and not isinstance(name, str):
        return name(num_features)
    if name == "batchnorm":
        return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(num_features)
    if name == "groupnorm":
        return nn.GroupNorm(min(32, num_features), num_features)
    if name == "layernorm":
        return nn.GroupNorm(1, num_features)
    raise ConfigError(f"unknown norm_layer {name!r}; choose from batchnorm, groupnorm, layernorm, none")


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
        raise ConfigError(f"unknown pool {kind!r}; use max or avg")
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


def _unit_stride(stride: int | tuple) -> bool:
    return all(s == 1 for s in ((stride,) if isinstance(stride, int) else stride))


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch for a whole sample with probability ``p`` and scale
    the kept ones by ``1 / (1 - p)``. Parameter-free; the identity in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global average -> 1x1 reduce -> act -> 1x1 expand -> gate on the channels.

    ``(batch, chans, *spatial) -> (batch, chans, *spatial)``.

    Args:
        gate: ``sigmoid`` (SENet, EfficientNet, EfficientAT) or ``hard_sigmoid`` (torchvision's MobileNetV3).
    """

    def __init__(self, chans: int, squeeze_chans: int, *, dims: int = 2, act_layer: str | None = "relu",
                 gate: str = "sigmoid"):
        super().__init__()
        if gate not in ("sigmoid", "hard_sigmoid"):
            raise ConfigError(f"unknown squeeze-excitation gate {gate!r}; use sigmoid or hard_sigmoid")
        self.fc1 = conv_nd(dims, chans, squeeze_chans, 1)
        self.act = get_act(act_layer)
        self.fc2 = conv_nd(dims, squeeze_chans, chans, 1)
        self.gate = get_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(tuple(range(2, x.ndim)), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


@BLOCKS.register("inverted_residual")
class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual (narrow -> wide -> narrow), with ``se_ratio`` EfficientNet's MBConv, with
    ``expanded_chans`` / ``se_chans`` MobileNetV3's block.

    1x1 expand to ``round(in_chans * expand_ratio)`` (or ``expanded_chans``; skipped when that equals
    ``in_chans``), depthwise ``kernel_size`` conv with the stride, optional squeeze-excitation, 1x1 linear
    projection (no activation); identity shortcut (through :class:`DropPath`) when the shape is kept.

    Args:
        expand_ratio: width of the hidden layer relative to the input.
        expanded_chans: the hidden width itself (MobileNetV3 tables give it per block); overrides ``expand_ratio``.
        kernel_size: depthwise kernel.
        se_ratio: squeeze width relative to the block *input* channels (0: no SE), as in EfficientNet.
        se_chans: the squeeze width itself; overrides ``se_ratio``.
        se_act_layer: activation inside the SE (default: ``act_layer``; MobileNetV3 uses ``relu``).
        se_gate: ``sigmoid`` or ``hard_sigmoid``.
        drop_path_rate: stochastic depth probability of the residual branch.
    """

    def __init__(self, in_chans: int, out_chans: int, *, stride: int | tuple = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu6", expand_ratio: float = 6.0,
                 expanded_chans: int | None = None, kernel_size: int = 3, se_ratio: float = 0.0,
                 se_chans: int | None = None, se_act_layer: str | None = None, se_gate: str = "sigmoid",
                 drop_path_rate: float = 0.0):
        super().__init__()
        hidden = expanded_chans if expanded_chans is not None else int(round(in_chans * expand_ratio))
        common = dict(dims=dims, norm_layer=norm_layer)
        self.expand = (ConvNormAct(in_chans, hidden, 1, act_layer=act_layer, **common) if hidden != in_chans
                       else nn.Identity())
        self.dw = ConvNormAct(hidden, hidden, kernel_size, stride=stride, groups=hidden, act_layer=act_layer, **common)
        squeeze = se_chans if se_chans is not None else (max(1, int(in_chans * se_ratio)) if se_ratio > 0 else 0)
        self.se = (SqueezeExcite(hidden, squeeze, dims=dims, act_layer=se_act_layer or act_layer, gate=se_gate)
                   if squeeze > 0 else nn.Identity())
        self.project = ConvNormAct(hidden, out_chans, 1, act_layer=None, **common)
        self.use_shortcut = _unit_stride(stride) and in_chans == out_chans
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return x + self.drop_path(out) if self.use_shortcut else out


@BLOCKS.register("mobilenet_v3")
def mobilenet_v3_block(in_chans: int, out_chans: int, *, stride: int | tuple = 1, dims: int = 2,
                       norm_layer: str | None = "batchnorm", act_layer: str | None = "hardswish",
                       expanded_chans: int, kernel_size: int = 3, use_se: bool = False, se_reduction: int = 4,
                       se_gate: str = "hard_sigmoid", drop_path_rate: float = 0.0) -> InvertedResidual:
    """MobileNetV3's bottleneck (Howard et al. 2019): an :class:`InvertedResidual` with the hidden width given,
    ``act_layer`` ``relu`` or ``hardswish`` per block, and optionally squeeze-excitation on the hidden layer with
    ReLU inside and ``make_divisible(expanded_chans // se_reduction, 8)`` squeeze channels.

    Args:
        se_gate: ``hard_sigmoid`` as torchvision's MobileNetV3; EfficientAT's blocks use ``sigmoid``.
    """
    se_chans = make_divisible(expanded_chans // se_reduction, 8) if use_se else 0
    return InvertedResidual(in_chans, out_chans, stride=stride, dims=dims, norm_layer=norm_layer, act_layer=act_layer,
                            expanded_chans=expanded_chans, kernel_size=kernel_size, se_chans=se_chans,
                            se_act_layer="relu", se_gate=se_gate, drop_path_rate=drop_path_rate)


@BLOCKS.register("mbconv")
def mbconv(in_chans: int, out_chans: int, *, stride: int | tuple = 1, dims: int = 2,
           norm_layer: str | None = "batchnorm", act_layer: str | None = "silu", expand_ratio: float = 6.0,
           kernel_size: int = 3, se_ratio: float = 0.25, drop_path_rate: float = 0.0) -> InvertedResidual:
    """EfficientNet's MBConv: an :class:`InvertedResidual` with squeeze-excitation (``se_ratio`` 0.25)."""
    return InvertedResidual(in_chans, out_chans, stride=stride, dims=dims, norm_layer=norm_layer, act_layer=act_layer,
                            expand_ratio=expand_ratio, kernel_size=kernel_size, se_ratio=se_ratio,
                            drop_path_rate=drop_path_rate)


@BLOCKS.register("inception")
class Inception(nn.Module):
    """Inception v1 cell: 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and 3x3 max-pool -> 1x1 branches, concatenated.

    ``out_chans`` must equal ``ch1x1 + ch3x3 + ch5x5 + pool_proj`` (the stage spec states the cell's width).

    Args:
        ch1x1: width of the 1x1 branch.
        ch3x3red / ch3x3: reduction and output width of the 3x3 branch.
        ch5x5red / ch5x5: reduction and output width of the "5x5" branch.
        pool_proj: width of the 1x1 projection after the pooling branch.
        large_kernel: kernel of the "5x5" branch; torchvision's GoogLeNet (and its weights) use 3.
    """

    def __init__(self, in_chans: int, out_chans: int, *, stride: int | tuple = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu", ch1x1: int, ch3x3red: int,
                 ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int, large_kernel: int = 5):
        super().__init__()
        if not _unit_stride(stride):
            raise ConfigError("an inception cell keeps the resolution; pool in the stage spec instead of a stride")
        if ch1x1 + ch3x3 + ch5x5 + pool_proj != out_chans:
            raise ConfigError(f"inception branches give {ch1x1 + ch3x3 + ch5x5 + pool_proj} channels "
                             f"({ch1x1}+{ch3x3}+{ch5x5}+{pool_proj}), but the stage says out_chans={out_chans}")

        def conv(cin: int, cout: int, k: int) -> ConvNormAct:
            return ConvNormAct(cin, cout, k, dims=dims, norm_layer=norm_layer, act_layer=act_layer)

        self.branch1 = conv(in_chans, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_chans, ch3x3red, 1), conv(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(conv(in_chans, ch5x5red, 1), conv(ch5x5red, ch5x5, large_kernel))
        self.branch4 = nn.Sequential(pool_nd("max", dims, 3, 1, 1, ceil_mode=True), conv(in_chans, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class NormAct(nn.Module):
    """norm -> act (the pre-activation half of DenseNet's layers)."""

    def __init__(self, chans: int, *, dims: int = 2, norm_layer: str | None = "batchnorm",
                 act_layer: str | None = "relu"):
        super().__init__()
        self.norm = get_norm(norm_layer, chans, dims)
        self.act = get_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(x))


@BLOCKS.register("norm_act")
def norm_act(in_chans: int, out_chans: int, *, stride: int | tuple = 1, dims: int = 2,
             norm_layer: str | None = "batchnorm", act_layer: str | None = "relu") -> NormAct:
    """A final norm -> act stage (DenseNet's ``norm5`` + ReLU before the pool); keeps the channel count."""
    if in_chans != out_chans or not _unit_stride(stride):
        raise ConfigError(f"norm_act keeps the shape: got {in_chans} -> {out_chans} channels, stride {stride}")
    return NormAct(in_chans, dims=dims, norm_layer=norm_layer, act_layer=act_layer)


@BLOCKS.register("freq_norm")
class FrequencyBatchNorm(nn.Module):
    """Batch norm with one mean and variance per frequency row (PANNs' ``bn0``), learnt with the network.

    ``(batch, chans, n_mels, frames) -> same``: statistics over batch, channels and frames for each of the
    ``n_mels`` rows. Keeps the channel count; ``n_mels`` comes from the input size, never a constant.
    """

    def __init__(self, in_chans: int, out_chans: int, *, n_mels: int, stride: int | tuple = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = None):
        super().__init__()
        if in_chans != out_chans or not _unit_stride(stride) or dims != 2:
            raise ConfigError(f"freq_norm keeps the shape of a 2-D input: got {in_chans} -> {out_chans} channels, "
                              f"stride {stride}, dims {dims}")
        self.bn = nn.BatchNorm2d(n_mels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class DenseLayer(nn.Module):
    """DenseNet-BC layer, pre-activation: norm-act-1x1 conv (``bn_size * growth_rate``) -> norm-act-3x3 conv
    (``growth_rate``). ``(batch, in_chans, ...) -> (batch, growth_rate, ...)``."""

    def __init__(self, in_chans: int, growth_rate: int, bn_size: int, *, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu"):
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = get_norm(norm_layer, in_chans, dims)
        self.act1 = get_act(act_layer)
        self.conv1 = conv_nd(dims, in_chans, width, 1, bias=False)
        self.norm2 = get_norm(norm_layer, width, dims)
        self.act2 = get_act(act_layer)
        self.conv2 = conv_nd(dims, width, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act2(self.norm2(self.conv1(self.act1(self.norm1(x))))))


@BLOCKS.register("dense_block")
class DenseBlock(nn.Module):
    """``num_layers`` dense layers, each fed the concatenation of the block input and all earlier outputs.

    ``out_chans`` must equal ``in_chans + num_layers * growth_rate``.

    Args:
        num_layers: dense layers in the block.
        growth_rate: channels each layer adds.
        bn_size: bottleneck width of each layer in multiples of ``growth_rate``.
    """

    def __init__(self, in_chans: int, out_chans: int, *, stride: int | tuple = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu", num_layers: int,
                 growth_rate: int = 32, bn_size: int = 4):
        super().__init__()
        if not _unit_stride(stride):
            raise ConfigError("a dense block keeps the resolution; downsample in a transition stage")
        if in_chans + num_layers * growth_rate != out_chans:
            raise ConfigError(f"dense block: {in_chans} + {num_layers} x {growth_rate} = "
                             f"{in_chans + num_layers * growth_rate} channels, but the stage says {out_chans}")
        self.layers = nn.ModuleList(
            DenseLayer(in_chans + i * growth_rate, growth_rate, bn_size, dims=dims, norm_layer=norm_layer,
                       act_layer=act_layer) for i in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


@BLOCKS.register("transition")
class Transition(nn.Module):
    """DenseNet transition: norm -> act -> 1x1 conv (usually halving the channels). The 2x2 average pool
    is the stage's ``pool``."""

    def __init__(self, in_chans: int, out_chans: int, *, stride: int | tuple = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu"):
        super().__init__()
        self.norm = get_norm(norm_layer, in_chans, dims)
        self.act = get_act(act_layer)
        self.conv = conv_nd(dims, in_chans, out_chans, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.norm(x)))
