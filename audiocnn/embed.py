"""Embeddings for downstream models: ``audiocnn embed MODEL_OR_RUN INPUT... --out DIR``.

An :class:`Embedder` maps fixed windows of audio to vectors:

- ``vggish`` (:class:`VGGishEmbedder`): 0.975 s windows at 16 kHz every 0.96 s, the exact VGGish input
  pipeline, the ``vggish`` network with local weights, optionally the released PCA + 8-bit post-processing;
  128 numbers per window. As the reference, audio shorter than one window yields nothing unless
  ``pad_short``.
- an audiocnn run folder (:class:`RunEmbedder`): windows of the recipe's ``data.duration`` every
  ``data.window_hop`` seconds, the run's own front-end, and ``model.embed()``, the layer before its head.
  Short clips are zero-padded, as in training.

Windows from many files go through the model together in batches of ``batch_size``, on the GPU when there
is one. Files are read in blocks and resampled as a stream, so a 20-minute recording needs memory for a
block and its embeddings only.

Python API on arrays:
    >>> emb = load_embedder("vggish", weights="vggish-10086976.pth")
    >>> r = embed_array(emb, wave, sample_rate=44100)     # resampled to 16 kHz
    >>> r.embeddings.shape, r.starts[:2], r.clip.shape     # (n, 128), [0.0, 0.96] s, (128,)

Files (the ``audiocnn embed`` command): every input gets, under ``DIR``, its relative path with

- ``.frames.npy`` ``(n, dim)`` float32, ``.times.npy`` ``(n, 2)`` start and end seconds, ``.clip.npy``
  ``(dim,)`` (``--format csv|parquet``: ``.frames.*`` with columns ``start_s, end_s, e000...`` and a
  one-row ``.clip.*``; ``--pool none`` writes no clip file);
- ``.json``: what was written, written last, so a file with one is done and a re-run skips it.

``DIR/manifest.csv`` lists every input: ``ok``, ``empty`` (too short for one window) or ``error`` with the
reason; a bad file never stops the job. ``DIR/embed_config.json`` records the settings; a re-run with other
settings into the same folder is refused rather than mixing embeddings.

Several processes (``torchrun --nproc_per_node=N -m audiocnn embed ...``, one per GPU): process ``r`` embeds the
inputs ``i % N == r`` of the sorted input list, and rank 0 writes ``embed_config.json`` and, once all are done,
the one ``manifest.csv``; re-running skips the files done, whatever N was (:mod:`audiocnn.engine.distributed`).
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
import torch
from torch import nn

from audiocnn.audio import AudioError
from audiocnn.utils import atomic_write, atomic_write_text, pick_device, show_progress

if TYPE_CHECKING:
    from audiocnn.engine.distributed import DistContext

__all__ = ["EmbedError", "Embedder", "EmbeddingResult", "RunEmbedder", "VGGishEmbedder", "embed_array",
           "embed_arrays", "embed_files", "iter_windows", "load_embedder", "read_clip_embeddings"]

Pool = Literal["mean", "max", "none"]
Precision = Literal["fp32", "bf16"]
FORMATS = ("npy", "parquet", "csv")
BLOCK_SECONDS = 30.0
"""Seconds of audio read from a file at a time."""


class EmbedError(RuntimeError):
    """Embedding cannot start (bad model, weights, settings or output folder); the message says what to do."""


# --- embedders -----------------------------------------------------------------------------------------------------

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
        self.device = pick_device("auto") if device is None else torch.device(device)
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
        from audiocnn.features.frontends import _exact_float32

        x = torch.as_tensor(windows, dtype=torch.float32)
        if x.dim() != 2 or x.shape[1] != self.window:
            raise ValueError(f"windows must be (batch, {self.window}), got {tuple(x.shape)}")
        x = x.to(self.device, non_blocking=True)
        if self.precision == "fp32":
            with _exact_float32(self.device):
                return self._forward(x).float().cpu().numpy()
        if not self._bf16_ready:
            with _exact_float32(self.device):
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
        from audiocnn.features.vggish_input import EXAMPLE_FRAMES, HOP_LENGTH, VGGishInput

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


class RunEmbedder(Embedder):
    """An audiocnn run as an embedder: its front-end and ``model.embed()`` (the layer before the head).

    Args:
        run_dir: a folder made by ``audiocnn train``.
        checkpoint: ``best``, ``last`` or a ``.pt`` path.
    """

    def __init__(self, run_dir: str | Path, *, checkpoint: str = "best", device: str | torch.device | None = None,
                 precision: Precision = "fp32"):
        super().__init__(device=device, precision=precision)
        from audiocnn.evaluation.evaluate import load_run

        self.model, cfg, _, _ = load_run(run_dir, checkpoint=checkpoint, device=self.device)
        if cfg.frontend.kind == "image":
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

    def _to_bf16(self) -> None:
        pass  # autocast in _forward; the front-end computes in float32 whatever the autocast state

    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16_ready):
            return self.model.embed(windows).float()


def load_embedder(model_or_run: str | Path, *, weights: str | Path | None = None, pca: str | Path | None = None,
                  checkpoint: str = "best", device: str | torch.device | None = None, precision: Precision = "fp32",
                  pad_short: bool | None = None) -> Embedder:
    """``vggish`` (with ``weights``, optional ``pca``) or an audiocnn run folder -> an :class:`Embedder`.

    Raises:
        EmbedError: neither a run folder nor ``vggish``, ``vggish`` without weights, or options that do not apply.
        VGGishWeightsError: weights or PCA files that do not fit (naming keys and shapes).
    """
    target = str(model_or_run)
    if target == "vggish":
        from audiocnn.models import create_model
        from audiocnn.models.vggish import Postprocessor, load_vggish_weights

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
    if Path(target).is_dir():
        if weights is not None or pca is not None:
            raise EmbedError("--weights and --pca apply to vggish only; a run folder brings its own weights")
        emb = RunEmbedder(target, checkpoint=checkpoint, device=device, precision=precision)
        if pad_short is not None:
            emb.pad_short = pad_short
        return emb
    raise EmbedError(f"{target!r} is neither `vggish` nor an audiocnn run folder (made by `audiocnn train`, "
                     "holding checkpoints/)")


def _file_id(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return {"path": str(p.resolve()), "bytes": p.stat().st_size}


# --- windows -------------------------------------------------------------------------------------------------------

def iter_windows(blocks: Iterable[np.ndarray], *, window: int, hop: int, pad_short: bool,
                 chunk: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    """Windows of a stream of sample blocks, in bounded memory.

    Args:
        blocks: consecutive ``(n,)`` float32 pieces of one wave.
        window / hop: samples per window and between window starts.
        pad_short: a wave shorter than one window gives one zero-padded window instead of none.
        chunk: windows per yielded array at most.

    Yields:
        ``(start, windows)``: the first window's start sample and ``(k, window)`` float32 windows starting at
        ``start + i * hop``. Only windows that fit in the wave (a trailing partial window is dropped, as VGGish
        does).
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1 sample, got {window}, {hop}")
    buf = np.zeros(0, np.float32)
    buf_start = next_start = total = produced = 0
    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, np.float32)]) if len(buf) else np.asarray(block, np.float32)
        total += len(block)
        while next_start + window <= buf_start + len(buf):
            n = min(chunk, 1 + (buf_start + len(buf) - window - next_start) // hop)
            off = next_start - buf_start
            span = buf[off:off + (n - 1) * hop + window]
            yield next_start, np.lib.stride_tricks.sliding_window_view(span, window)[::hop].copy()
            next_start += n * hop
            produced += n
        drop = min(next_start - buf_start, len(buf))
        if drop > 0:
            buf, buf_start = buf[drop:], buf_start + drop
    if produced == 0 and pad_short and total > 0:
        padded = np.zeros((1, window), np.float32)
        padded[0, :len(buf)] = buf[:window]
        yield 0, padded


def _stream_file(path: Path, sample_rate: int, *, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``path`` at ``sample_rate``: read with soundfile, resampled by a soxr stream
    (identical to resampling the whole file). Raises :class:`AudioError` as ``load_audio`` does, including
    for damage found half-way through (NaN samples, fewer frames than the header declares)."""
    import soxr

    from audiocnn.audio.io import _MP3_LENGTH_TOLERANCE, open_audio

    with open_audio(path) as f:
        frames, sr, fmt = f.frames, f.samplerate, f.format
        stream = soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ") if sr != sample_rate else None
        block = max(1, int(block_seconds * sr))
        got = 0
        while True:
            data = f.read(block, dtype="float32", always_2d=True)
            last = len(data) < block or f.tell() >= frames
            got += len(data)
            if not np.isfinite(data).all():
                raise AudioError(path, f"NaN or Inf samples near {got / sr:.1f} s; fix or remove the file")
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            out = stream.resample_chunk(np.ascontiguousarray(mono), last=last) if stream is not None else mono
            if len(out):
                yield out
            if last:
                break
    tolerance = _MP3_LENGTH_TOLERANCE * frames if fmt == "MP3" else 0
    if got < frames - tolerance:
        raise AudioError(path, f"truncated or corrupt: the header declares {frames} frames but only {got} could be "
                               "decoded; re-download or re-export it")


# --- the batching engine -------------------------------------------------------------------------------------------

@dataclass
class EmbeddingResult:
    """One wave's embeddings.

    Attributes:
        embeddings: ``(n, dim)`` float32, one row per window.
        starts / ends: ``(n,)`` seconds (a padded short clip ends at its own end).
        clip: ``(dim,)`` pooled over the windows, or None (``pool='none'`` or no window).
        duration: seconds of audio.
    """

    embeddings: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    clip: np.ndarray | None
    duration: float


@dataclass
class _Job:
    index: int
    blocks: Callable[[], Iterable[np.ndarray]]
    parts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    pending: int = 0
    samples: int = 0
    error: str | None = None
    reading: bool = True


def _pool(embeddings: np.ndarray, pool: Pool) -> np.ndarray | None:
    if pool == "none" or len(embeddings) == 0:
        return None
    if pool == "mean":
        return embeddings.mean(0, dtype=np.float64).astype(np.float32)
    if pool == "max":
        return embeddings.max(0)
    raise ValueError(f"pool must be mean, max or none, got {pool!r}")


def _result(job: _Job, emb: Embedder, window: int, pool: Pool) -> EmbeddingResult:
    if job.parts:
        starts = np.concatenate([s for s, _ in job.parts])
        embeddings = np.concatenate([e for _, e in job.parts]).astype(np.float32, copy=False)
    else:
        starts, embeddings = np.zeros(0, np.int64), np.zeros((0, emb.dim), np.float32)
    sr = emb.sample_rate
    ends = np.minimum(starts + window, max(job.samples, 1)) / sr
    return EmbeddingResult(embeddings, starts / sr, ends, _pool(embeddings, pool), job.samples / sr)


def _run(emb: Embedder, jobs: Iterable[_Job], *, hop: int, pad_short: bool, batch_size: int, pool: Pool,
         on_done: Callable[[_Job, EmbeddingResult | None], None]) -> None:
    """Stream every job's windows through the model in batches that span jobs; call ``on_done`` per job, in
    order, with its result (None and ``job.error`` set for a bad input)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    queue: list[tuple[_Job, np.ndarray, np.ndarray]] = []  # (job, starts, windows) not yet through the model
    queued = 0
    open_jobs: list[_Job] = []

    def finish_ready() -> None:
        while open_jobs and not open_jobs[0].reading and open_jobs[0].pending == 0:
            job = open_jobs.pop(0)
            on_done(job, None if job.error else _result(job, emb, emb.window, pool))

    def flush(final: bool) -> None:
        nonlocal queued
        while queued >= batch_size or (final and queued):
            take, parts = min(batch_size, queued), []
            while take:
                job, starts, wins = queue[0]
                k = min(take, len(wins))
                parts.append((job, starts[:k], wins[:k]))
                if k == len(wins):
                    queue.pop(0)
                else:
                    queue[0] = (job, starts[k:], wins[k:])
                take -= k
                queued -= k
            out = emb.embed_windows(np.concatenate([w for _, _, w in parts]))
            i = 0
            for job, starts, wins in parts:
                job.parts.append((starts, out[i:i + len(wins)]))
                job.pending -= len(wins)
                i += len(wins)
            finish_ready()

    for job in jobs:
        open_jobs.append(job)

        def counted(job: _Job = job) -> Iterator[np.ndarray]:
            for block in job.blocks():
                job.samples += len(block)
                yield block

        windows = iter_windows(counted(), window=emb.window, hop=hop, pad_short=pad_short)
        while True:
            try:
                item = next(windows)
            except StopIteration:
                break
            except AudioError as e:
                job.error = e.reason
                break
            except Exception as e:  # noqa: BLE001 - a bad input is reported, never stops the others
                job.error = f"{type(e).__name__}: {e}"
                break
            start, wins = item
            queue.append((job, start + hop * np.arange(len(wins)), wins))
            job.pending += len(wins)
            queued += len(wins)
            flush(final=False)
        job.reading = False
        if job.error:
            dropped = sum(len(w) for j, _, w in queue if j is job)
            queue = [q for q in queue if q[0] is not job]
            queued -= dropped
            job.pending, job.parts = 0, []
        finish_ready()
    flush(final=True)
    finish_ready()


def _hop_samples(emb: Embedder, hop: float | None) -> int:
    if hop is None:
        return emb.hop
    if hop <= 0:
        raise EmbedError(f"--hop must be positive seconds, got {hop}")
    return max(1, int(round(hop * emb.sample_rate)))


def embed_arrays(emb: Embedder, waves: Sequence[np.ndarray], sample_rate: int, *, hop: float | None = None,
                 pad_short: bool | None = None, pool: Pool = "mean", batch_size: int = 128) -> list[EmbeddingResult]:
    """Embeddings of several waves, batched together.

    Args:
        emb: from :func:`load_embedder`.
        waves: ``(time,)`` mono or ``(time, channels)`` arrays (channels averaged).
        sample_rate: their rate; resampled to ``emb.sample_rate`` with soxr when different.
        hop: seconds between windows (default: the embedder's, 0.96 s for VGGish).
        pad_short: override the embedder's default for waves shorter than one window.
        pool: clip embedding: ``mean`` or ``max`` over the windows, or ``none``.

    Returns:
        One :class:`EmbeddingResult` per wave, in order.
    """
    from audiocnn.audio import resample

    def blocks(wave: np.ndarray) -> Callable[[], list[np.ndarray]]:
        def make() -> list[np.ndarray]:
            w = np.asarray(wave, dtype=np.float32)
            if w.ndim == 2:
                w = w.mean(axis=1, dtype=np.float32)
            if w.ndim != 1:
                raise ValueError(f"a wave must be (time,) or (time, channels), got shape {np.shape(wave)}")
            return [resample(w, int(sample_rate), emb.sample_rate)]
        return make

    results: list[EmbeddingResult | None] = [None] * len(waves)
    errors: list[str] = []

    def done(job: _Job, res: EmbeddingResult | None) -> None:
        if res is None:
            errors.append(f"wave {job.index}: {job.error}")
        results[job.index] = res

    _run(emb, (_Job(i, blocks(w)) for i, w in enumerate(waves)), hop=_hop_samples(emb, hop),
         pad_short=emb.pad_short if pad_short is None else pad_short, batch_size=batch_size, pool=pool, on_done=done)
    if errors:
        raise ValueError("; ".join(errors))
    return results  # type: ignore[return-value]


def embed_array(emb: Embedder, wave: np.ndarray, sample_rate: int, **kwargs: Any) -> EmbeddingResult:
    """Embeddings of one wave; keyword arguments as :func:`embed_arrays`."""
    return embed_arrays(emb, [wave], sample_rate, **kwargs)[0]


# --- files ---------------------------------------------------------------------------------------------------------

def _sources(inputs: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """``(file, output name)``: folders searched recursively, names their relative paths without the suffix
    (with it where two would collide); a file named twice is embedded once."""
    from audiocnn.evaluation.predict import AUDIO_EXTENSIONS

    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        pairs = ([(f, f.relative_to(p)) for f in sorted(p.rglob("*")) if f.suffix.lower() in AUDIO_EXTENSIONS
                  and f.is_file()] if p.is_dir() else [(p, Path(p.name))])
        for f, rel in pairs:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                found.append((f, rel))
    stems = [rel.with_suffix("").as_posix() for _, rel in found]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    names, used = [], set()
    for (f, rel), stem in zip(found, stems):
        name = stem if counts[stem] == 1 else rel.as_posix()
        base, k = name, 2
        while name in used:
            name, k = f"{base}__{k}", k + 1
        used.add(name)
        names.append(name)
    return [(f, n) for (f, _), n in zip(found, names)]


def _columns(dim: int) -> list[str]:
    width = max(3, len(str(dim - 1)))
    return [f"e{i:0{width}d}" for i in range(dim)]


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise EmbedError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError as e:
            raise EmbedError(f"--format parquet needs pyarrow ({e}); pip install pyarrow (or 'audiocnn[parquet]'), "
                             "or use --format npy or csv") from None


def _write_table(path: Path, fmt: str, columns: dict[str, np.ndarray]) -> None:
    if fmt == "npy":
        raise AssertionError("npy is written array by array")
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        names = list(columns)
        w.writerow(names)
        rows = zip(*[columns[n] for n in names]) if names else []
        for row in rows:
            w.writerow([repr(float(v)) for v in row])
        atomic_write_text(path, buf.getvalue())
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: pa.array(v) for k, v in columns.items()})
    atomic_write(path, lambda f: pq.write_table(table, f))


def _write_outputs(out: Path, name: str, res: EmbeddingResult, fmt: str, dim: int) -> dict[str, str]:
    """Write one input's files atomically; returns their paths relative to ``out``."""
    files: dict[str, str] = {}
    base = out / name
    if fmt == "npy":
        times = np.stack([res.starts, res.ends], axis=1) if len(res.starts) else np.zeros((0, 2))
        for kind, arr in (("frames", res.embeddings), ("times", times.astype(np.float64))):
            path = base.parent / f"{base.name}.{kind}.npy"
            atomic_write(path, lambda f, a=arr: np.save(f, a))
            files[kind] = path.relative_to(out).as_posix()
        if res.clip is not None:
            path = base.parent / f"{base.name}.clip.npy"
            atomic_write(path, lambda f: np.save(f, res.clip))
            files["clip"] = path.relative_to(out).as_posix()
        return files
    cols = _columns(dim)
    frames = {"start_s": res.starts.astype(np.float64), "end_s": res.ends.astype(np.float64),
              **{c: res.embeddings[:, i] for i, c in enumerate(cols)}}
    path = base.parent / f"{base.name}.frames.{fmt}"
    _write_table(path, fmt, frames)
    files["frames"] = path.relative_to(out).as_posix()
    if res.clip is not None:
        path = base.parent / f"{base.name}.clip.{fmt}"
        _write_table(path, fmt, {c: res.clip[i:i + 1] for i, c in enumerate(cols)})
        files["clip"] = path.relative_to(out).as_posix()
    return files


MANIFEST_FIELDS = ["source", "name", "status", "windows", "duration_s", "frames", "times", "clip", "error"]


def _settings(emb: Embedder, *, hop: int, pool: Pool, fmt: str, pad_short: bool) -> dict[str, Any]:
    return {**emb.describe(), "hop_s": hop / emb.sample_rate, "window_s": emb.window / emb.sample_rate,
            "pool": pool, "format": fmt, "pad_short": pad_short}


def embed_files(emb: Embedder, inputs: Iterable[str | Path], out_dir: str | Path, *, hop: float | None = None,
                batch_size: int = 128, fmt: str = "npy", pool: Pool = "mean", pad_short: bool | None = None,
                overwrite: bool = False, progress: str = "auto", log: Callable[[str], None] | None = print,
                block_seconds: float = BLOCK_SECONDS, distributed: DistContext | None = None) -> dict[str, Any]:
    """Embed audio files and folders into ``out_dir`` (layout in the module docstring); resumable.

    Args:
        emb: from :func:`load_embedder`.
        inputs: files and folders (searched recursively for audio files).
        hop / pad_short / pool: as :func:`embed_arrays`.
        batch_size: windows per forward pass (windows of several files share a batch).
        fmt: ``npy``, ``parquet`` (needs pyarrow) or ``csv``.
        overwrite: embed every input again, even those done before or with other settings.
        progress: ``auto`` (a bar on a terminal), ``always`` or ``never``.
        log: where the summary lines go (None: nowhere).
        distributed: this process's place in a torchrun job (:func:`audiocnn.engine.distributed.setup`): it
            embeds the inputs ``i % world_size == rank``; rank 0 writes ``embed_config.json``, the merged
            manifest and the log lines. Every process returns the merged summary.

    Returns:
        ``{"manifest": path, "rows": [...], "ok", "empty", "errors", "skipped", "windows", "audio_s",
        "seconds", "deviation"}``; ``skipped`` counts inputs done by an earlier run.
    """
    from audiocnn.engine.distributed import DistContext

    dist = distributed or DistContext()
    _check_format(fmt)
    if pool not in ("mean", "max", "none"):
        raise EmbedError(f"--pool must be mean, max or none, got {pool!r}")
    out = Path(out_dir)
    hop_n = _hop_samples(emb, hop)
    pad = emb.pad_short if pad_short is None else bool(pad_short)
    settings = _settings(emb, hop=hop_n, pool=pool, fmt=fmt, pad_short=pad)
    config_path = out / "embed_config.json"
    if config_path.is_file() and not overwrite:
        before = json.loads(config_path.read_text())
        changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if changed:
            what = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise EmbedError(f"{out} holds embeddings made with other settings ({what}); use another --out, or "
                             "--overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    if dist.is_main:  # every process checked the old settings above, so they agree on refusing
        atomic_write_text(config_path, json.dumps(settings, indent=2) + "\n")

    sources = _sources(inputs)
    rows: list[dict[str, Any]] = [{} for _ in sources]
    todo: list[_Job] = []
    for i, (path, name) in enumerate(sources):
        if i % dist.world_size != dist.rank:
            continue
        marker = out / f"{name}.json"
        if marker.is_file() and not overwrite:
            try:
                rows[i] = {**json.loads(marker.read_text()), "skipped": True}
                continue
            except (OSError, ValueError):
                pass  # unreadable marker: embed again
        todo.append(_Job(i, lambda p=path: _stream_file(p, emb.sample_rate, block_seconds=block_seconds)))
    skipped = sum(bool(r) for r in rows)

    bar = None
    if show_progress(progress) and todo and dist.is_main:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="file", desc="embed", dynamic_ncols=True)
    t0 = time.perf_counter()
    stats = {"windows": 0, "audio_s": 0.0}

    def done(job: _Job, res: EmbeddingResult | None) -> None:
        path, name = sources[job.index]
        row: dict[str, Any] = {"source": str(path), "name": name}
        if res is None:
            row.update(status="error", error=job.error)
        else:
            status = "ok" if len(res.embeddings) else "empty"
            row.update(status=status, windows=len(res.embeddings), duration_s=round(res.duration, 4))
            if status == "empty":
                row["error"] = (f"shorter than one window ({emb.window / emb.sample_rate:g} s): no embedding; "
                                "--pad-short embeds it zero-padded")
            else:
                row.update(_write_outputs(out, name, res, fmt, emb.dim))
            atomic_write_text(out / f"{name}.json", json.dumps(row, indent=2) + "\n")
            stats["windows"] += len(res.embeddings)
            stats["audio_s"] += res.duration
        rows[job.index] = row
        if bar is not None:
            bar.update(1)
            elapsed = time.perf_counter() - t0
            bar.set_postfix_str(f"{stats['audio_s'] / max(elapsed, 1e-9):.0f}x realtime")

    try:
        _run(emb, todo, hop=hop_n, pad_short=pad, batch_size=batch_size, pool=pool, on_done=done)
    finally:
        if bar is not None:
            bar.close()
        if not dist.enabled:  # finished work is listed even when a run stops half-way
            manifest = _write_manifest(out, [r for r in rows if r])
    if dist.enabled:  # every process gets every row, so all return the same summary; rank 0 writes it
        parts = dist.all_gather_object(({i: r for i, r in enumerate(rows) if r}, stats, skipped))
        for part, _, _ in parts:
            for i, r in part.items():
                rows[i] = r
        stats = {k: sum(p[1][k] for p in parts) for k in stats}
        skipped = sum(p[2] for p in parts)
        manifest = _write_manifest(out, [r for r in rows if r]) if dist.is_main else out / "manifest.csv"
        log = log if dist.is_main else None
    seconds = time.perf_counter() - t0
    counts = {s: sum(r.get("status") == s for r in rows) for s in ("ok", "empty", "error")}
    summary = {"manifest": str(manifest), "rows": rows, "ok": counts["ok"], "empty": counts["empty"],
               "errors": counts["error"], "skipped": skipped, "windows": stats["windows"],
               "audio_s": stats["audio_s"], "seconds": seconds, "deviation": emb.deviation}
    if log is not None:
        speed = f", {stats['audio_s'] / seconds:.0f}x realtime" if seconds > 0 and stats["audio_s"] else ""
        new = sum(r.get("status") == "ok" and not r.get("skipped") for r in rows)
        log(f"embedded {new} file(s): {stats['windows']} windows of {stats['audio_s']:.1f} s audio in {seconds:.1f} s"
            f"{speed} on {emb.device} ({emb.precision}); {skipped} done before; {counts['empty']} too short for a "
            f"window; {counts['error']} error(s)")
        for r in rows:
            if r.get("status") == "error":
                log(f"  {r['source']}: ERROR {r['error']}")
        if emb.deviation:
            d = emb.deviation
            log(f"bf16 vs float32 on the first batch: max abs {d['max_abs']:.3g}, relative L2 {d['rel_l2']:.3g}, "
                f"min cosine {d['min_cosine']:.6f}")
        log(f"wrote {manifest}")
    return summary


def _write_manifest(out: Path, rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in MANIFEST_FIELDS})
    path = out / "manifest.csv"
    atomic_write_text(path, buf.getvalue())
    return path


# --- reading back --------------------------------------------------------------------------------------------------

def _read_table(path: Path) -> tuple[list[str], np.ndarray]:
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        return [], arr
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows = [[float(v) for v in row] for row in reader]
        return header, np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table.column_names, np.stack([table.column(c).to_numpy() for c in table.column_names], axis=1)


def read_clip_embeddings(embed_dir: str | Path) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The ``ok`` rows of ``embed_dir/manifest.csv`` and their clip embeddings ``(n, dim)`` float32 (the mean
    of the frame embeddings where ``--pool none`` wrote no clip file)."""
    embed_dir = Path(embed_dir)
    manifest = embed_dir / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found; is {embed_dir} an `audiocnn embed --out` folder?")
    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    vectors = []
    for r in rows:
        rel = r.get("clip") or r["frames"]
        header, arr = _read_table(embed_dir / rel)
        if header:
            arr = arr[:, [i for i, h in enumerate(header) if h not in ("start_s", "end_s")]]
        vectors.append(arr.reshape(-1) if r.get("clip") else np.atleast_2d(arr).mean(0))
    dim = len(vectors[0]) if vectors else 0
    return rows, np.asarray(vectors, dtype=np.float32).reshape(len(rows), dim)
