"""``audiocnn export RUN --format onnx|torchscript --out FILE``: one graph from raw input to logits, verified.

Audio runs export ``waveform`` float32 ``(batch, time)`` at the run's sample rate -> ``logits`` ``(batch, classes)``:
the front-end rewritten in real-valued operations (:mod:`audiocnn.deploy.frontend`), the fitted normaliser and
the network. Image runs export ``image`` float32 ``(batch, C, H, W)`` in [0, 1] (as ``predict`` decodes a file)
-> ``logits``. The batch is dynamic; so is the length, except for networks with a flatten head (``vggish*``),
whose linear layer fixes it to the run's clip length (``fixed_length`` in the metadata). Lengths below the clip
length are not part of the contract: ``predict`` zero-pads short files to one window, do the same.

Before a file is written, the graph is checked against the run's own model: the real-valued front-end against the
run's front-end in torch, then the exported file (onnxruntime, or ``torch.jit.load``) against torch, on random and
chirp inputs (and any ``probes`` given) at batch 1 and 3 and two lengths. A deviation above
:data:`LOGIT_TOLERANCE` is a :class:`ModelError` and no file is written.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), the exporter torch maintains; the
TorchScript-based ``dynamo=False`` path is deprecated and is not used.

Example:
    >>> result = export_run("runs/digits/20260101-120000", fmt="onnx", out="digits.onnx")
    >>> result.deviations["onnxruntime vs torch"] < 1e-4
    True
"""
from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import audiocnn
from audiocnn.config import Config
from audiocnn.core.errors import ConfigError, ModelError
from audiocnn.core.io import atomic_write
from audiocnn.deploy.frontend import real_frontend
from audiocnn.modalities import Classifier, modality_of
from audiocnn.runs import load_run

__all__ = ["FORMATS", "FRONTEND_TOLERANCE", "LOGIT_TOLERANCE", "ExportResult", "export_run", "exportable"]

FORMATS = ("onnx", "torchscript")
OPSETS = range(18, 25)
"""Opsets the dynamo exporter writes: it translates at 18 and up (asked for 17 it fails to convert Pad and silently
writes 18); onnxruntime 1.32 ran 18, 20, 23 and 24 here."""
DEFAULT_OPSET = 18
LOGIT_TOLERANCE = 1e-4
"""Largest max-abs logit deviation of the exported file from torch on the same module."""
FRONTEND_TOLERANCE = 1e-3
"""Largest max-abs deviation of the real-valued front-end from the run's, relative to the largest feature value:
float32 direct DFT sums round more than an FFT in bins far below the loudest (measured 2e-7..5e-4)."""


@dataclass
class ExportGraph:
    """What gets exported: the module, its input's name and example shape, and whether the length is fixed."""

    module: nn.Module
    input_name: str
    shape: tuple[int, ...]
    """Example input shape without the batch: ``(samples,)`` or ``(C, H, W)``."""
    fixed_length: bool
    reason: str = ""
    """Why the length is fixed (empty when it is not)."""


@dataclass
class ExportResult:
    """The written file, what was checked and how far the file's logits are from torch's."""

    path: Path
    fmt: str
    metadata: dict[str, str]
    deviations: dict[str, float] = field(default_factory=dict)
    """``"<check>": max abs deviation``: the front-end, and the file against torch."""
    verified: bool = True
    """False when onnxruntime is not installed (the file is written unchecked and the report says so)."""

    def summary(self) -> str:
        devs = ", ".join(f"{k} {v:.2e}" for k, v in self.deviations.items())
        shape = json.loads(self.metadata["input_shape"])
        check = "" if self.verified else " (not run in onnxruntime: it is not installed)"
        return (f"wrote {self.path} ({self.fmt}): {self.metadata['input_name']} {shape} -> logits "
                f"(batch, {len(json.loads(self.metadata['labels']))}); max abs deviation: {devs}{check}")


def _flatten_head(network: nn.Module) -> bool:
    head = getattr(network, "head", None)
    return getattr(head, "global_pool", None) == "flatten"


