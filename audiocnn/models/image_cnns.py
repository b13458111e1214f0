"""The classic image CNNs, LeNet-5 to EfficientNet, as stage specs over the one generic :class:`ConvNet`.

Each named model is data: a stem, a list of :class:`Stage` specs and head settings. At 3x224x224 and 1000
classes every ImageNet model has exactly torchvision's parameter count, and
:func:`audiocnn.models.pretrained.load_pretrained` maps torchvision's state-dict names onto these modules.
``in_chans`` and ``num_classes`` are free, so each one also runs on spectrograms ``(batch, 1, n_mels, frames)``.
Any :class:`ConvNet` argument (``norm_layer``, ``act_layer``, ``head_hidden``...) overrides the family default.

Smallest inputs: alexnet 63 px, vgg 32 px, googlenet 15 px, densenet 29 px; the others run at any size.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

from torch import nn

from audiocnn.models.backbone import ConvNet, Stage
from audiocnn.models.blocks import InvertedResidual
from audiocnn.models.registry import register_model

__all__ = ["IMAGE_MODELS"]

IMAGE_MODELS = ["lenet5", "alexnet", "vgg11", "vgg16", "googlenet", "resnet18", "resnet50", "resnext50_32x4d",
                "densenet121", "mobilenet_v2", "efficientnet_b0"]


def _convnet(stages: Sequence[Stage], stem: Sequence[Stage], defaults: dict[str, Any],
             kwargs: dict[str, Any]) -> ConvNet:
    """The family's defaults, overridden by whatever the caller passed."""
    return ConvNet(stages, stem=stem, **{**defaults, **kwargs})


def _max_pool(size: int = 3, stride: int = 2, padding: int = 0, ceil: bool = False) -> dict[str, Any]:
    return dict(pool="max", pool_size=size, pool_stride=stride, pool_padding=padding, pool_ceil_mode=ceil)


# --- LeNet-5 (LeCun et al. 1998) ---------------------------------------------------------------------------

@register_model
def lenet5(*, num_classes: int = 10, in_chans: int = 1, padding: int = 0,
           input_size: Sequence[int] | None = None, **kwargs) -> ConvNet:
    """LeNet-5 as commonly ported: 5x5 convs (6, 16) with tanh and 2x2 average-pool subsampling, then
    120-84-``num_classes`` dense layers (61,706 parameters for 10 classes; full C3 connectivity, no RBF output).

    Args:
        padding: of the first conv; 2 for 28x28 MNIST digits gives the classic 32x32 geometry.
        input_size: ``(in_chans, height, width)``, sets the flatten width; default ``(in_chans, 32, 32)``.
    """
    stages = [Stage("conv", 6, pool="avg", args={"kernel_size": 5, "padding": padding}),
              Stage("conv", 16, pool="avg", args={"kernel_size": 5, "padding": 0})]
    return _convnet(stages, (), dict(num_classes=num_classes, in_chans=in_chans, global_pool="flatten",
                                     head_hidden=(120, 84), input_size=input_size or (in_chans, 32, 32),
                                     norm_layer=None, act_layer="tanh"), kwargs)


# --- AlexNet and VGG: plain conv stacks and a 4096-4096 dense head ------------------------------------------

def _plain_head(in_chans: int, pool: int, dropout_first: bool, min_size: int) -> dict[str, Any]:
    # The adaptive pool fixes the flatten width (512*7*7, 256*6*6), so any valid input_size infers it;
    # the smallest one keeps construction cheap.
    return dict(global_pool="flatten", head_pool_size=pool, head_hidden=(4096, 4096), head_dropout_first=dropout_first,
                input_size=(in_chans, min_size, min_size), norm_layer=None)


@register_model
def alexnet(*, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5, **kwargs) -> ConvNet:
    """AlexNet, torchvision's one-GPU variant (64-192-384-256-256; 61,100,840 parameters)."""
    stem = [Stage("conv", 64, stride=4, **_max_pool(), args={"kernel_size": 11, "padding": 2})]
    stages = [Stage("conv", 192, **_max_pool(), args={"kernel_size": 5}), Stage("conv", 384), Stage("conv", 256),
              Stage("conv", 256, **_max_pool())]
    return _convnet(stages, stem, dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                                       **_plain_head(in_chans, 6, True, 63)), kwargs)


