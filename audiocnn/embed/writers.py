"""Output files: one input's embeddings written as ``npy``, ``csv`` or ``parquet`` (:data:`FORMATS`), the
``manifest.csv`` that lists every input, and reading clip embeddings back from an output folder
(:func:`read_clip_embeddings`, for ``audiocnn probe``)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from audiocnn.core.errors import NotFoundError
from audiocnn.embed.batcher import EmbeddingResult
from audiocnn.embed.embedders import EmbedError
from audiocnn.core.io import atomic_write, atomic_write_text

FORMATS = ("npy", "parquet", "csv")


def _columns(dim: int) -> list[str]:
    width = max(3, len(str(dim - 1)))
    return [f"e{i:0{width}d}" for i in range(dim)]


def check_format(fmt: str) -> None:
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


def write_outputs(out: Path, name: str, res: EmbeddingResult, fmt: str, dim: int) -> dict[str, str]:
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


# --- manifest -----------------------------------------------------------------------------------------------------

MANIFEST_FIELDS = ["source", "name", "status", "windows", "duration_s", "frames", "times", "clip", "error"]


def write_manifest(out: Path, rows: list[dict[str, Any]]) -> Path:
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
        raise NotFoundError(f"{manifest} not found; is {embed_dir} an `audiocnn embed --out` folder?")
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
