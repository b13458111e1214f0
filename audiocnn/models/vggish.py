"""VGGish (Hershey et al., 2017) and smaller VGGish-style embedders, as stage specs over ConvNet.

Input ``(batch, 1, n_mels=64, frames=96)``: one 0.96 s log-mel example from
:class:`~audiocnn.features.vggish_input.VGGishInput` (audiocnn's ``(n_mels, frames)`` orientation; the
released network was trained on ``(frames, n_mels)``, and :func:`load_vggish_weights` transposes its
kernels to match). Output ``(batch, 128)``: the embedding, *before* any activation (one popular PyTorch
port adds a ReLU after the last layer; the TensorFlow original has none).

Weights and post-processing, from the files people hold:

- ``vggish-10086976.pth``: the harritaylor/torchvggish state dict (``features.0.weight``...,
  ``embeddings.4.bias``), loaded by :func:`load_vggish_weights` through an explicit name table;
- ``vggish_pca_params-970ea276.pth`` (torch) or ``vggish_pca_params.npz`` (the TensorFlow release), with
  ``pca_eigen_vectors`` (128 x 128) and ``pca_means`` (128), read by :func:`load_pca_params` into a
  :class:`Postprocessor` (PCA, clip to [-2, 2], 8-bit quantisation, as the reference ``Postprocessor``).

Example:
    >>> net = create_model("vggish")
    >>> load_vggish_weights(net, "vggish-10086976.pth")
    >>> net(torch.zeros(2, 1, 64, 96)).shape
    torch.Size([2, 128])
    >>> post = Postprocessor.from_file("vggish_pca_params-970ea276.pth")
    >>> post(net(torch.zeros(2, 1, 64, 96)))          # float32 holding integers 0..255
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from audiocnn.core.errors import ModelError
from audiocnn.core.checkpoint import clean_state_dict
from audiocnn.models.backbone import ConvNet, Stage
from audiocnn.models.registry import register_model

__all__ = ["Postprocessor", "REFERENCE_NAMES", "VGGishWeightsError", "load_pca_params", "load_vggish_weights",
           "to_reference_state_dict", "vggish", "vggish_small", "vggish_tiny"]

EMBEDDING_SIZE = 128
INPUT_SIZE = (1, 64, 96)
"""``(in_chans, n_mels, frames)`` of one VGGish example."""
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0


def _vggish_stages(widths: Sequence[int]) -> list[Stage]:
    """conv(w0) pool, conv(w1) pool, conv(w2) x2 pool, conv(w3) x2 pool: 3x3, stride 1, 2x2 max-pooling."""
    depths = (1, 1, 2, 2)
    return [Stage("conv", w, depth=d, pool="max", pool_size=2, args={"kernel_size": 3}) for w, d in zip(widths, depths)]


def _vggish_net(widths: Sequence[int], hidden: Sequence[int], *, num_classes: int, in_chans: int,
                input_size: Sequence[int] | None, norm_layer: str | None, **kwargs) -> ConvNet:
    return ConvNet(_vggish_stages(widths), num_classes=num_classes, in_chans=in_chans, global_pool="flatten",
                   head_hidden=tuple(hidden), input_size=tuple(input_size or (in_chans, *INPUT_SIZE[1:])),
                   norm_layer=norm_layer, **kwargs)


@register_model
def vggish(*, num_classes: int = EMBEDDING_SIZE, in_chans: int = 1, input_size: Sequence[int] | None = None,
           norm_layer: str | None = "none", **kwargs) -> ConvNet:
    """VGGish: 3x3 conv + ReLU, 64 -> pool -> 128 -> pool -> 256, 256 -> pool -> 512, 512 -> pool, flatten,
    FC 4096 -> 4096 -> 128 (no activation after the last). No normalisation; 72,141,184 parameters on
    ``(1, 64, 96)`` inputs. ``num_classes`` is the embedding width.
    """
    return _vggish_net((64, 128, 256, 512), (4096, 4096), num_classes=num_classes, in_chans=in_chans,
                       input_size=input_size, norm_layer=norm_layer, **kwargs)


@register_model
def vggish_small(*, num_classes: int = EMBEDDING_SIZE, in_chans: int = 1, input_size: Sequence[int] | None = None,
                 norm_layer: str | None = "batchnorm", drop_rate: float = 0.3, **kwargs) -> ConvNet:
    """VGGish at half width (32 -> 64 -> 128, 128 -> 256, 256) with batch norm, FC 512 -> 128 -> classes
    (4.35 M parameters with 128 outputs on 0.96 s examples): trains on a few thousand clips. ``embed()`` is the
    128-wide layer."""
    return _vggish_net((32, 64, 128, 256), (512, 128), num_classes=num_classes, in_chans=in_chans,
                       input_size=input_size, norm_layer=norm_layer, drop_rate=drop_rate, **kwargs)


@register_model
def vggish_tiny(*, num_classes: int = EMBEDDING_SIZE, in_chans: int = 1, input_size: Sequence[int] | None = None,
                norm_layer: str | None = "batchnorm", drop_rate: float = 0.3, **kwargs) -> ConvNet:
    """VGGish at quarter width (16 -> 32 -> 64, 64 -> 128, 128) with batch norm, FC 128 -> classes
    (0.69 M parameters with 128 outputs on 0.96 s examples): smoke tests and very small data."""
    return _vggish_net((16, 32, 64, 128), (128,), num_classes=num_classes, in_chans=in_chans,
                       input_size=input_size, norm_layer=norm_layer, drop_rate=drop_rate, **kwargs)


# --- weights -------------------------------------------------------------------------------------------------------

class VGGishWeightsError(ModelError):
    """A weights or PCA file does not fit VGGish; the message names the file, the keys and the shapes."""


REFERENCE_NAMES: dict[str, str] = {
    "features.0": "stages.0.0.0",
    "features.3": "stages.1.0.0",
    "features.6": "stages.2.0.0",
    "features.8": "stages.2.1.0",
    "features.11": "stages.3.0.0",
    "features.13": "stages.3.1.0",
    "embeddings.0": "head.hidden.0",
    "embeddings.2": "head.hidden.2",
    "embeddings.4": "head.fc",
}
"""harritaylor/torchvggish module -> ours (each has ``.weight`` and ``.bias``)."""
_PCA_KEYS_IN_MODEL = ("pproc.pca_matrix", "pproc.pca_means", "pproc._pca_matrix", "pproc._pca_means")
"""A full torchvggish ``VGGish`` state dict also holds its PCA parameters; the network loader skips them."""


def _flatten_perm(c: int, h: int, w: int) -> torch.Tensor:
    """Column order that turns the reference's flatten of ``(frames, mel, C)`` (TensorFlow's NHWC) into ours,
    a flatten of ``(C, mel, frames)``: ``ours[:, j] = ref[:, perm[j]]``."""
    return torch.arange(h * w * c).reshape(h, w, c).permute(2, 1, 0).reshape(-1)


def _reference_to_ours(key: str, value: torch.Tensor, *, flat_shape: tuple[int, int, int]) -> tuple[str, torch.Tensor]:
    module, param = key.rsplit(".", 1)
    ours = f"{REFERENCE_NAMES[module]}.{param}"
    if module.startswith("features") and param == "weight":
        value = value.transpose(2, 3)  # (out, in, frames, mel) -> (out, in, mel, frames)
    if module == "embeddings.0" and param == "weight":
        value = value[:, _flatten_perm(*flat_shape)]
    return ours, value


def to_reference_state_dict(net: ConvNet) -> dict[str, torch.Tensor]:
    """Our ``vggish`` weights under torchvggish's names and layout (the inverse of :func:`load_vggish_weights`)."""
    ours = net.state_dict()
    c, h, w = _flat_shape(net)
    inverse = torch.argsort(_flatten_perm(c, h, w))
    out = {}
    for ref, mine in REFERENCE_NAMES.items():
        for param in ("weight", "bias"):
            value = ours[f"{mine}.{param}"]
            if ref.startswith("features") and param == "weight":
                value = value.transpose(2, 3)
            if ref == "embeddings.0" and param == "weight":
                value = value[:, inverse]
            out[f"{ref}.{param}"] = value.contiguous().clone()
    return out


