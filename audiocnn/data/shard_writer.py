"""``audiocnn data shard``: any audio dataset as WebDataset tar shards (the layout of :mod:`.shard_format`).

    audiocnn data shard fsdd --root data/fsdd --out shards/fsdd                       # FLAC, 256 MB shards
    audiocnn data shard esc10 --out shards/esc10 --sample-rate 16000 --shard-size 64MB
    audiocnn data shard manifest data.manifest=clips.csv data.task=multilabel --out shards/clips --format wav

Each split becomes its own shard set, in the split's order. A shard closes before an example would take it
past ``--shard-size``. Everything written is deterministic: tar members carry no times or owners, so the same
command writes the same bytes. Shards are written whole, under a temporary name, and ``.progress.json`` records
each one finished; running the same command again after an interruption keeps them and goes on. ``index.json``
is written last: a folder with it is complete.

A file that does not decode stops the command with its name (the shards finished so far are kept; the same
command continues once the file is fixed), or with ``data.on_error=skip`` is left out and listed in
``skipped.csv``. Examples are numbered consecutively within their split either way.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf

from audiocnn.audio.io import AudioError, load_audio
from audiocnn.core.errors import ConfigError, DataError
from audiocnn.core.io import atomic_write, atomic_write_text, check_writable, write_json
from audiocnn.core.runtime import show_progress
from audiocnn.data.datasets import build_splits, dataset_modality
from audiocnn.data.shard_format import (
    AUDIO_FORMATS, INDEX_FILE, ShardIndex, ShardInfo, example_key, shard_name,
)
from audiocnn.data.splits import Example
from audiocnn.tasks import get_task

__all__ = ["PROGRESS_FILE", "ShardWriteResult", "parse_size", "write_shards"]

PROGRESS_FILE = ".progress.json"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str | int) -> int:
    """``256MB``, ``1.5GB``, ``64MiB``, ``500KB`` or a number of bytes -> bytes; ValueError otherwise."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        s = str(text).strip().upper().replace(" ", "")
        num = s.rstrip("KMGIB")
        value, unit = float(num), s[len(num):]
        if unit not in _UNITS:
            raise ValueError(f"unknown unit in {text!r}; use B, KB, MB, GB, KiB, MiB or GiB")
    size = int(value * _UNITS[unit])
    if size < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return size


@dataclass
class ShardWriteResult:
    out: Path
    index: ShardIndex
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        for name, shards in self.index.splits.items():
            n = len(shards)
            parts.append(f"{name} {self.index.examples(name)} examples in {n} shard{'s' * (n != 1)} "
                         f"({self.index.duration_s(name):.1f} s)")
        skipped = f", {len(self.skipped)} skipped (skipped.csv)" if self.skipped else ""
        return f"{self.index.dataset}: {', '.join(parts)}{skipped} -> {self.out / INDEX_FILE}"


def _data_config(dataset: str, root: str | None, overrides: Sequence[str]) -> Any:
    from audiocnn.config import apply_overrides, config_from_dict
    for item in overrides:
        if not item.startswith("data."):
            raise ConfigError(f"{item!r}: data shard takes data.* settings only (e.g. data.manifest=clips.csv)")
    return config_from_dict(apply_overrides({"data": {"name": dataset, "root": root or ""}}, list(overrides))).data


