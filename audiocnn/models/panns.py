"""PANNs CNN6, CNN10 and CNN14 (Kong et al., 2020, "PANNs: Large-Scale Pretrained Audio Neural Networks"), as
stage specs over :class:`ConvNet`, with the released AudioSet taggers' front-ends and checkpoint layout.

Input ``(batch, 1, n_mels=64, frames)``: the log-mel spectrogram of :data:`PANNS_32K` (or :data:`PANNS_16K` for
``panns_cnn14_16k``), computed by audiocnn's own front-end. Network:

- ``bn0``: batch norm over the mel rows (:class:`~audiocnn.models.blocks.FrequencyBatchNorm`, the stem);
- conv blocks, each followed by 2x2 average pooling and dropout 0.2: CNN6 four 5x5 conv-BN-ReLU (64-128-256-512),
  CNN10 four pairs of 3x3 conv-BN-ReLU (64...512), CNN14 six pairs (64...2048, the last without pooling);
- head: mean over mel, then max + mean over time, dropout 0.5, ``fc1`` + ReLU (the embedding: 512-d for
  CNN6/CNN10, 2048-d for CNN14), ``fc_audioset`` (527 logits; the sigmoid lives outside, in the task).

The official checkpoints (``Cnn14_mAP=0.431.pth``: ``{'model': state_dict}``) load through
:func:`panns_pairs` (an explicit name table, used by :func:`audiocnn.models.pretrained.load_pretrained`).
They also hold the reference's front-end kernels (``spectrogram_extractor.stft.conv_real.weight``,
``logmel_extractor.melW``): they are not loaded (ours are recomputed from the settings) but compared with ours
by :func:`check_frontend_kernels`, so a 16 kHz file given to the 32 kHz model is an error that says so. The
reference's spectrogram is ``(time, mel)``, ours ``(mel, time)``: conv kernels are transposed on loading
(:func:`panns_tensor`), which gives the same numbers.

Example:
    >>> net = create_model("panns_cnn14")                  # 527 outputs, 80,753,615 parameters
    >>> load_pretrained(net, "Cnn14_mAP=0.431.pth", model_name="panns_cnn14")
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
from torch import nn

from audiocnn.features.frontends import FrontendSettings
from audiocnn.models.backbone import ConvNet, Stage
from audiocnn.models.registry import register_model
from audiocnn.models.released import Released, register_released

__all__ = ["AUDIOSET_CLASSES", "PANNS_16K", "PANNS_32K", "check_frontend_kernels", "describe_panns_file",
           "panns_cnn10", "panns_cnn14", "panns_cnn14_16k", "panns_cnn6", "panns_pairs", "panns_tensor",
           "reference_kernels", "to_official_state_dict"]

AUDIOSET_CLASSES = 527
N_MELS = 64

PANNS_32K = FrontendSettings(kind="logmel", backend="torch", n_fft=1024, win_length=1024, hop_length=320,
                             window="hann", center=True, pad_mode="reflect", power=2.0, n_mels=N_MELS, f_min=50.0,
                             f_max=14000.0, norm="slaney", mel_scale="slaney", log="db", amin=1e-10, top_db=None)
"""The released 32 kHz models' front-end: torchlibrosa's ``Spectrogram`` (periodic Hann, reflect-padded centred
frames, power 2) and ``LogmelFilterBank`` (``librosa.filters.mel`` defaults: Slaney scale and norm; dB with
ref 1.0, amin 1e-10, no top_db)."""
PANNS_16K = dataclasses.replace(PANNS_32K, n_fft=512, win_length=512, hop_length=160, f_max=8000.0)
"""``Cnn14_16k``'s front-end: the same at 16 kHz, with a 512-sample window, hop 160 and f_max 8 kHz."""
_FRONTENDS = {32000: PANNS_32K, 16000: PANNS_16K}


def _panns(stages: list[Stage], embed: int, *, num_classes: int, in_chans: int, input_size: Sequence[int] | None,
           drop_rate: float, **kwargs) -> ConvNet:
    n_mels = int(input_size[1]) if input_size else N_MELS  # bn0 is sized from the input, not a constant 64
    stem = [Stage("freq_norm", in_chans, args={"n_mels": n_mels})]
    return ConvNet(stages, stem=stem, num_classes=num_classes, in_chans=in_chans, global_pool="avgmax",
                   head_hidden=(embed,), drop_rate=drop_rate, head_dropout_first=True, **kwargs)


def _blocks(block: str, widths: Sequence[int], pooled: int, stage_drop: float, **args) -> list[Stage]:
    return [Stage(block, w, pool="avg" if i < pooled else None, pool_size=2, drop_rate=stage_drop, args=args)
            for i, w in enumerate(widths)]


