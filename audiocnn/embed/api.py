"""The entry points: :func:`embed_arrays` and :func:`embed_array` on arrays in memory, and :func:`embed_files` on
files and folders, with its output folder (settings check, resume from the per-file markers, the manifest) and
its share of the inputs under torchrun (:class:`~audiocnn.engine.distributed.DistContext`)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from audiocnn.audio import resample
from audiocnn.audio.io import find_inputs
from audiocnn.core.io import atomic_write_text, make_dirs
from audiocnn.core.runtime import show_progress
from audiocnn.embed.batcher import EmbeddingResult, Pool, WindowBatcher, Job
from audiocnn.embed.embedders import EmbedError, Embedder, load_embedder
from audiocnn.embed.windows import BLOCK_SECONDS, window_hop_samples, stream_file
from audiocnn.embed.writers import check_format, write_manifest, write_outputs
from audiocnn.engine.distributed import DistContext, setup


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

    def done(job: Job, res: EmbeddingResult | None) -> None:
        if res is None:
            errors.append(f"wave {job.index}: {job.error}")
        results[job.index] = res

    jobs = (Job(i, blocks(w)) for i, w in enumerate(waves))
    WindowBatcher(emb, hop=window_hop_samples(emb, hop), pad_short=emb.pad_short if pad_short is None else pad_short,
                  batch_size=batch_size, pool=pool, on_done=done).run(jobs)
    if errors:
        raise ValueError("; ".join(errors))
    return results  # type: ignore[return-value]


def embed_array(emb: Embedder, wave: np.ndarray, sample_rate: int, **kwargs: Any) -> EmbeddingResult:
    """Embeddings of one wave; keyword arguments as :func:`embed_arrays`."""
    return embed_arrays(emb, [wave], sample_rate, **kwargs)[0]


def _sources(inputs: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """``(file, output name)``: folders searched recursively, names their relative paths without the suffix
    (with it where two would collide); a file named twice is embedded once."""

    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for f, rel in find_inputs(inputs):
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


def _settings(emb: Embedder, *, hop: int, pool: Pool, fmt: str, pad_short: bool) -> dict[str, Any]:
    return {**emb.describe(), "hop_s": hop / emb.sample_rate, "window_s": emb.window / emb.sample_rate,
            "pool": pool, "format": fmt, "pad_short": pad_short}


def embed_files(emb: Embedder, inputs: Iterable[str | Path], out_dir: str | Path, *, hop: float | None = None,
                batch_size: int = 128, fmt: str = "npy", pool: Pool = "mean", pad_short: bool | None = None,
                overwrite: bool = False, progress: str = "auto", log: Callable[[str], None] | None = print,
                block_seconds: float = BLOCK_SECONDS, distributed: DistContext | None = None) -> dict[str, Any]:
    """Embed audio files and folders into ``out_dir`` (layout in the :mod:`audiocnn.embed` docstring); resumable.

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

    dist = distributed or DistContext()
    check_format(fmt)
    if pool not in ("mean", "max", "none"):
        raise EmbedError(f"--pool must be mean, max or none, got {pool!r}")
    out = Path(out_dir)
    hop_n = window_hop_samples(emb, hop)
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
    make_dirs(out, setting="--out")
    if dist.is_main:  # every process checked the old settings above, so they agree on refusing
        atomic_write_text(config_path, json.dumps(settings, indent=2) + "\n", setting="--out")

    sources = _sources(inputs)
    rows: list[dict[str, Any]] = [{} for _ in sources]
    todo: list[Job] = []
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
        todo.append(Job(i, lambda p=path: stream_file(p, emb.sample_rate, block_seconds=block_seconds)))
    skipped = sum(bool(r) for r in rows)

    bar = None
    if show_progress(progress) and todo and dist.is_main:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="file", desc="embed", dynamic_ncols=True)
    t0 = time.perf_counter()
    stats = {"windows": 0, "audio_s": 0.0}

    def done(job: Job, res: EmbeddingResult | None) -> None:
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
                row.update(write_outputs(out, name, res, fmt, emb.dim))
            atomic_write_text(out / f"{name}.json", json.dumps(row, indent=2) + "\n")
            stats["windows"] += len(res.embeddings)
            stats["audio_s"] += res.duration
        rows[job.index] = row
        if bar is not None:
            bar.update(1)
            elapsed = time.perf_counter() - t0
            bar.set_postfix_str(f"{stats['audio_s'] / max(elapsed, 1e-9):.0f}x realtime")

    try:
        WindowBatcher(emb, hop=hop_n, pad_short=pad, batch_size=batch_size, pool=pool, on_done=done).run(todo)
    finally:
        if bar is not None:
            bar.close()
        if not dist.enabled:  # finished work is listed even when a run stops half-way
            manifest = write_manifest(out, [r for r in rows if r])
    if dist.enabled:  # every process gets every row, so all return the same summary; rank 0 writes it
        parts = dist.all_gather_object(({i: r for i, r in enumerate(rows) if r}, stats, skipped))
        for part, _, _ in parts:
            for i, r in part.items():
                rows[i] = r
        stats = {k: sum(p[1][k] for p in parts) for k in stats}
        skipped = sum(p[2] for p in parts)
        manifest = write_manifest(out, [r for r in rows if r]) if dist.is_main else out / "manifest.csv"
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


def embed(model_or_run: str | Path, inputs: Iterable[str | Path], out_dir: str | Path, *, device: str | None = None,
          weights: str | Path | None = None, pca: str | Path | None = None, checkpoint: str = "best",
          precision: str = "fp32", pad_short: bool | None = None, **options: Any) -> tuple[dict[str, Any], bool]:
    """``audiocnn embed``: :func:`load_embedder` then :func:`embed_files`, in one process or under torchrun.

    Under torchrun each process takes one device (``cuda:LOCAL_RANK``) and its share of the inputs; gloo carries
    the few messages. ``options`` go to :func:`embed_files`. Returns the summary and whether this process is
    the one that reports (rank 0).
    """
    dist = setup(device or "auto", backend="gloo")
    try:
        emb = load_embedder(model_or_run, weights=weights, pca=pca, checkpoint=checkpoint,
                            device=dist.device if dist.enabled else device, precision=precision, pad_short=pad_short)
        summary = embed_files(emb, inputs, out_dir, distributed=dist, **options)
        dist.close(wait=True)  # rank 0 may still be writing the manifest
    finally:
        dist.close()
    return summary, dist.is_main
