"""Decode and resample every file once; later epochs and later runs read float32 arrays, memory-mapped.

A cached array is ``<cache_dir>/<dataset>/sr<rate>/<h[:2]>/<h>.npy`` where ``h`` is a hash of the file's
bytes: editing a file changes its key, so it is decoded again; a copy or a renamed file reuses the array.
Hashing reads each file once per change: ``<dataset>/sr<rate>/index.json`` remembers the hash of every
(absolute path, size, mtime_ns) seen, so an unchanged file is neither re-read nor re-decoded (a file
rewritten with the same size and the same mtime_ns would not be noticed; editors and copies change mtime).
Old entries are never read again and can be deleted with the folder at any time.

Example:
    >>> cache = AudioCache("~/.cache/audiocnn", sample_rate=16000, dataset="fsdd")
    >>> good = prepare(splits.train, cache, on_error="raise", split_name="train")
    >>> cache.load(good[0].path).shape     # no decoding: the array was stored by prepare
    (16000,)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from audiocnn.audio.io import AudioError, load_audio
from audiocnn.data.splits import DataError, Example, Splits
from audiocnn.core.errors import EnvironmentFailure
from audiocnn.core.io import atomic_write
from audiocnn.core.runtime import show_progress

__all__ = ["AudioCache", "prepare", "prepare_splits"]

_HASH_BLOCK = 1 << 20


def content_hash(path: str | os.PathLike) -> str:
    """blake2b-128 of a file's bytes, hex."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