def _source(ex: Example, root: Path | None) -> str:
    path = Path(ex.path)
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def _encode(wave: np.ndarray, sample_rate: int, audio_format: str) -> bytes:
    buf = io.BytesIO()
    if audio_format == "flac":
        sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    else:
        sf.write(buf, wave.astype(np.float32), sample_rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            _member(tar, name, data)
    return buf.getvalue()


def write_shards(dataset: str, out: str | os.PathLike, *, root: str | os.PathLike | None = None,
                 overrides: Sequence[str] = (), shard_size: int | str = 256_000_000, audio_format: str = "flac",
                 sample_rate: int | None = None, overwrite: bool = False, progress: str = "auto") -> ShardWriteResult:
    """Write ``dataset``'s splits as shards in ``out`` (see the module docstring).

    Raises:
        DataError: unknown or image dataset, missing files, a bad file (``data.on_error: raise``), a folder that
            holds a finished index or another command's progress (pass ``overwrite``).
        ConfigError: a bad override, format or size.
        WriteFailure: ``out`` is read-only or the disk is full (finished shards are kept).
    """
    if audio_format not in AUDIO_FORMATS:
        raise ConfigError(f"--format {audio_format!r}: use {' or '.join(AUDIO_FORMATS)}")
    try:
        size = parse_size(shard_size)
    except ValueError as e:
        raise ConfigError(f"--shard-size: {e}") from None
    if sample_rate is not None and sample_rate <= 0:
        raise ConfigError(f"--sample-rate {sample_rate}: give a positive rate in Hz")
    cfg = _data_config(dataset, None if root is None else str(root), overrides)
    if dataset_modality(cfg.name) != "audio" or cfg.name == "shards":
        raise DataError(f"data shard: {cfg.name!r} is not an audio dataset on disk; shard an audio dataset "
                        "(fsdd, esc10, folder, manifest, ...)")
    out = Path(os.path.expanduser(str(out)))
    settings = {"dataset": dataset, "root": str(Path(root).resolve()) if root else "", "overrides": list(overrides),
                "shard_size": size, "audio_format": audio_format, "sample_rate": sample_rate}
    index_path, progress_path = out / INDEX_FILE, out / PROGRESS_FILE
    if overwrite:
        for f in [index_path, progress_path, out / "skipped.csv", *out.glob("*.tar")]:
            if f.exists():
                f.unlink()
    elif index_path.is_file():
        raise DataError(f"{out}: holds finished shards ({INDEX_FILE}); pass --overwrite to write them again, or "
                        "choose another --out")
    done = json.loads(progress_path.read_text()) if progress_path.is_file() else None
    if done is not None and done["settings"] != settings:
        raise DataError(f"{out}: holds the progress of another `data shard` command ({done['settings']}); pass "
                        "--overwrite to start again with these settings, or choose another --out")
    check_writable(out, setting="--out")
    splits = build_splits(cfg)
    data_root = Path(os.path.expanduser(cfg.root)) if cfg.root else None
    task = get_task(splits.task)
    state = done or {"settings": settings, "splits": {}, "skipped": []}
    parts = {k: v for k, v in splits.parts().items() if v}
    total = sum(len(v) for v in parts.values())
    already = sum(s.get("consumed", 0) for s in state["splits"].values())
    bar = None
    if show_progress(progress):
        from tqdm import tqdm
        bar = tqdm(total=total, initial=already, desc=f"shard {dataset}", unit="file")

    def save_progress() -> None:
        write_json(progress_path, state, setting="--out")

    try:
        for name, examples in parts.items():
            mine = state["splits"].setdefault(name, {"shards": [], "consumed": 0, "written": 0, "finished": False})
            for info in mine["shards"]:  # a finished shard is kept when it is still there, whole
                path = out / info["name"]
                if not path.is_file() or path.stat().st_size != info["bytes"]:
                    raise DataError(f"{path}: recorded as finished but missing or changed; pass --overwrite to "
                                    "write the shards again")
            if mine["finished"]:
                continue
            members: list[tuple[str, bytes]] = []
            held, count, seconds = 0, 0, 0.0

            def close() -> None:
                nonlocal members, held, count, seconds
                if not count:
                    return
                shard = shard_name(name, len(mine["shards"]))
                data = _tar_bytes(members)
                atomic_write(out / shard, lambda f: f.write(data), setting="--out")
                mine["shards"].append(vars(ShardInfo(shard, count, round(seconds, 3), len(data))))
                mine["consumed"], mine["written"] = consumed, mine["written"] + count
                save_progress()
                members, held, count, seconds = [], 0, 0, 0.0

            consumed = mine["consumed"]
            for ex in examples[mine["consumed"]:]:
                try:
                    wave = load_audio(ex.path, sample_rate)
                except AudioError as e:
                    if cfg.on_error == "raise":
                        raise DataError(f"{e}; fix or remove it and run the same command again to continue (the "
                                        "finished shards are kept), or add data.on_error=skip") from None
                    warnings.warn(f"{e}; skipped (data.on_error: skip)", stacklevel=2)
                    state["skipped"].append([name, str(ex.path), e.reason if hasattr(e, "reason") else str(e)])
                    consumed += 1
                    if bar is not None:
                        bar.update()
                    continue
                rate = sample_rate or sf.info(ex.path).samplerate
                audio = _encode(wave, rate, audio_format)
                index = mine["written"] + count
                key = example_key(name, index)
                target = ex.target if not isinstance(ex.target, tuple) else list(ex.target)
                meta = {"target": target, "label": _label(task.name, ex.target, splits.labels), "split": name,
                        "group": ex.group, "duration_s": round(len(wave) / rate, 4), "sample_rate": rate,
                        "index": index, "source": _source(ex, data_root)}
                record = [(f"{key}.{audio_format}", audio), (f"{key}.json", json.dumps(meta).encode())]
                grow = sum(512 + -(-len(d) // 512) * 512 for _, d in record)
                if count and held + grow > size:
                    close()
                members += record
                held, count, seconds = held + grow, count + 1, seconds + len(wave) / rate
                consumed += 1
                if bar is not None:
                    bar.update()
            close()
            mine["consumed"], mine["finished"] = consumed, True
            save_progress()
    finally:
        if bar is not None:
            bar.close()
    index = ShardIndex(dataset, splits.task, list(splits.labels), audio_format,
                       {name: [ShardInfo(**s) for s in state["splits"][name]["shards"]] for name in parts},
                       sample_rate, {"source": {**settings, "created_by": _version()}})
    skipped = [tuple(s) for s in state["skipped"]]
    if skipped:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["split", "path", "reason"])
        w.writerows(skipped)
        atomic_write_text(out / "skipped.csv", buf.getvalue(), setting="--out")
    write_json(index_path, index.to_json(), setting="--out")
    progress_path.unlink()
    return ShardWriteResult(out, index, skipped)


def _label(task: str, target: Any, labels: list[str]) -> Any:
    if task in ("multiclass", "binary"):
        return labels[int(target)] if task == "multiclass" or len(labels) == 2 else str(target)
    if task == "multilabel":
        return [labels[i] for i, on in enumerate(target) if on]
    return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"audiocnn {version('audiocnn')}"
    except PackageNotFoundError:
        return "audiocnn"
