"""BC-ResNet (Kim et al., "Broadcasted Residual Learning for Efficient Keyword Spotting", Interspeech 2021,
arXiv 2106.04140) as stage data over :class:`~audiocnn.models.backbone.ConvNet`.

A BC-ResBlock keeps a cheap 2-D path and puts most of its work in 1-D temporal convolutions: a frequency-wise
depthwise conv ``f2`` (3x1, SubSpectral Norm) gives ``y``; averaging ``y`` over frequency and a temporal depthwise
conv ``f1`` (1x3, dilated, BN, swish, 1x1 conv, dropout) gives a ``(batch, C, 1, frames)`` map that is broadcast
back over frequency: ``relu(x + y + f1(mean_f(y)))``. A transition block (the channels change) first maps the
input with a 1x1 conv-BN-ReLU and has no identity shortcut.

The network at width ``tau`` (the paper's Table 1):

| layer | channels | blocks | stride (f, t) | temporal dilation |
|---|---|---|---|---|
| stem: 5x5 conv-BN-ReLU | 16 tau | 1 | (2, 1) | - |
| stage 1 | 8 tau | 2 | 1 | 1 |
| stage 2 | 12 tau | 2 | (2, 1) | 2 |
| stage 3 | 16 tau | 4 | (2, 1) | 4 |
| stage 4 | 20 tau | 4 | 1 | 8 |
| head: depthwise 5x5 (no frequency padding), 1x1 conv-BN-ReLU | 32 tau | | | |
| mean over frequency and time, 1x1 conv (linear) | classes | | | |

Parameters with 12 classes and 40 mel bins: 9,232 / 54,168 / 187,812 / 321,068 for ``bc_resnet_1/3/6/8``
(the paper: 9.2k, 54.2k, 188k, 321k). SubSpectral Norm splits the frequency axis into ``sub_bands`` (5 in the
paper) equal bands, so the frequency size of every stage must divide by it: ``n_mels`` 40 or 80 with the default,
``sub_bands=4`` (or 2) with 64 mels.

Example:
    >>> net = create_model("bc_resnet_1", num_classes=12, input_size=(1, 40, 101))
    >>> net(torch.zeros(2, 1, 40, 101)).shape
    torch.Size([2, 12])
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from audiocnn.core.errors import ConfigError
from audiocnn.models.backbone import ConvNet, Stage
from audiocnn.models.blocks import BLOCKS, ConvNormAct, get_act
from audiocnn.models.registry import register_model

__all__ = ["BC_RESNET_STAGES", "BCResBlock", "SubSpectralNorm", "bc_resnet", "bc_resnet_1", "bc_resnet_3",
           "bc_resnet_6", "bc_resnet_8", "bc_resnet_freq_sizes"]

BC_RESNET_STAGES = [
    # (channels per unit width, blocks, frequency stride, temporal dilation)
    (8, 2, 1, 1),
    (12, 2, 2, 2),
    (16, 4, 2, 4),
    (20, 4, 1, 8),
]
"""The four BC-ResBlock stages of the paper's Table 1 (the stem has ``16 * width`` channels)."""
STEM_CHANS = 16
HEAD_CHANS = 32
HEAD_KERNEL = 5
BLOCK_DROP = 0.1
"""Dropout (channel-wise) at the end of ``f1`` in every block, as in the paper."""