class AudioCache:
    """Decoded, resampled waves keyed by dataset, sample rate and file content.

    Args:
        cache_dir: folder for ``.npy`` files; ``None`` or ``""`` keeps everything in memory only. A folder that
            cannot be written (read-only, disk full) gives one warning, and this process keeps what it decodes
            in memory; entries already there are still read.
        sample_rate: rate every wave is resampled to, in Hz.
        dataset: name of the sub-folder (e.g. ``data.name``), so one dataset's cache can be deleted alone.
        max_open: with a disk cache, how many memory-mapped arrays stay open in this process
            (each holds a file descriptor); older ones are re-mapped on demand, never re-decoded.
        small_bytes: arrays up to this size are read into memory rather than mapped (no descriptor, no
            re-mapping); they are kept up to ``max_bytes`` in all, least recently used first out.

    Attributes:
        decodes: how many files this process decoded (not counting disk or memory hits).
        hashes: how many files this process read to hash their content.
    """

    def __init__(self, cache_dir: str | os.PathLike | None, sample_rate: int, *, dataset: str = "files",
                 max_open: int = 512, small_bytes: int = 4 << 20, max_bytes: int = 4 << 30):
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.dataset = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset or "files").strip(".") or "files"
        root = Path(os.path.expanduser(str(cache_dir))) if cache_dir else None
        self.dir = root / self.dataset / f"sr{self.sample_rate}" if root is not None else None
        self.max_open, self.small_bytes, self.max_bytes = max_open, small_bytes, max_bytes
        self._mapped = 0      # memory-mapped entries held
        self._held = 0        # bytes of in-memory entries held
        self.decodes = 0
        self.hashes = 0
        self._memory: OrderedDict[str, tuple[tuple, np.ndarray]] = OrderedDict()
        self._ids: dict[str, str] | None = None   # "path|size|mtime_ns" -> content hash (index.json)
        self._new_ids = 0
        self._writable = True  # until a write fails: then decoded waves stay in memory (one warning)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AudioCache({str(self.dir) if self.dir else None!r}, sample_rate={self.sample_rate})"

    # DataLoader workers: a disk cache re-maps its files there instead of pickling the arrays
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        if self.dir is not None and self._writable:
            state.update(_memory=OrderedDict(), _mapped=0, _held=0)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def key(self, path: str | os.PathLike) -> tuple:
        """(absolute path, size, mtime_ns, sample rate); raises AudioError when the file is missing."""
        full = os.path.abspath(os.path.expanduser(str(path)))
        try:
            st = os.stat(full)
        except FileNotFoundError:
            raise AudioError(path, "file not found") from None
        except OSError as e:
            raise AudioError(path, f"cannot read the file ({e.strerror})") from None
        return full, st.st_size, st.st_mtime_ns, self.sample_rate

    # -- content ids -----------------------------------------------------------------------------------------

    @property
    def index_file(self) -> Path | None:
        return self.dir / "index.json" if self.dir is not None else None

    def _read_index(self) -> dict[str, str]:
        try:
            ids = json.loads(self.index_file.read_text())
            return {k: v for k, v in ids.items() if isinstance(v, str)} if isinstance(ids, dict) else {}
        except (OSError, ValueError):
            return {}  # absent or damaged: files are hashed again

    def content_id(self, key: tuple) -> str:
        """Hash of the bytes of the file ``key`` names (see :meth:`key`), read only when its stat changed."""
        stat_id = f"{key[0]}|{key[1]}|{key[2]}"
        with self._lock:
            if self._ids is None:
                self._ids = self._read_index()
            found = self._ids.get(stat_id)
        if found is not None:
            return found
        try:
            digest = content_hash(key[0])
        except OSError as e:
            raise AudioError(key[0], f"cannot read the file ({e.strerror})") from None
        with self._lock:
            self.hashes += 1
            self._ids[stat_id] = digest
            self._new_ids += 1
        return digest

    def flush(self) -> None:
        """Write the content ids learnt by this process to ``index.json`` (merged with what is there)."""
        if self.dir is None or not self._new_ids or not self._writable:
            return
        with self._lock:
            merged = {**self._read_index(), **(self._ids or {})}
            self._new_ids = 0
        try:
            atomic_write(self.index_file, lambda f: f.write(json.dumps(merged).encode()))
        except (OSError, EnvironmentFailure) as e:
            warnings.warn(f"cannot write {self.index_file} ({e}); files will be hashed again next time", stacklevel=2)

    def file_for(self, key: tuple) -> Path | None:
        """Where the array for ``key`` is (or would be) stored; None for a memory-only cache."""
        if self.dir is None:
            return None
        h = self.content_id(key)
        return self.dir / h[:2] / f"{h}.npy"

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """The wave of ``path`` at ``sample_rate``: ``(time,)`` float32, read-only (memory-mapped from disk).

        Decodes (``load_audio``) only when neither memory nor disk has an array for the file's content.

        Raises:
            AudioError: the file is missing or cannot be decoded.
        """
        key = self.key(path)
        with self._lock:
            hit = self._memory.get(key[0])
            if hit is not None and hit[0] == key:
                self._memory.move_to_end(key[0])
                return hit[1]
        file = self.file_for(key)
        wave = self._read(file) if file is not None else None
        if wave is None:
            wave = load_audio(path, self.sample_rate)
            with self._lock:
                self.decodes += 1
            if file is not None and self._writable:
                try:
                    atomic_write(file, lambda f: np.save(f, wave, allow_pickle=False), setting="data.cache_dir")
                    mapped = self._read(file)
                    wave = mapped if mapped is not None else wave
                except (OSError, EnvironmentFailure) as e:
                    self._stop_writing(e)
        if wave.flags.writeable:
            wave.flags.writeable = False
        with self._lock:
            old = self._memory.pop(key[0], None)
            if old is not None:
                self._count(old[1], -1)
            self._memory[key[0]] = (key, wave)
            self._count(wave, +1)
            if self.dir is not None and self._writable:  # else memory holds the only copy
                while len(self._memory) > 1 and (self._mapped > self.max_open or self._held > self.max_bytes):
                    self._count(self._memory.popitem(last=False)[1][1], -1)
        return wave

    def _stop_writing(self, error: Exception) -> None:
        """A read-only, full or failing cache folder: one warning, then memory only for this process."""
        with self._lock:
            if not self._writable:
                return
            self._writable = False
        warnings.warn(f"the audio cache {self.dir} cannot be written, so decoded audio is kept in memory for this "
                      f"run instead: {error}", stacklevel=3)

    def _count(self, wave: np.ndarray, sign: int) -> None:
        if isinstance(wave, np.memmap):
            self._mapped += sign
        else:
            self._held += sign * wave.nbytes

    def _read(self, file: Path) -> np.ndarray | None:
        try:
            size = file.stat().st_size
        except OSError:
            return None
        try:  # small arrays are read whole: mapping them costs more (a descriptor each, header parsing)
            wave = np.load(file, mmap_mode=None if size <= self.small_bytes else "r", allow_pickle=False)
        except (OSError, ValueError):
            wave = None
        if wave is None or wave.dtype != np.float32 or wave.ndim != 1:
            try:  # a damaged cache entry is rebuilt, never trusted
                file.unlink(missing_ok=True)
            except OSError:
                pass  # a read-only cache: the wave is decoded again, and kept in memory
            return None
        return wave