def _vgg(convs: Sequence[int], num_classes: int, in_chans: int, drop_rate: float, kwargs: dict) -> ConvNet:
    stages = [Stage("vgg", w, pool="max", args={"convs": n}) for w, n in zip((64, 128, 256, 512, 512), convs)]
    return _convnet(stages, (), dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                                     **_plain_head(in_chans, 7, False, 32)), kwargs)


@register_model
def vgg11(*, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5, **kwargs) -> ConvNet:
    """VGG-11 (configuration A, no batch norm; 132,863,336 parameters)."""
    return _vgg((1, 1, 2, 2, 2), num_classes, in_chans, drop_rate, kwargs)


@register_model
def vgg16(*, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5, **kwargs) -> ConvNet:
    """VGG-16 (configuration D, no batch norm; 138,357,544 parameters)."""
    return _vgg((2, 2, 3, 3, 3), num_classes, in_chans, drop_rate, kwargs)


# --- GoogLeNet (Inception v1) ---------------------------------------------------------------------------------

# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, max pool (size, stride) after the cell)
_INCEPTION_V1 = [
    (64, 96, 128, 16, 32, 32, None), (128, 128, 192, 32, 96, 64, (3, 2)),  # 3a, 3b
    (192, 96, 208, 16, 48, 64, None), (160, 112, 224, 24, 64, 64, None), (128, 128, 256, 24, 64, 64, None),
    (112, 144, 288, 32, 64, 64, None), (256, 160, 320, 32, 128, 128, (2, 2)),  # 4a-4e
    (256, 160, 320, 32, 128, 128, None), (384, 192, 384, 48, 128, 128, None),  # 5a, 5b
]


@register_model
def googlenet(*, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, large_kernel: int = 3,
              **kwargs) -> ConvNet:
    """GoogLeNet without the auxiliary heads: nine Inception cells, Caffe-style (ceil) pooling, batch norm with
    eps 1e-3 as torchvision has it (6,624,904 parameters).

    Args:
        large_kernel: kernel of each cell's "5x5" branch: 3 matches torchvision's model and weights
            (pytorch/vision#906), 5 is the paper's.
    """
    stem = [Stage("conv", 64, stride=2, **_max_pool(ceil=True), args={"kernel_size": 7}),
            Stage("conv", 64, args={"kernel_size": 1}),
            Stage("conv", 192, **_max_pool(ceil=True))]
    stages = [Stage("inception", b1 + b2 + b3 + pp, **(_max_pool(*pool, ceil=True) if pool else {}),
                    args=dict(ch1x1=b1, ch3x3red=r2, ch3x3=b2, ch5x5red=r3, ch5x5=b3, pool_proj=pp,
                              large_kernel=large_kernel))
              for b1, r2, b2, r3, b3, pp, pool in _INCEPTION_V1]
    return _convnet(stages, stem, dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                                       norm_layer=partial(nn.BatchNorm2d, eps=1e-3)), kwargs)


# --- ResNet / ResNeXt -------------------------------------------------------------------------------------------

def _resnet(block: str, depths: Sequence[int], num_classes: int, in_chans: int, kwargs: dict,
            block_args: dict | None = None) -> ConvNet:
    stem = [Stage("conv", 64, stride=2, **_max_pool(padding=1), args={"kernel_size": 7})]
    expansion = 4 if block == "bottleneck" else 1
    stages = [Stage(block, 64 * 2 ** i * expansion, depth=d, stride=1 if i == 0 else 2, args=dict(block_args or {}))
              for i, d in enumerate(depths)]
    return _convnet(stages, stem, dict(num_classes=num_classes, in_chans=in_chans), kwargs)


@register_model
def resnet18(*, num_classes: int = 1000, in_chans: int = 3, **kwargs) -> ConvNet:
    """ResNet-18: basic blocks (2, 2, 2, 2) (11,689,512 parameters)."""
    return _resnet("basic", (2, 2, 2, 2), num_classes, in_chans, kwargs)