def exportable(model: Classifier, cfg: Config) -> ExportGraph:
    """The run's model with its front-end replaced by a real-valued one, in eval mode on the CPU.

    Raises:
        ModelError: the front-end cannot be expressed in real-valued operations.
    """
    modality = modality_of(cfg)
    module = copy.deepcopy(model).cpu().eval()
    if modality.name == "image":
        return ExportGraph(module, "image", tuple(model.input_shape), True, "images are decoded at data.image_size")
    module.frontend = real_frontend(module.frontend)
    samples = int(round(cfg.data.duration * cfg.data.sample_rate))
    fixed = _flatten_head(module.network)
    reason = (f"model {cfg.model.name} has a flatten head: its linear layer takes the features of exactly "
              f"{samples} samples (data.duration={cfg.data.duration:g} s)") if fixed else ""
    return ExportGraph(module, "waveform", (samples,), fixed, reason)


def _metadata(cfg: Config, labels: list[str], task: str, graph: ExportGraph) -> dict[str, str]:
    meta = {
        "labels": json.dumps(labels), "task": task, "modality": modality_of(cfg).name,
        "input_name": graph.input_name, "input_shape": json.dumps(["batch", *graph.shape]),
        "fixed_length": json.dumps(graph.fixed_length), "audiocnn_version": audiocnn.__version__,
        "model": cfg.model.name,
    }
    if graph.input_name == "waveform":
        meta.update({
            "sample_rate": str(cfg.data.sample_rate), "window_seconds": f"{cfg.data.duration:g}",
            "window_samples": str(graph.shape[0]), "hop_seconds": f"{cfg.data.window_hop:g}",
            "window_hop_samples": str(int(round(cfg.data.window_hop * cfg.data.sample_rate))),
            "frontend": cfg.frontend.kind,
            "input_contract": ("exactly window_samples samples" if graph.fixed_length else
                               "window_samples samples or more") + " per row; shorter audio: zero-pad it",
        })
        if graph.fixed_length:
            meta["fixed_length_reason"] = graph.reason
    else:
        meta["input_contract"] = "float32 images in [0, 1], (batch, C, H, W) as input_shape"
    return meta