def _decode_all(
    examples: Sequence[Example], cache: AudioCache, desc: str, num_threads: int | None
) -> list[AudioError | None]:
    """cache.load every example; per example None or the AudioError it raised."""

    def one(ex: Example) -> AudioError | None:
        try:
            cache.load(ex.path)
        except AudioError as e:
            return e
        return None

    threads = num_threads if num_threads is not None else min(8, os.cpu_count() or 1)
    bar = None
    if show_progress("auto") and examples:
        from tqdm import tqdm

        bar = tqdm(total=len(examples), desc=desc, unit="file", leave=False)
    results: list[AudioError | None] = []
    try:
        if threads <= 1 or len(examples) < 16:
            for ex in examples:
                results.append(one(ex))
                if bar is not None:
                    bar.update()
        else:
            # soundfile and soxr release the GIL, so threads decode in parallel
            with ThreadPoolExecutor(threads) as pool:
                for r in pool.map(one, examples):
                    results.append(r)
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()
        cache.flush()
    return results


def _bad_files_error(bad: list[tuple[str, AudioError]], total: int) -> DataError:
    per = {}
    for name, _ in bad:
        per[name] = per.get(name, 0) + 1
    where = ", ".join(f"{name}: {n}" for name, n in per.items())
    lines = "\n".join(f"  [{name}] {e}" for name, e in bad)
    return DataError(f"{len(bad)} of {total} audio files cannot be used ({where}); nothing was trained:\n{lines}\n"
                     "Fix or remove them, or set data.on_error=skip to skip them.")


def prepare(
    examples: Sequence[Example],
    cache: AudioCache,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    split_name: str = "data",
    num_threads: int | None = None,
) -> list[Example]:
    """Decode every file up front (into ``cache``), before any epoch.

    A progress bar is shown only when stderr is a terminal.

    Args:
        examples: the split's examples.
        cache: where the decoded waves go.
        on_error: ``raise``: one DataError listing every bad file with its reason; ``skip``: one
            warning per bad file, and only the good examples are returned.
        split_name: used in messages (``train``, ``val``...).
        num_threads: decoding threads (default: CPU count, at most 8).

    Returns:
        The usable examples, in order.
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"data.on_error={on_error!r} must be 'raise' or 'skip'")
    errors = _decode_all(examples, cache, f"decode {split_name}", num_threads)
    bad = [(split_name, e) for e in errors if e is not None]
    if bad and on_error == "raise":
        raise _bad_files_error(bad, len(examples))
    for _, e in bad:
        warnings.warn(f"skipping bad {split_name} audio file {e}", stacklevel=2)
    return [ex for ex, e in zip(examples, errors) if e is None]


def prepare_splits(
    splits: Splits,
    cache: AudioCache,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    num_threads: int | None = None,
) -> Splits:
    """:func:`prepare` for train, val and test together: with ``raise``, one DataError lists the bad
    files of all three; with ``skip``, a new Splits without them."""
    if on_error not in ("raise", "skip"):
        raise DataError(f"data.on_error={on_error!r} must be 'raise' or 'skip'")
    if splits.checked:
        return splits
    parts = splits.parts()
    errors = {name: _decode_all(exs, cache, f"decode {name}", num_threads) for name, exs in parts.items()}
    bad = [(name, e) for name, errs in errors.items() for e in errs if e is not None]
    if bad and on_error == "raise":
        raise _bad_files_error(bad, sum(len(x) for x in parts.values()))
    for name, e in bad:
        warnings.warn(f"skipping bad {name} audio file {e}", stacklevel=2)
    good = {name: [ex for ex, e in zip(parts[name], errors[name]) if e is None] for name in parts}
    main = {name: good.pop(name) for name in ("train", "val", "test")}
    skipped = [(name, getattr(e, "path", ""), getattr(e, "reason", str(e))) for name, e in bad]
    return Splits(task=splits.task, labels=list(splits.labels), **main, checked=True, extra=good,
                  skipped=skipped)