class SubSpectralNorm(nn.Module):
    """Batch norm with separate statistics and affine parameters for each of ``sub_bands`` frequency bands
    (Chang et al., "SubSpectral Normalization for Neural Audio Data Processing", ICASSP 2021).

    ``(batch, chans, freq, frames) -> same``; ``freq`` must divide by ``sub_bands``. ``2 * chans * sub_bands``
    parameters.

    Example:
        >>> SubSpectralNorm(8, sub_bands=5)(torch.randn(2, 8, 20, 7)).shape
        torch.Size([2, 8, 20, 7])
    """

    def __init__(self, chans: int, *, sub_bands: int = 5, eps: float = 1e-5):
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(chans * sub_bands, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, chans, freq, frames = x.shape
        if freq % self.sub_bands:
            raise ConfigError(f"SubSpectralNorm: {freq} frequency rows do not split into sub_bands="
                              f"{self.sub_bands} equal bands; change frontend.n_mels or model.args.sub_bands")
        # each channel's frequency axis splits into sub_bands contiguous bands, each its own BN channel
        x = x.reshape(batch, chans * self.sub_bands, freq // self.sub_bands, frames)
        return self.bn(x).reshape(batch, chans, freq, frames)

    def extra_repr(self) -> str:
        return f"sub_bands={self.sub_bands}"


@BLOCKS.register("bc_res")
class BCResBlock(nn.Module):
    """Normal (``in_chans == out_chans``) or transition BC-ResBlock.

    ``(batch, in_chans, freq, frames) -> (batch, out_chans, freq / stride_f, frames / stride_t)``.

    Args:
        stride: stride of the frequency-wise conv (the paper: ``(2, 1)`` at the start of stages 2 and 3).
        dilation: dilation of the temporal depthwise conv ``f1``.
        sub_bands: SubSpectral Norm bands after ``f2``.
        drop_rate: channel dropout at the end of ``f1``.
        norm_layer / act_layer: BN and ReLU of the transition conv and after the sum; ``f1`` uses swish.
    """

    def __init__(self, in_chans: int, out_chans: int, *, stride: int | tuple = 1, dims: int = 2,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu", dilation: int = 1,
                 sub_bands: int = 5, drop_rate: float = BLOCK_DROP):
        super().__init__()
        if dims != 2:
            raise ConfigError(f"bc_res blocks work on (batch, chans, freq, frames) inputs; got dims={dims}")
        stride = stride if isinstance(stride, tuple) else (stride, 1)
        self.transition = in_chans != out_chans
        self.project = (ConvNormAct(in_chans, out_chans, 1, padding=0, norm_layer=norm_layer, act_layer=act_layer)
                        if self.transition else nn.Identity())
        self.f2 = nn.Sequential(
            nn.Conv2d(out_chans, out_chans, (3, 1), stride=stride, padding=(1, 0), groups=out_chans, bias=False),
            SubSpectralNorm(out_chans, sub_bands=sub_bands))
        self.f1 = nn.Sequential(
            nn.Conv2d(out_chans, out_chans, (1, 3), stride=(1, stride[1]), padding=(0, dilation),
                      dilation=(1, dilation), groups=out_chans, bias=False),
            nn.BatchNorm2d(out_chans), nn.SiLU(inplace=True),
            nn.Conv2d(out_chans, out_chans, 1, bias=False),
            nn.Dropout2d(drop_rate))
        self.act = get_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.f2(self.project(x))
        out = y + self.f1(y.mean(2, keepdim=True))  # broadcast over frequency
        if not self.transition:
            out = out + x
        return self.act(out)


def bc_resnet_freq_sizes(n_mels: int) -> list[int]:
    """Frequency rows after the stem and after each stage, for ``n_mels`` input rows (5x5 convs padded by 2,
    3x1 convs padded by 1: a stride of 2 maps ``f`` to ``ceil(f / 2)``).

    Example:
        >>> bc_resnet_freq_sizes(40)
        [20, 20, 10, 5, 5]
    """
    sizes = [-(-n_mels // 2)]
    for _, _, stride, _ in BC_RESNET_STAGES:
        sizes.append(-(-sizes[-1] // stride))
    return sizes


def _check_n_mels(n_mels: int, sub_bands: int) -> None:
    sizes = bc_resnet_freq_sizes(n_mels)
    if any(f % sub_bands for f in sizes) or sizes[-1] < HEAD_KERNEL:
        step = 8 * sub_bands  # three halvings, then sub_bands equal bands
        raise ConfigError(f"BC-ResNet with frontend.n_mels={n_mels} has {sizes} frequency rows after the stem and "
                          f"stages; each must divide by model.args.sub_bands={sub_bands} and the last be at least "
                          f"{HEAD_KERNEL} (the head's 5x5 conv): use n_mels a multiple of {step} (e.g. "
                          f"{max(step, 40 // step * step)}), or set model.args.sub_bands to 4 or 2 for 64 mels")


def bc_resnet(width: float = 1.0, *, num_classes: int = 12, in_chans: int = 1, sub_bands: int = 5,
              input_size: Sequence[int] | None = None, **kwargs) -> ConvNet:
    """BC-ResNet-``width`` as a :class:`ConvNet`: stem, four BC-ResBlock stages, head convs, mean, linear.

    Args:
        width: the paper's ``tau`` (1, 1.5, 2, 3, 6, 8); channels are ``int(c * width)``.
        num_classes: outputs (12 for Google Speech Commands' keyword task).
        in_chans: input channels (1 for a log-mel spectrogram).
        sub_bands: SubSpectral Norm bands (5 in the paper).
        input_size: ``(in_chans, n_mels, frames)``; when given, ``n_mels`` is checked against ``sub_bands``.

    Returns:
        The network, ``(batch, in_chans, n_mels, frames) -> (batch, num_classes)``.
    """
    if width <= 0 or sub_bands < 1:
        raise ConfigError(f"BC-ResNet needs width > 0 and sub_bands >= 1, got width={width}, sub_bands={sub_bands}")
    if input_size is not None:
        _check_n_mels(int(input_size[1]), sub_bands)

    def chans(c: int) -> int:
        return int(c * width)

    stem = [Stage("conv", chans(STEM_CHANS), stride=(2, 1), args={"kernel_size": 5})]
    stages = [Stage("bc_res", chans(c), depth=n, stride=(s, 1), args={"dilation": d, "sub_bands": sub_bands})
              for c, n, s, d in BC_RESNET_STAGES]
    last = chans(BC_RESNET_STAGES[-1][0])
    stages += [Stage("conv", last, args={"kernel_size": HEAD_KERNEL, "padding": (0, HEAD_KERNEL // 2),
                                         "groups": last, "bias": False, "norm_layer": "none",
                                         "act_layer": "none"}),
               Stage("conv", chans(HEAD_CHANS), args={"kernel_size": 1})]
    return ConvNet(stages, stem=stem, num_classes=num_classes, in_chans=in_chans, input_size=input_size, **kwargs)


@register_model(example=(1, 1, 40, 101))  # 40 log-mel bins, 1 s at a 10 ms hop (the paper's input)
def bc_resnet_1(*, num_classes: int = 12, in_chans: int = 1, sub_bands: int = 5, **kwargs) -> ConvNet:
    """BC-ResNet-1 (9,232 parameters with 12 classes; published 9.2k)."""
    return bc_resnet(1, num_classes=num_classes, in_chans=in_chans, sub_bands=sub_bands, **kwargs)


@register_model(example=(1, 1, 40, 101))
def bc_resnet_3(*, num_classes: int = 12, in_chans: int = 1, sub_bands: int = 5, **kwargs) -> ConvNet:
    """BC-ResNet-3 (54,168 parameters with 12 classes; published 54.2k)."""
    return bc_resnet(3, num_classes=num_classes, in_chans=in_chans, sub_bands=sub_bands, **kwargs)


@register_model(example=(1, 1, 40, 101))
def bc_resnet_6(*, num_classes: int = 12, in_chans: int = 1, sub_bands: int = 5, **kwargs) -> ConvNet:
    """BC-ResNet-6 (187,812 parameters with 12 classes; published 188k)."""
    return bc_resnet(6, num_classes=num_classes, in_chans=in_chans, sub_bands=sub_bands, **kwargs)


@register_model(example=(1, 1, 40, 101))
def bc_resnet_8(*, num_classes: int = 12, in_chans: int = 1, sub_bands: int = 5, **kwargs) -> ConvNet:
    """BC-ResNet-8 (321,068 parameters with 12 classes; published 321k)."""
    return bc_resnet(8, num_classes=num_classes, in_chans=in_chans, sub_bands=sub_bands, **kwargs)