@register_model
def panns_cnn6(*, num_classes: int = AUDIOSET_CLASSES, in_chans: int = 1, input_size: Sequence[int] | None = None,
               stage_drop: float = 0.2, drop_rate: float = 0.5, **kwargs) -> ConvNet:
    """PANNs CNN6: four 5x5 conv-BN-ReLU stages (64-128-256-512) with 2x2 average pooling, 512-d embedding
    (4,837,455 parameters with 527 outputs)."""
    stages = _blocks("conv", (64, 128, 256, 512), 4, stage_drop, kernel_size=5)
    return _panns(stages, 512, num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                  drop_rate=drop_rate, **kwargs)


@register_model
def panns_cnn10(*, num_classes: int = AUDIOSET_CLASSES, in_chans: int = 1, input_size: Sequence[int] | None = None,
                stage_drop: float = 0.2, drop_rate: float = 0.5, **kwargs) -> ConvNet:
    """PANNs CNN10: four stages of two 3x3 conv-BN-ReLU (64...512) with 2x2 average pooling, 512-d embedding
    (5,219,279 parameters with 527 outputs)."""
    stages = _blocks("vgg", (64, 128, 256, 512), 4, stage_drop)
    return _panns(stages, 512, num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                  drop_rate=drop_rate, **kwargs)


@register_model
def panns_cnn14(*, num_classes: int = AUDIOSET_CLASSES, in_chans: int = 1, input_size: Sequence[int] | None = None,
                stage_drop: float = 0.2, drop_rate: float = 0.5, **kwargs) -> ConvNet:
    """PANNs CNN14: six stages of two 3x3 conv-BN-ReLU (64...2048), 2x2 average pooling after the first five,
    2048-d embedding (80,753,615 parameters with 527 outputs)."""
    stages = _blocks("vgg", (64, 128, 256, 512, 1024, 2048), 5, stage_drop)
    return _panns(stages, 2048, num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                  drop_rate=drop_rate, **kwargs)


@register_model
def panns_cnn14_16k(**kwargs) -> ConvNet:
    """PANNs CNN14 trained at 16 kHz (``Cnn14_16k``): the network of :func:`panns_cnn14`; its released row
    declares the 16 kHz front-end (:data:`PANNS_16K`)."""
    return panns_cnn14(**kwargs)


# --- the official checkpoint layout ---------------------------------------------------------------------------------

def panns_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """``(reference module, our module)`` for a PANNs :class:`ConvNet`: ``bn0``, ``conv_block{i}.conv{k}`` /
    ``.bn{k}`` (CNN6's blocks hold ``conv1``/``bn1`` only), ``fc1``, ``fc_audioset``."""
    pairs = [("bn0", "stem.0.0.bn")]
    for i, stage in enumerate(net.stages):
        block, ours = stage[0], f"stages.{i}.0"
        convs = [ours] if isinstance(block[0], nn.Conv2d) else [f"{ours}.{k}" for k in range(len(block))]
        for k, conv in enumerate(convs, start=1):
            pairs += [(f"conv_block{i + 1}.conv{k}", f"{conv}.0"), (f"conv_block{i + 1}.bn{k}", f"{conv}.1")]
    linears = [f"head.hidden.{n}" for n, m in net.head.hidden.named_children() if isinstance(m, nn.Linear)]
    return pairs + [("fc1", linears[0]), ("fc_audioset", "head.fc")]


def panns_tensor(key: str, value: torch.Tensor, shape: torch.Size | None = None) -> torch.Tensor:
    """A reference tensor in our orientation: conv kernels ``(out, in, k_time, k_mel) -> (out, in, k_mel, k_time)``
    (the reference's spectrogram is ``(time, mel)``, ours ``(mel, time)``; BN and linear layers are unchanged)."""
    return value.transpose(2, 3).contiguous() if value.ndim == 4 else value


FRONTEND_KEYS = ("spectrogram_extractor.", "logmel_extractor.")
"""Reference key prefixes of the front-end kernels (recomputed here, compared by :func:`check_frontend_kernels`)."""


