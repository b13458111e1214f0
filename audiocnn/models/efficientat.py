"""EfficientAT's AudioSet taggers (Schmid et al., "Efficient Large-Scale Audio Tagging via Transformer-to-CNN
Knowledge Distillation", ICASSP 2023; github.com/fschmid56/EfficientAT), as stage data over :class:`ConvNet`.

Each is MobileNetV3-Large (:mod:`audiocnn.models.mobilenet_v3`) at a width multiplier, on one-channel log-mel
input ``(batch, 1, 128, frames)`` from :class:`~audiocnn.features.efficientat_input.EfficientATMel` (32 kHz),
with the reference's details: batch norm with eps 1e-3 (momentum 0.01), squeeze-excitation on the channels
with a plain sigmoid gate (torchvision's MobileNetV3 uses a hard sigmoid), and the ``mlp`` head (the reference's
default ``head_type``): global average pool, linear to ``make_divisible(1280 * width)``, hard-swish, dropout 0.2,
linear to the 527 AudioSet classes.

| name | width | parameters (527 classes) | reference embedding | ``embed()`` (pre-logits) |
|---|---|---|---|---|
| ``efficientat_mn04`` | 0.4 | 983,599 | 384 | 512 |
| ``efficientat_mn10`` | 1.0 | 4,876,831 | 960 | 1280 |
| ``efficientat_mn40`` | 4.0 | 68,427,303 | 3840 | 5120 |

The reference returns ``(logits, features)``, where ``features`` is the globally pooled last feature map (its
HEAR wrappers use it as the embedding); here that is :func:`reference_embedding`. The released weights
(``mn10_as_mAP_471.pt``...) load with ``load_pretrained(net, path, model_name="efficientat_mn10")``
(:mod:`audiocnn.models.pretrained`, through :func:`efficientat_pairs`).

Example:
    >>> net = create_model("efficientat_mn10").eval()
    >>> net(torch.zeros(2, 1, 128, 1000)).shape
    torch.Size([2, 527])
    >>> reference_embedding(net, torch.zeros(2, 1, 128, 1000)).shape
    torch.Size([2, 960])
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from audiocnn.features import efficientat_input as ref
from audiocnn.features.frontends import FrontendSettings
from audiocnn.models.backbone import ConvNet
from audiocnn.models.blocks import InvertedResidual, make_divisible
from audiocnn.models.mobilenet_v3 import LAST_CONV_EXPANSION, MOBILENET_V3_LARGE, mobilenet_v3_large_stages
from audiocnn.models.registry import register_model
from audiocnn.models.released import Released, register_released

__all__ = ["EFFICIENTAT_32K", "EFFICIENTAT_MODELS", "NUM_CLASSES", "WIDTHS", "describe_reference_file", "efficientat_mn04",
           "efficientat_mn10", "efficientat_mn40", "efficientat_pairs", "reference_embedding", "reference_tensor"]

NUM_CLASSES = 527
"""AudioSet's classes (the released heads)."""
WIDTHS = {"efficientat_mn04": 0.4, "efficientat_mn10": 1.0, "efficientat_mn40": 4.0}
EFFICIENTAT_MODELS = list(WIDTHS)
RELEASED_WIDTHS = {"mn01": 0.1, "mn02": 0.2, "mn04": 0.4, "mn05": 0.5, "mn10": 1.0, "mn20": 2.0, "mn30": 3.0,
                   "mn40": 4.0}
"""Every width the reference releases AudioSet weights for (only three are registered here)."""
BATCH_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


def _efficientat(name: str, *, num_classes: int, in_chans: int, drop_rate: float, kwargs: dict) -> ConvNet:
    stem, stages, hidden = mobilenet_v3_large_stages(WIDTHS[name], se_gate="sigmoid")
    defaults = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, head_hidden=(hidden,),
                    act_layer="hardswish", norm_layer=BATCH_NORM)
    return ConvNet(stages, stem=stem, **{**defaults, **kwargs})


@register_model(example=(1, 1, 128, 101))  # 128 EfficientAT mel bands, ~1 s
def efficientat_mn04(*, num_classes: int = NUM_CLASSES, in_chans: int = 1, drop_rate: float = 0.2,
                     **kwargs) -> ConvNet:
    """EfficientAT mn04: MobileNetV3-Large at width 0.4 (983,599 parameters with 527 classes; published 0.983 M)."""
    return _efficientat("efficientat_mn04", num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                        kwargs=kwargs)


@register_model(example=(1, 1, 128, 101))  # 128 EfficientAT mel bands, ~1 s
def efficientat_mn10(*, num_classes: int = NUM_CLASSES, in_chans: int = 1, drop_rate: float = 0.2,
                     **kwargs) -> ConvNet:
    """EfficientAT mn10: MobileNetV3-Large at width 1.0 (4,876,831 parameters with 527 classes; published 4.88 M)."""
    return _efficientat("efficientat_mn10", num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                        kwargs=kwargs)


@register_model(example=(1, 1, 128, 101))  # 128 EfficientAT mel bands, ~1 s
def efficientat_mn40(*, num_classes: int = NUM_CLASSES, in_chans: int = 1, drop_rate: float = 0.2,
                     **kwargs) -> ConvNet:
    """EfficientAT mn40: MobileNetV3-Large at width 4.0 (68,427,303 parameters with 527 classes; published
    68.43 M)."""
    return _efficientat("efficientat_mn40", num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                        kwargs=kwargs)