def _probes(graph: ExportGraph, extra: torch.Tensor | None, sample_rate: int) -> list[torch.Tensor]:
    """Inputs the file is checked on: batch 1 and 3, the clip length and (dynamic) a longer one, and ``extra``."""
    gen = torch.Generator().manual_seed(0)
    if graph.input_name == "image":
        return [torch.rand(b, *graph.shape, generator=gen) for b in (1, 3)] + ([extra] if extra is not None else [])
    n = graph.shape[0]
    lengths = [n] if graph.fixed_length else [n, n + n // 2 + 37]
    out = []
    for length in lengths:
        t = torch.arange(length) / sample_rate
        f0, f1 = 100.0, 0.4 * sample_rate
        chirp = 0.5 * torch.sin(2 * np.pi * (f0 + (f1 - f0) * t / (2 * t[-1])) * t)
        out += [chirp[None] + 0.01 * torch.randn(1, length, generator=gen),
                0.1 * torch.randn(3, length, generator=gen)]
    if extra is not None:
        out.append(extra)
    return out


def _max_dev(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@torch.no_grad()
def _check_frontend(model: Classifier, graph: ExportGraph, probes: list[torch.Tensor]) -> dict[str, float]:
    """The real-valued front-end against the run's, and the whole module's logits against the run's model."""
    if graph.module.frontend is model.frontend or isinstance(graph.module.frontend, nn.Identity):
        return {}
    rel, logits = 0.0, 0.0
    model = model.cpu()
    for x in probes:
        ref = model.frontend(x)
        rel = max(rel, _max_dev(graph.module.frontend(x), ref) / float(ref.abs().max().clamp(min=1e-12)))
        logits = max(logits, _max_dev(graph.module(x), model(x)))
    if rel > FRONTEND_TOLERANCE:
        raise ModelError(f"the real-valued front-end deviates from the run's {model.frontend.settings.backend} "
                         f"front-end by {rel:.2e} (relative, max abs), above {FRONTEND_TOLERANCE:g}; this front-end "
                         "cannot be exported faithfully")
    return {"real front-end vs run's (relative)": rel, "logits, real front-end vs run's": logits}


def _onnx_bytes(graph: ExportGraph, opset: int, meta: dict[str, str]) -> bytes:
    import onnx  # the export extra: pip install 'audiocnn[export]'

    batch = torch.export.Dim("batch", min=1, max=4096)
    dims: dict[int, object] = {0: batch}
    if not graph.fixed_length:
        dims[1] = torch.export.Dim("time", min=graph.shape[0], max=2 ** 31 - 1)
    example = torch.zeros(2, *graph.shape)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(tmp, "model.onnx")
        try:
            torch.onnx.export(graph.module, (example,), path, input_names=[graph.input_name], output_names=["logits"],
                              dynamo=True, dynamic_shapes=(dims,), opset_version=opset, external_data=False,
                              verbose=False, report=False)
        except Exception as e:  # the exporter's own failures are many types; the message says what to do
            raise ModelError(f"torch.onnx.export failed for this run ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]}); try --format torchscript") from e
        proto = onnx.load(path)
    written = {o.domain: o.version for o in proto.opset_import}.get("")
    if written != opset:  # the exporter falls back to its own opset when converting fails, with only a warning
        raise ModelError(f"--opset {opset}: the exporter wrote opset {written} instead; use --opset {written}")
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"audiocnn {audiocnn.__version__}: {meta['input_name']} -> logits"
    return proto.SerializeToString()


def _torchscript_bytes(graph: ExportGraph, meta: dict[str, str]) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values: checked below
        traced = torch.jit.trace(graph.module, torch.zeros(2, *graph.shape), check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={"metadata.json": json.dumps(meta)})
    return buf.getvalue()


def _run_onnx(data: bytes):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def _run_torchscript(data: bytes):
    loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    return lambda x: loaded(x).detach().numpy()


def _check_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if opset not in OPSETS:
        raise ConfigError(f"--opset {opset}: the exporter writes opsets {OPSETS[0]} to {OPSETS[-1]}; "
                          f"give one of those (default {DEFAULT_OPSET})")
    return opset


@torch.no_grad()
def export_run(run_dir: str | Path, *, fmt: str = "onnx", out: str | Path, opset: int | None = None,
               checkpoint: str = "best", probes: torch.Tensor | None = None) -> ExportResult:
    """Export a run as one graph from raw input to logits, check it against torch, then write it atomically.

    Args:
        run_dir: a run folder made by ``audiocnn train``.
        fmt: ``onnx`` or ``torchscript``.
        out: the file to write.
        opset: ONNX opset (default :data:`DEFAULT_OPSET`); not for torchscript.
        checkpoint: ``best``, ``last`` or a ``.pt`` path.
        probes: extra inputs to check on, e.g. real recordings ``(batch, samples)`` at the run's sample rate.

    Returns:
        An :class:`ExportResult` with the metadata and the max-abs deviations measured.

    Raises:
        ConfigError: a bad format or opset. CheckpointError: not a run. ModelError: the model cannot be exported,
        or the file deviates from torch by more than :data:`LOGIT_TOLERANCE`.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "torchscript" and opset is not None:
        raise ConfigError("--opset applies to --format onnx only")
    opset = _check_opset(opset) if fmt == "onnx" else None
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name, e.g. {out / ('model.' + _SUFFIX[fmt])}")
    model, cfg, labels, task = load_run(run_dir, checkpoint=checkpoint, device="cpu")
    graph = exportable(model, cfg)
    meta = _metadata(cfg, labels, task, graph)
    inputs = _probes(graph, probes, cfg.data.sample_rate if graph.input_name == "waveform" else 0)
    deviations = _check_frontend(model, graph, inputs)
    data = _onnx_bytes(graph, opset, meta) if fmt == "onnx" else _torchscript_bytes(graph, meta)
    run = _run_onnx(data) if fmt == "onnx" else _run_torchscript(data)
    verified = run is not None
    if verified:
        check = "onnxruntime vs torch" if fmt == "onnx" else "torch.jit.load vs torch"
        worst = max(_max_dev(run(x), graph.module(x)) for x in inputs)
        deviations[check] = worst
        if worst > LOGIT_TOLERANCE:
            raise ModelError(f"the exported {fmt} logits deviate from torch by {worst:.2e} (max abs), above "
                             f"{LOGIT_TOLERANCE:g}; nothing was written to {out}")
        if "logits, real front-end vs run's" in deviations:
            deviations["file vs run's model"] = max(_max_dev(run(x), model(x)) for x in inputs)
    atomic_write(out, lambda f: f.write(data), setting="--out")
    return ExportResult(out, fmt, meta, deviations, verified)


_SUFFIX = {"onnx": "onnx", "torchscript": "pt"}