@register_model
def resnet50(*, num_classes: int = 1000, in_chans: int = 3, **kwargs) -> ConvNet:
    """ResNet-50 v1.5 (stride on the 3x3): bottlenecks (3, 4, 6, 3) (25,557,032 parameters)."""
    return _resnet("bottleneck", (3, 4, 6, 3), num_classes, in_chans, kwargs)


@register_model
def resnext50_32x4d(*, num_classes: int = 1000, in_chans: int = 3, **kwargs) -> ConvNet:
    """ResNeXt-50 32x4d: bottlenecks with 32 groups of width 4 (25,028,904 parameters)."""
    return _resnet("bottleneck", (3, 4, 6, 3), num_classes, in_chans, kwargs, {"groups": 32, "base_width": 4})


# --- DenseNet ---------------------------------------------------------------------------------------------------

def _densenet(block_config: Sequence[int], growth_rate: int, init_chans: int, num_classes: int, in_chans: int,
              kwargs: dict) -> ConvNet:
    stem = [Stage("conv", init_chans, stride=2, **_max_pool(padding=1), args={"kernel_size": 7})]
    stages, chans = [], init_chans
    for i, n in enumerate(block_config):
        chans += n * growth_rate
        stages.append(Stage("dense_block", chans, args={"num_layers": n, "growth_rate": growth_rate}))
        if i < len(block_config) - 1:
            chans //= 2
            stages.append(Stage("transition", chans, pool="avg", pool_size=2))
    stages.append(Stage("norm_act", chans))  # norm5 + ReLU before the global pool
    return _convnet(stages, stem, dict(num_classes=num_classes, in_chans=in_chans), kwargs)


@register_model
def densenet121(*, num_classes: int = 1000, in_chans: int = 3, **kwargs) -> ConvNet:
    """DenseNet-121 (BC, growth 32, blocks 6-12-24-16, transitions halve the width; 7,978,856 parameters)."""
    return _densenet((6, 12, 24, 16), 32, 64, num_classes, in_chans, kwargs)


# --- MobileNetV2 and EfficientNet: inverted residuals -----------------------------------------------------------

# (expand_ratio, out_chans, depth, stride)
_MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1)]


@register_model
def mobilenet_v2(*, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, **kwargs) -> ConvNet:
    """MobileNetV2 (width 1.0): inverted residuals with ReLU6, 1x1 conv to 1280 before the pool
    (3,504,872 parameters)."""
    stem = [Stage("conv", 32, stride=2)]
    stages = [Stage("inverted_residual", c, depth=n, stride=s, args={"expand_ratio": t})
              for t, c, n, s in _MOBILENET_V2]
    stages.append(Stage("conv", 1280, args={"kernel_size": 1}))
    return _convnet(stages, stem, dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                                       act_layer="relu6"), kwargs)


# (expand_ratio, kernel_size, out_chans, depth, stride)
_EFFICIENTNET_B0 = [(1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 5, 40, 2, 2), (6, 3, 80, 3, 2), (6, 5, 112, 3, 1),
                    (6, 5, 192, 4, 2), (6, 3, 320, 1, 1)]


@register_model
def efficientnet_b0(*, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
                    drop_path_rate: float = 0.2, **kwargs) -> ConvNet:
    """EfficientNet-B0: MBConv blocks with squeeze-excitation and SiLU, 1x1 conv to 1280 before the pool
    (5,288,548 parameters).

    Args:
        drop_path_rate: stochastic depth, rising linearly from 0 at the first block to this value (exclusive)
            at the last, as torchvision does.
    """
    stem = [Stage("conv", 32, stride=2)]
    stages = [Stage("mbconv", c, depth=n, stride=s, args={"expand_ratio": t, "kernel_size": k})
              for t, k, c, n, s in _EFFICIENTNET_B0]
    stages.append(Stage("conv", 1280, args={"kernel_size": 1}))
    net = _convnet(stages, stem, dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                                      act_layer="silu"), kwargs)
    blocks = [m for m in net.modules() if isinstance(m, InvertedResidual)]
    for i, block in enumerate(blocks):
        block.drop_path.p = drop_path_rate * i / len(blocks)
    return net