def reference_embedding(net: ConvNet, x: torch.Tensor) -> torch.Tensor:
    """The reference's second output: the last feature map averaged over frequency and time.

    ``(batch, 1, n_mels, frames) -> (batch, 6 * make_divisible(160 * width))``: 384, 960, 3840 for mn04, mn10,
    mn40. (``Classifier.embed`` returns the head's hidden layer instead: 512, 1280, 5120.)
    """
    return net.head.pool(net.forward_features(x))


# --- the reference's state-dict layout ---------------------------------------------------------------------------

def efficientat_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """Reference module paths paired with ours, by structure.

    The reference names ``features.0`` the stem (conv, norm), ``features.1..15`` the bottlenecks, each a
    ``block`` sequence of its present parts in order ([expand,] depthwise, [SE,] project; the SE's linears at
    ``conc_se_layers.0.fc1/fc2``), ``features.16`` the last 1x1 conv, and ``classifier.2`` / ``classifier.5``
    the head's two linears.
    """
    pairs = [("features.0", "stem.0.0")]
    k = 1
    for i, stage in enumerate(net.stages):
        block, ours = stage[0], f"stages.{i}.0"
        if isinstance(block, InvertedResidual):
            parts = [p for p in ("expand", "dw", "se", "project") if not isinstance(getattr(block, p), nn.Identity)]
            for n, part in enumerate(parts):
                ref = f"features.{k}.block.{n}" + (".conc_se_layers.0" if part == "se" else "")
                pairs.append((ref, f"{ours}.{part}"))
        else:
            pairs.append((f"features.{k}", ours))
        k += 1
    return pairs + [("classifier.2", "head.hidden.0"), ("classifier.5", "head.fc")]


def reference_tensor(key: str, tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The reference's SE layers are ``nn.Linear`` on the pooled vector; ours are the equivalent 1x1 convs:
    ``(out, in) -> (out, in, 1, 1)``. Every other tensor is returned as it is."""
    if ".conc_se_layers." in key and tensor.ndim == 2 and tuple(shape) == (*tensor.shape, 1, 1):
        return tensor.reshape(shape)
    return tensor


def _last_conv_chans(width_mult: float) -> int:
    return LAST_CONV_EXPANSION * make_divisible(MOBILENET_V3_LARGE[-1][2] * width_mult, 8)


def describe_reference_file(state_dict: dict[str, torch.Tensor]) -> str:
    """Which EfficientAT variant a state dict looks like, from the width of its last conv (``features.16``)."""
    weight = state_dict.get("features.16.0.weight")
    if weight is None:
        return ("it has no features.16.0.weight, so it is no EfficientAT MobileNetV3 ('mn') state dict (dynamic "
                "'dymn' models and other head types are not supported)")
    chans = weight.shape[0]
    found = [(name, w) for name, w in RELEASED_WIDTHS.items() if _last_conv_chans(w) == chans]
    if not found:
        return f"its last conv has {chans} channels, which matches no released EfficientAT width"
    name, w = found[0]
    ours = [n for n, width in WIDTHS.items() if width == w]
    model = f"use model {ours[0]}" if ours else f"audiocnn registers only {', '.join(WIDTHS)}"
    head = state_dict.get("classifier.5.weight")
    classes = f", {head.shape[0]} classes" if head is not None else ""
    return f"it looks like EfficientAT {name} (width_mult={w}{classes}): {model}"


# --- released rows ------------------------------------------------------------------------------------------------

EFFICIENTAT_32K = FrontendSettings(
    kind="efficientat_mel", backend="torch", n_fft=ref.N_FFT, win_length=ref.WIN_LENGTH, hop_length=ref.HOP_LENGTH,
    window="hann", center=True, pad_mode="reflect", power=2.0, n_mels=ref.N_MELS, f_min=0.0,
    f_max=ref.SAMPLE_RATE / 2 - ref.F_MAX_MARGIN, norm=None, mel_scale="htk", log="log", log_offset=ref.LOG_OFFSET,
    preemphasis=ref.PREEMPHASIS)
"""The released models' front-end as settings (``frontend.kind: efficientat_mel``): 32 kHz, n_fft 1024, an 800-sample
window, hop 320, 128 Kaldi mel banks 0-15,000 Hz, pre-emphasis 0.97, ``(ln(mel + 1e-5) + 4.5) / 5``."""
_SOURCE = "https://github.com/fschmid56/EfficientAT/releases"
_WEIGHTS = {"efficientat_mn04": "mn04_as_mAP_432.pt", "efficientat_mn10": "mn10_as_mAP_471.pt",
            "efficientat_mn40": "mn40_as_mAP_484.pt"}


def _row(name: str) -> Released:
    # embed/HEAR: the pooled last feature map, as the reference's own HEAR wrapper (384 / 960 / 3840)
    return register_released(Released(
        name=name, sample_rate=ref.SAMPLE_RATE, frontend=EFFICIENTAT_32K, num_classes=NUM_CLASSES,
        embedding_dim=_last_conv_chans(WIDTHS[name]), labels="audioset", task="multilabel", clip_s=10.0,
        embed_window_s=1.0, embed_hop_s=0.5, embedding="pooled", weights_file=_WEIGHTS[name], source=_SOURCE,
        licence="MIT"))


_ENTRIES = {name: _row(name) for name in _WEIGHTS}