def _flat_shape(net: ConvNet) -> tuple[int, int, int]:
    """``(C, frames, mel)`` of the last feature map in the reference's orientation, for ``(1, 64, 96)`` input."""
    c = net.out_chans
    n_mels, frames = INPUT_SIZE[1] // 16, INPUT_SIZE[2] // 16
    return c, frames, n_mels


def _torch_load(path: Path) -> dict:
    """``torch.load`` that never runs code from the file; NumPy arrays (as some PCA files hold) are allowed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - retry once with NumPy's array constructors allow-listed
        if "numpy" not in str(first):
            raise VGGishWeightsError(f"{path}: cannot be read as a PyTorch file ({first})") from None
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    allowed += [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32")]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise VGGishWeightsError(f"{path}: cannot be read safely as a PyTorch file ({e})") from None


def _as_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and obj.get("format") == "audiocnn-checkpoint":
        raise VGGishWeightsError(f"{path} is an audiocnn checkpoint; pass its run folder as MODEL_OR_RUN instead")
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise VGGishWeightsError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return {k: torch.as_tensor(v) for k, v in clean_state_dict(obj).items()}


@torch.no_grad()
def load_vggish_weights(net: ConvNet, path: str | Path) -> dict[str, int | str]:
    """Load VGGish weights into ``net`` (a :func:`vggish`), in place.

    Accepts the torchvggish state dict (``vggish-10086976.pth``: ``features.*``, ``embeddings.*``; the
    ``pproc.*`` PCA entries of a full ``VGGish`` state dict are skipped) or a state dict saved from this
    ``vggish`` (``stages.*``, ``head.*``). Names are mapped by :data:`REFERENCE_NAMES`; conv kernels are
    transposed and the first dense layer's columns reordered to our ``(n_mels, frames)`` input.

    Returns:
        ``{"layout": "torchvggish" | "audiocnn", "loaded": number of tensors}``.

    Raises:
        VGGishWeightsError: unreadable file, missing or unexpected keys, or shapes that differ (all named).
    """
    path = Path(path)
    if not path.is_file():
        raise VGGishWeightsError(f"VGGish weights file {path} not found (the PyTorch port's is vggish-10086976.pth)")
    state = _as_state_dict(_torch_load(path), path)
    state = {k: v for k, v in state.items() if k not in _PCA_KEYS_IN_MODEL}
    ours = net.state_dict()
    if set(state) <= set(ours) and any(k.startswith("stages.") for k in state):
        layout, mapped = "audiocnn", state
    else:
        layout = "torchvggish"
        expected = {f"{m}.{p}": f"{o}.{p}" for m, o in REFERENCE_NAMES.items() for p in ("weight", "bias")}
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise VGGishWeightsError(
                f"{path} does not hold torchvggish VGGish weights: missing {missing or 'none'}, unexpected "
                f"{unexpected[:8] or 'none'}{' ...' if len(unexpected) > 8 else ''}; expected the keys "
                f"{', '.join(sorted(REFERENCE_NAMES))} (.weight/.bias)")
        # 3x3 kernels and the reordered dense layer keep their shapes, so they are checked before mapping
        _check_shapes(path, {k: state[k].shape for k in expected}, {k: ours[o].shape for k, o in expected.items()})
        mapped = dict(_reference_to_ours(k, v, flat_shape=_flat_shape(net)) for k, v in state.items())
    missing = sorted(set(ours) - set(mapped))
    if missing:
        raise VGGishWeightsError(f"{path} does not fit this network: missing {missing} (is the model `vggish`?)")
    _check_shapes(path, {k: v.shape for k, v in mapped.items()}, {k: ours[k].shape for k in mapped})
    net.load_state_dict({k: v.to(ours[k].dtype) for k, v in mapped.items()})
    return {"layout": layout, "loaded": len(mapped)}


def _check_shapes(path: Path, got: dict[str, torch.Size], want: dict[str, torch.Size]) -> None:
    bad = [f"{k}: file {tuple(got[k])} vs model {tuple(want[k])}" for k in got if tuple(got[k]) != tuple(want[k])]
    if bad:
        raise VGGishWeightsError(f"{path} does not fit this network: shape mismatches {'; '.join(bad)} "
                                 "(is the model `vggish`?)")


def load_pca_params(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eigen_vectors (128, 128), means (128,))`` float32 from ``vggish_pca_params.npz`` (TensorFlow release),
    ``vggish_pca_params-970ea276.pth`` (PyTorch port; tensors or NumPy arrays) or a full torchvggish ``VGGish``
    state dict (``pproc.pca_matrix``, ``pproc.pca_means``)."""
    path = Path(path)
    if not path.is_file():
        raise VGGishWeightsError(f"VGGish PCA file {path} not found (vggish_pca_params.npz or "
                                 "vggish_pca_params-970ea276.pth)")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                params = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001
            raise VGGishWeightsError(f"{path}: cannot be read as a .npz file ({e})") from None
    else:
        params = _as_state_dict(_torch_load(path), path)
    names = [("pca_eigen_vectors", "pca_means"), ("pproc.pca_matrix", "pproc.pca_means"),
             ("pproc._pca_matrix", "pproc._pca_means")]
    for vec_key, mean_key in names:
        if vec_key in params and mean_key in params:
            vectors = torch.as_tensor(np.asarray(params[vec_key]), dtype=torch.float32)
            means = torch.as_tensor(np.asarray(params[mean_key]), dtype=torch.float32).reshape(-1)
            break
    else:
        raise VGGishWeightsError(f"{path} holds {sorted(params)}; a VGGish PCA file holds pca_eigen_vectors and "
                                 "pca_means")
    n = EMBEDDING_SIZE
    if tuple(vectors.shape) != (n, n) or tuple(means.shape) != (n,):
        raise VGGishWeightsError(f"{path}: pca_eigen_vectors {tuple(vectors.shape)} and pca_means "
                                 f"{tuple(means.shape)}; expected ({n}, {n}) and ({n},)")
    return vectors, means


class Postprocessor(nn.Module):
    """The released embeddings' post-processing: PCA (with whitening), clip to [-2, 2], quantise to 8 bits.

    ``(batch, 128) -> (batch, 128)`` float32 holding the integers 0..255 (``.to(torch.uint8)`` is lossless).
    ``quantize=False`` stops after the PCA, in float32.

    Args:
        eigen_vectors: ``(128, 128)``, applied as ``(x - means) @ eigen_vectors.T``.
        means: ``(128,)``.
    """

    def __init__(self, eigen_vectors: torch.Tensor, means: torch.Tensor, *, quantize: bool = True):
        super().__init__()
        self.register_buffer("eigen_vectors", eigen_vectors.float().clone())
        self.register_buffer("means", means.float().reshape(-1).clone())
        self.quantize = quantize

    @classmethod
    def from_file(cls, path: str | Path, *, quantize: bool = True) -> "Postprocessor":
        return cls(*load_pca_params(path), quantize=quantize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.means) @ self.eigen_vectors.T
        if not self.quantize:
            return x
        x = x.clamp(QUANTIZE_MIN, QUANTIZE_MAX)
        return torch.round((x - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)))