def reference_kernels(settings: FrontendSettings, sample_rate: int) -> dict[str, torch.Tensor]:
    """The reference's front-end tensors for ``settings``: STFT kernels (window times DFT, ``(n_fft // 2 + 1,
    1, n_fft)``) and the mel matrix ``(n_fft // 2 + 1, n_mels)``."""
    import librosa  # a dependency of the front-ends; imported here as there

    n = settings.n_fft
    window = librosa.util.pad_center(librosa.filters.get_window(settings.window, settings.win_length or n,
                                                                fftbins=True), size=n)
    k = np.arange(n // 2 + 1)[:, None] * np.arange(n)[None, :]
    angle = -2.0 * np.pi * k / n
    mel = librosa.filters.mel(sr=sample_rate, n_fft=n, n_mels=settings.n_mels, fmin=settings.f_min,
                              fmax=settings.f_max, htk=settings.mel_scale == "htk", norm=settings.norm)
    return {"spectrogram_extractor.stft.conv_real.weight": torch.from_numpy(np.cos(angle) * window)[:, None].float(),
            "spectrogram_extractor.stft.conv_imag.weight": torch.from_numpy(np.sin(angle) * window)[:, None].float(),
            "logmel_extractor.melW": torch.from_numpy(mel.T).float()}


def to_official_state_dict(net: nn.Module, model_name: str) -> dict[str, torch.Tensor]:
    """Our weights in the official checkpoint layout (``torch.save({'model': ...}, path)`` writes a file the
    reference ``Cnn14`` ... loads), front-end kernels included; the inverse of loading."""
    ours = net.state_dict()
    out = {}
    for ref, mine in panns_pairs(net):
        for key, value in ours.items():
            if key.startswith(mine + "."):
                out[ref + key[len(mine):]] = panns_tensor(ref, value).clone()  # the transpose is its own inverse
    entry = _ENTRIES[model_name]
    return {**out, **reference_kernels(entry.frontend, entry.sample_rate)}


def describe_panns_file(state: dict[str, torch.Tensor]) -> str:
    """What a PANNs-layout state dict looks like: ``the file looks Cnn14_16k-like (6 conv blocks of 2 3x3 convs, fc1 2048,
    527 classes, STFT n_fft 512)``."""
    blocks = sorted({k.split(".")[0] for k in state if k.startswith("conv_block")})
    if not blocks:
        return "the file looks not like a PANNs checkpoint (no conv_block* tensors)"
    first = state.get("conv_block1.conv1.weight")
    kernel = f"{first.shape[-1]}x{first.shape[-1]}" if first is not None else "?"
    convs = 2 if "conv_block1.conv2.weight" in state else 1
    fc1 = state["fc1.weight"].shape[0] if "fc1.weight" in state else None
    classes = state["fc_audioset.weight"].shape[0] if "fc_audioset.weight" in state else None
    stft = state.get("spectrogram_extractor.stft.conv_real.weight")
    n_fft = stft.shape[-1] if stft is not None else None
    family = {(4, "5x5", 1): "Cnn6", (4, "3x3", 2): "Cnn10", (6, "3x3", 2): "Cnn14"}.get((len(blocks), kernel, convs))
    if family == "Cnn14" and n_fft == 512:
        family = "Cnn14_16k"
    parts = [f"{len(blocks)} conv blocks of {convs} {kernel} conv{'s' if convs > 1 else ''}", f"fc1 {fc1}",
             f"{classes} classes" + ("" if classes in (None, AUDIOSET_CLASSES) else " (fine-tuned)")]
    if n_fft is not None:
        parts.append(f"STFT n_fft {n_fft}")
    return f"the file looks {family or 'an unknown PANNs variant'}-like ({', '.join(parts)})"


def check_frontend_kernels(state: dict[str, torch.Tensor], model_name: str, source: str) -> list[str]:
    """Compare the file's front-end kernels (when it has them) with those of the model's released front-end.

    Returns one line per kernel that differs in shape or value (empty when all match or the file has none).
    """
    entry = _ENTRIES.get(model_name)
    if entry is None:
        return []
    ours = reference_kernels(entry.frontend, entry.sample_rate)
    bad = []
    for key, want in ours.items():
        got = state.get(key)
        if got is None:
            continue
        if tuple(got.shape) != tuple(want.shape):
            bad.append(f"{key} {tuple(got.shape)} -> {tuple(want.shape)}")
        elif not torch.allclose(got.float(), want, rtol=1e-4, atol=1e-5):
            bad.append(f"{key}: values differ by up to {float((got.float() - want).abs().max()):.3g}")
    if bad:
        bad.insert(0, f"front-end kernels differ from {model_name}'s ({entry.sample_rate} Hz, n_fft "
                      f"{entry.frontend.n_fft}, f_max {entry.frontend.f_max:g})")
    return bad


# --- the released rows ----------------------------------------------------------------------------------------------

_ZENODO = "https://zenodo.org/record/3987831 (PANNs pretrained models)"
_LICENCE = "see the upstream (Zenodo record; the reference code, qiuqiangkong/audioset_tagging_cnn, is MIT)"


def _row(name: str, rate: int, embed: int, weights_file: str) -> Released:
    return register_released(Released(
        name=name, sample_rate=rate, frontend=_FRONTENDS[rate], num_classes=AUDIOSET_CLASSES, embedding_dim=embed,
        labels="audioset", task="multilabel", clip_s=10.0, embed_window_s=1.0, embed_hop_s=0.5,
        weights_file=weights_file, source=_ZENODO, licence=_LICENCE))


_ENTRIES = {r.name: r for r in (
    _row("panns_cnn6", 32000, 512, "Cnn6_mAP=0.343.pth"),
    _row("panns_cnn10", 32000, 512, "Cnn10_mAP=0.380.pth"),
    _row("panns_cnn14", 32000, 2048, "Cnn14_mAP=0.431.pth"),
    _row("panns_cnn14_16k", 16000, 2048, "Cnn14_16k_mAP=0.438.pth"),
)}
