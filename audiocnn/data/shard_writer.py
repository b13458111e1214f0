"""Write a dataset as WebDataset shards: ``audiocnn data shard DATASET --out DIR``.

Any registered audio dataset (built-ins, ``folder``, ``manifest`` with ``data.manifest=...``) is read with
:func:`~audiocnn.data.datasets.build_splits` and written in the layout of :mod:`audiocnn.data.shard_format`:
one set of ``<split>-NNNNNN.tar`` per split, each example a ``<key>.flac`` (16-bit, clipped to [-1, 1]) or
``<key>.wav`` (float32) member followed by ``<key>.json``, and ``index.json`` written last. Clips are mono as
:func:`~audiocnn.audio.io.load_audio` gives them, at each file's own rate unless ``--sample-rate`` resamples.

Usage::

    audiocnn data shard fsdd --root data/fsdd --out shards/fsdd
    audiocnn data shard manifest data.manifest=clips.csv data.task=multilabel --out shards/clips \\
        --shard-size 1GB --sample-rate 16000
    audiocnn data shard folder data.on_error=skip --root my_clips --out shards/mine --format wav

    >>> result = write_shards("fsdd", "shards/fsdd", root="data/fsdd")
    >>> print(result.summary())
    fsdd: train 1600 examples in 1 shard (703.1 s), val 200 examples in 1 shard (...), ... -> shards/fsdd/index.json

Every file is decoded once before anything is written, so with ``data.on_error=raise`` (the default) the bad
files are listed and nothing is written; with ``data.on_error=skip`` they are left out and listed in
``DIR/skipped.csv``. A shard is closed before an example would take it past ``--shard-size`` (a shard holds at
least one example). Tars are deterministic (members in order, mtime 0, uid/gid 0, no user names, mode 0644):
sharding twice gives the same bytes.

Resuming: each shard is written under a temporary name and renamed when complete, and ``DIR/.progress.json``
records the completed shards; running the same command again after an interruption keeps them and goes on.
A folder holding a finished ``index.json``, or the progress of other settings, is refused unless
``--overwrite`` (``overwrite=True``), which starts again.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import struct
import tarfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf

from audiocnn import __version__
from audiocnn.audio.io import AudioError, load_audio
from audiocnn.config import DataConfig, config_to_dict, data_config
from audiocnn.core.errors import ConfigError
from audiocnn.core.io import atomic_file, atomic_write_text, check_writable, make_dirs, write_json
from audiocnn.core.runtime import show_progress
from audiocnn.data.datasets import build_splits, dataset_modality, default_root
from audiocnn.data.shard_format import AUDIO_FORMATS, INDEX_FILE, ShardIndex, ShardInfo, example_key, shard_name
from audiocnn.data.splits import DataError, Example

__all__ = ["DEFAULT_SHARD_SIZE", "PROGRESS_FILE", "SKIPPED_FILE", "ShardWriteResult", "parse_size", "write_shards"]

DEFAULT_SHARD_SIZE = 256_000_000
PROGRESS_FILE = ".progress.json"
SKIPPED_FILE = "skipped.csv"
_SETTING = "--out"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # no dots: WebDataset groups members by the name before the first one
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_LOADER_ONLY = ("cache_dir", "batch_size", "num_workers")
"""DataConfig fields that change how a trainer loads the data, not which examples it holds."""


def parse_size(text: str | int) -> int:
    """Bytes from ``256MB``, ``1.5GB``, ``500KB`` (powers of 1000), ``64MiB`` (powers of 1024) or plain bytes.

    Raises:
        ValueError: not a positive size, with the accepted forms.
    """
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"{text!r} is not a size; write e.g. 256MB, 1.5GB, 500KB, 64MiB or a number of bytes")
        value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ValueError(f"{text!r}: a shard size must be positive")
    return value


@dataclass
class ShardWriteResult:
    """What :func:`write_shards` wrote: the index, where, the files left out, the time taken."""

    out: Path
    index: ShardIndex
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_shards: int = 0
    """Shards an interrupted run had completed, kept as they were."""

    def summary(self) -> str:
        """One line: dataset, per split examples, shards and seconds of audio, the index file."""
        parts = []
        for split, shards in self.index.splits.items():
            n = len(shards)
            parts.append(f"{split} {self.index.examples(split)} examples in {n} shard{'' if n == 1 else 's'} "
                         f"({self.index.duration_s(split):.1f} s)")
        left = f", {len(self.skipped)} skipped (see {self.out / SKIPPED_FILE})" if self.skipped else ""
        return f"{self.index.dataset}: {', '.join(parts)}{left} -> {self.out / INDEX_FILE}"


# ---------------------------------------------------------------------------------------------
# members


def _float_wav(wave: np.ndarray, sample_rate: int) -> bytes:
    """Mono IEEE-float WAV bytes. libsndfile stamps the time into the PEAK chunk of float WAVs, so two runs
    would differ; this header has none (fmt, fact, data)."""
    data = np.ascontiguousarray(wave, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHHH", 3, 1, sample_rate, 4 * sample_rate, 4, 32, 0)
    fact = struct.pack("<I", len(wave))
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4) + fact
            + b"data" + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _flac(wave: np.ndarray, sample_rate: int) -> bytes:
    """16-bit FLAC bytes of ``wave`` clipped to [-1, 1]. Quantised here (x * 32768, rounded) so decoding
    (v / 32768) gives back a 16-bit source exactly and anything else within 1/32768."""
    q = np.clip(np.round(np.clip(wave, -1.0, 1.0) * 32768.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, q, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _jsonable_target(target: Any) -> Any:
    if isinstance(target, (tuple, list, np.ndarray)):
        return [_jsonable_target(t) for t in target]
    if isinstance(target, (bool, np.bool_)):
        return int(target)
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, (float, np.floating)):
        return float(target)
    return target


def _label(task: str, labels: list[str], target: Any) -> Any:
    if task in ("multiclass", "binary"):
        return labels[int(target)]
    if task == "multilabel":
        return [name for name, on in zip(labels, target) if on]
    return None


def _member(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _TarShard:
    """One shard being written: a deterministic tar streamed into a temporary sibling of ``path``."""

    FORMAT = tarfile.PAX_FORMAT

    def __init__(self, path: Path):
        self.path = path
        self.examples = 0
        self.duration_s = 0.0
        self._file_cm = atomic_file(path, setting=_SETTING)
        self._file = self._file_cm.__enter__()
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=self.FORMAT)
        self._open = True

    def size_with(self, members: Sequence[tuple[str, bytes]]) -> int:
        """The shard's size on disk if it were closed after also holding ``members``."""
        size = self._tar.offset
        for name, data in members:
            header = len(_member(name, data).tobuf(self.FORMAT, self._tar.encoding, self._tar.errors))
            size += header + -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        size += 2 * tarfile.BLOCKSIZE  # the end-of-archive blocks; tarfile then pads to whole records
        return -(-size // tarfile.RECORDSIZE) * tarfile.RECORDSIZE

    def add(self, members: Sequence[tuple[str, bytes]], duration_s: float) -> None:
        for name, data in members:
            self._tar.addfile(_member(name, data), io.BytesIO(data))
        self.examples += 1
        self.duration_s += duration_s

    def close(self) -> ShardInfo:
        self._tar.close()
        self._open = False
        self._file_cm.__exit__(None, None, None)  # fsync, rename onto the shard's name
        return ShardInfo(self.path.name, self.examples, round(self.duration_s, 3), self.path.stat().st_size)

    def abort(self, exc: BaseException) -> None:
        """Remove the temporary file, so nothing named like a shard is half written; a full disk or a
        read-only folder comes out as :class:`~audiocnn.core.io.WriteFailure`."""
        if self._open:
            self._open = False
            self._file_cm.__exit__(type(exc), exc, exc.__traceback__)


# ---------------------------------------------------------------------------------------------
# the dataset


def _dataset_root(cfg: DataConfig) -> Path:
    if cfg.name == "manifest" and cfg.manifest:
        return Path(os.path.expanduser(cfg.manifest)).parent
    return Path(os.path.expanduser(cfg.root)) if cfg.root else default_root(cfg.name)


def _source(path: str, root: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.name


def _check_files(parts: dict[str, list[Example]], progress: str) -> dict[str, list[AudioError | None]]:
    """Decode every file once (threads: soundfile releases the GIL): per split, per example, its error or None."""

    def one(ex: Example) -> AudioError | None:
        try:
            load_audio(ex.path)
        except AudioError as e:
            return e
        return None

    total = sum(len(v) for v in parts.values())
    bar = None
    if show_progress(progress) and total:
        from tqdm import tqdm  # only with a bar

        bar = tqdm(total=total, desc="check", unit="file", leave=False)
    out: dict[str, list[AudioError | None]] = {}
    try:
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            for split, examples in parts.items():
                out[split] = []
                for r in pool.map(one, examples):
                    out[split].append(r)
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()
    return out


def _bad_files_error(bad: list[tuple[str, AudioError]], total: int, out: Path) -> DataError:
    per: dict[str, int] = {}
    for split, _ in bad:
        per[split] = per.get(split, 0) + 1
    where = ", ".join(f"{split}: {n}" for split, n in per.items())
    lines = "\n".join(f"  [{split}] {e}" for split, e in bad)
    return DataError(f"{len(bad)} of {total} audio files cannot be used ({where}); nothing was written to {out}:\n"
                     f"{lines}\nFix or remove them, or pass data.on_error=skip to leave them out "
                     f"(listed in {out / SKIPPED_FILE}).")


def _fingerprint(parts: dict[str, list[Example]]) -> str:
    """What the shards hold, example by example: a rerun whose files differ must not continue old shards."""
    h = hashlib.sha256()
    for split, examples in parts.items():
        for ex in examples:
            h.update(json.dumps([split, ex.path, _jsonable_target(ex.target), ex.group]).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# the folder: progress, old files


def _our_files(out: Path) -> list[Path]:
    """Files in ``out`` this writer makes: shards, their temporaries, the index, progress, skipped list."""
    if not out.is_dir():
        return []
    tar = re.compile(r"^\.?[A-Za-z0-9_-]+-\d{6}\.tar(\..+\.tmp)?$")
    return sorted(p for p in out.iterdir() if p.is_file() and (
        tar.match(p.name) or p.name in (INDEX_FILE, PROGRESS_FILE, SKIPPED_FILE)))


def _read_progress(out: Path) -> dict | None:
    path = out / PROGRESS_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("splits"), dict):
            raise ValueError("not a progress record")
        return raw
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable progress of an interrupted `audiocnn data shard` ({e}); pass "
                        "--overwrite (overwrite=True) to start again") from None


def _kept_shards(out: Path, record: dict) -> list[ShardInfo]:
    """The recorded shards of one split still on disk with their recorded size, up to the first that is not."""
    kept = []
    for s in record.get("shards", []):
        info = ShardInfo(str(s["name"]), int(s["examples"]), float(s["duration_s"]), int(s["bytes"]))
        path = out / info.name
        if not (path.is_file() and path.stat().st_size == info.bytes):
            break
        kept.append(info)
    return kept


# ---------------------------------------------------------------------------------------------


def write_shards(
    dataset: str,
    out: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    shard_size: int | str = DEFAULT_SHARD_SIZE,
    audio_format: str = "flac",
    sample_rate: int | None = None,
    overwrite: bool = False,
    progress: str = "auto",
) -> ShardWriteResult:
    """Write the splits of ``dataset`` as WebDataset shards and ``index.json`` into ``out``.

    Args:
        dataset: a registered audio dataset (``fsdd``, ``folder``, ``manifest`` ...).
        out: the shard folder (made if missing).
        root: the dataset's folder (``data.root``; default ``${AUDIOCNN_DATA:-data}/<dataset>``).
        overrides: ``data.*`` settings, e.g. ``["data.manifest=clips.csv", "data.on_error=skip"]``.
        shard_size: the most bytes per tar (a bigger single example gets a shard of its own); an int or a
            size such as ``"256MB"``, ``"64MiB"``.
        audio_format: ``flac`` (16-bit) or ``wav`` (float32).
        sample_rate: resample every clip to this rate (Hz); ``None`` keeps each file's rate.
        overwrite: start again in a folder holding shards, an index or the progress of other settings.
        progress: ``auto`` (a bar on a terminal), ``always`` or ``never``.

    Returns:
        A :class:`ShardWriteResult`; ``summary()`` is the line the command prints.

    Raises:
        ConfigError: a bad argument or ``data.*`` override.
        DataError: an unknown or image dataset, missing files, bad audio files (``data.on_error=raise``), a
            folder holding an index or other settings' progress without ``overwrite``.
        WriteFailure: ``out`` is read-only or its disk is full.
    """
    start = time.perf_counter()
    try:
        size_limit = parse_size(shard_size)
    except ValueError as e:
        raise ConfigError(f"shard_size (--shard-size): {e}") from None
    if audio_format not in AUDIO_FORMATS:
        raise ConfigError(f"audio_format (--format) {audio_format!r} must be one of {', '.join(AUDIO_FORMATS)}")
    if sample_rate is not None and not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise ConfigError(f"sample_rate (--sample-rate) {sample_rate!r} must be a positive number of Hz, or None")
    if progress not in ("auto", "always", "never"):
        raise ConfigError(f"progress {progress!r} must be auto, always or never")
    cfg = data_config(dataset, None if root is None else str(root), overrides, command="data shard")
    out = Path(os.path.expanduser(str(out)))
    if (out / INDEX_FILE).is_file() and not overwrite:  # before reading the dataset, which may take a while
        raise DataError(f"{out}: already holds a finished shard set ({INDEX_FILE}); pass --overwrite "
                        "(overwrite=True) to write it again, or choose another --out folder")
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give a folder for the shards")
    if dataset_modality(cfg.name) != "audio":
        raise DataError(f"data shard writes audio datasets; {cfg.name!r} is an image dataset")
    check_writable(out, setting=_SETTING)

    data_root = _dataset_root(cfg)
    settings = {"dataset": cfg.name, "data": {k: v for k, v in config_to_dict(cfg).items() if k not in _LOADER_ONLY},
                "shard_size": size_limit, "audio_format": audio_format, "sample_rate": sample_rate}
    settings = json.loads(json.dumps(settings))  # as it reads back from the progress file
    state = None if overwrite else _read_progress(out)
    if state is not None and state.get("settings") != settings:
        raise DataError(f"{out}: holds an interrupted `audiocnn data shard` with other settings "
                        f"({_settings_diff(state.get('settings'), settings)}); rerun with the same settings to "
                        "continue it, or pass --overwrite (overwrite=True) to start again")

    splits = build_splits(cfg)
    parts = splits.parts()
    for split in parts:
        if not _SPLIT_NAME.match(split):
            raise DataError(f"dataset {cfg.name!r}: split name {split!r} cannot name shards; use letters, digits, "
                            "'_' and '-'")
    errors = _check_files(parts, progress)
    bad = [(split, e) for split, errs in errors.items() for e in errs if e is not None]
    if bad and cfg.on_error == "raise":
        raise _bad_files_error(bad, sum(len(v) for v in parts.values()), out)
    parts = {split: [ex for ex, e in zip(parts[split], errors[split]) if e is None] for split in parts}
    skipped = [(split, e.path, e.reason) for split, e in bad]
    if not parts["train"]:
        raise DataError(f"dataset {cfg.name!r} at {data_root}: no usable training examples left; "
                        "fix the audio files or check data.root")
    fingerprint = _fingerprint(parts)
    if state is not None and state.get("fingerprint") != fingerprint:
        raise DataError(f"{out}: the interrupted `audiocnn data shard` there was made from other files (the "
                        "dataset's files or usable examples changed since); pass --overwrite (overwrite=True) to "
                        "start again")

    if overwrite:
        for p in _our_files(out):
            p.unlink()
    make_dirs(out, setting=_SETTING)
    for p in out.glob(".*.tar.*.tmp"):  # a killed run's unfinished shard
        p.unlink()
    if skipped:
        atomic_write_text(out / SKIPPED_FILE, _csv(skipped), setting=_SETTING)
        listing = "\n".join(f"  [{s}] {p}: {r}" for s, p, r in skipped[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        warnings.warn(f"data.on_error=skip: left out {len(skipped)} bad audio file(s), listed in "
                      f"{out / SKIPPED_FILE}:\n{listing}{more}", stacklevel=2)
    else:
        (out / SKIPPED_FILE).unlink(missing_ok=True)

    writer = _Writer(out, splits.task, list(splits.labels), audio_format, sample_rate, size_limit, data_root,
                     {"settings": settings, "fingerprint": fingerprint, "splits": {}})
    resumed = writer.resume(state, parts)
    writer.write(parts, progress)

    index = ShardIndex(dataset=cfg.name, task=splits.task, labels=list(splits.labels), audio_format=audio_format,
                       splits=writer.done, sample_rate=sample_rate,
                       extra={"source": {"dataset": cfg.name, "root": str(data_root.resolve()),
                                         "overrides": list(overrides), "shard_size": size_limit,
                                         "created_by": f"audiocnn {__version__}"}})
    write_json(out / INDEX_FILE, index.to_json(), setting=_SETTING)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return ShardWriteResult(out, index, skipped, time.perf_counter() - start, resumed)


def _settings_diff(old: Any, new: dict) -> str:
    if not isinstance(old, dict):
        return "unrecorded"
    flat_old, flat_new = _flatten(old), _flatten(new)
    keys = [k for k in sorted(set(flat_old) | set(flat_new)) if flat_old.get(k) != flat_new.get(k)]
    return ", ".join(f"{k}: {flat_old.get(k)!r} then, {flat_new.get(k)!r} now" for k in keys[:5]) or "unknown"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _csv(rows: list[tuple[str, str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["split", "path", "reason"])
    w.writerows(rows)
    return buf.getvalue()


class _Writer:
    """Writes the shards of every split in order, recording each completed shard in the progress file."""

    def __init__(self, out: Path, task: str, labels: list[str], audio_format: str, sample_rate: int | None,
                 shard_size: int, data_root: Path, progress: dict):
        self.out, self.task, self.labels = out, task, labels
        self.audio_format, self.sample_rate, self.shard_size = audio_format, sample_rate, shard_size
        self.data_root = data_root
        self.progress = progress
        self.done: dict[str, list[ShardInfo]] = {}

    def resume(self, state: dict | None, parts: dict[str, list[Example]]) -> int:
        """Take over the completed shards an interrupted run recorded; how many were kept."""
        for split in parts:
            record = (state or {}).get("splits", {}).get(split)
            self.done[split] = _kept_shards(self.out, record) if record else []
        return sum(len(v) for v in self.done.values())

    def write(self, parts: dict[str, list[Example]], progress: str) -> None:
        total = sum(len(v) for v in parts.values())
        covered = {split: sum(s.examples for s in self.done[split]) for split in parts}
        bar = None
        if show_progress(progress) and total:
            from tqdm import tqdm  # only with a bar

            bar = tqdm(total=total, initial=sum(covered.values()), desc="shard", unit="clip", leave=False)
        try:
            for split, examples in parts.items():
                self._split(split, examples, covered[split], bar)
        finally:
            if bar is not None:
                bar.close()

    def _split(self, split: str, examples: list[Example], first: int, bar: Any) -> None:
        shard: _TarShard | None = None
        try:
            for i in range(first, len(examples)):
                members, duration = self._example(split, i, examples[i])
                if shard is not None and shard.size_with(members) > self.shard_size:
                    self._finish(split, shard)
                    shard = None
                if shard is None:
                    shard = _TarShard(self.out / shard_name(split, len(self.done[split])))
                shard.add(members, duration)
                if bar is not None:
                    bar.update()
            if shard is not None:
                self._finish(split, shard)
                shard = None
        except BaseException as e:
            if shard is not None:
                shard.abort(e)
            raise
        self._record(split)

    def _finish(self, split: str, shard: _TarShard) -> None:
        self.done[split].append(shard.close())
        self._record(split)

    def _record(self, split: str) -> None:
        shards = self.done[split]
        self.progress["splits"][split] = {"shards": [vars(s) for s in shards],
                                          "covered": sum(s.examples for s in shards)}
        write_json(self.out / PROGRESS_FILE, self.progress, setting=_SETTING)

    def _example(self, split: str, index: int, ex: Example) -> tuple[list[tuple[str, bytes]], float]:
        try:
            wave = load_audio(ex.path, self.sample_rate)
            rate = self.sample_rate or sf.info(ex.path).samplerate
        except (AudioError, RuntimeError) as e:
            raise DataError(f"{e}: the file was readable when checked before writing and is not now; nothing "
                            f"of the unfinished shard was kept in {self.out}; fix the file and rerun to continue") \
                from None
        key = example_key(split, index)
        duration = len(wave) / rate
        audio = _flac(wave, rate) if self.audio_format == "flac" else _float_wav(wave, rate)
        meta = {"target": _jsonable_target(ex.target), "label": _label(self.task, self.labels, ex.target),
                "split": split, "group": ex.group, "duration_s": round(duration, 6), "sample_rate": int(rate),
                "index": index, "source": _source(ex.path, self.data_root)}
        return [(f"{key}.{self.audio_format}", audio), (f"{key}.json", json.dumps(meta).encode())], duration
