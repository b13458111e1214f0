"""``data.name: shards``: train from WebDataset tar shards on a disk or behind a URL, without a decoded cache.

    data:
      name: shards
      root: http://storage:8000/fsdd          # or a folder, file:///..., or a brace pattern of several sets
      streams: 8                              # 0: processes x loader workers, fixed when the run starts
      shuffle_buffer: 1000

The shards are what ``audiocnn data shard`` writes (:mod:`audiocnn.data.shard_format`); ``root`` holds their
``index.json``. A brace pattern (``http://host{1,2}/audioset``, ``/data/part-{00..19}``, as WebDataset expands
them) names several shard sets with the same task and labels, read as one.

The training order of an epoch is a function of ``(trainer.seed, epoch, data.streams)`` only, never of the
number of processes or loader workers:

1. The training shards are shuffled with ``(seed, epoch)``; their examples, in that order, are cut into
   ``streams`` equal contiguous ranges (the last ``n mod streams`` examples wait for another epoch). A stream
   opens only the shards its range covers, so together the streams read each shard about once.
2. Each stream passes its range through a shuffle buffer of ``shuffle_buffer`` examples (compressed bytes; the
   buffer is seeded by ``(seed, epoch, stream)``) and cuts it into chunks of ``batch_size / streams`` clips.
3. Step ``k``'s global batch is chunk ``k`` of every stream. With ``P`` processes, process ``r`` runs streams
   ``r * streams / P ...``; its loader workers share those streams round-robin, so the DataLoader's in-order
   round-robin over workers hands it chunk ``k`` of each of its streams in turn. Every example of the epoch is
   seen once, by one process and one worker, and a run with ``P`` processes takes the same batches as one.

Decoding (and resampling to ``data.sample_rate``) happens in the loader workers, after the shuffle buffer, so
an example skipped on resume is never decoded. A resumed run (``trainer.checkpoint_every_steps`` saves mid-epoch)
skips the steps already taken: each stream replays its shuffle and drops its first ``step`` chunks.

Validation and test splits are read in index order; process ``r`` takes examples ``r, r + P, ...`` (the order
:meth:`~audiocnn.engine.distributed.DistContext.gather_clips` joins) and its workers decode alternate batches.
The normaliser is fitted on the first ``data.fit_examples`` training examples in index order.

A bad example (audio that does not decode) follows ``data.on_error``: ``raise`` stops with the shard and key;
``skip`` warns and puts a copy of a good clip of the same chunk in its place, so every process still takes the
same number of steps.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import braceexpand
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_iterator

from audiocnn.audio.crop import fix_length, sliding_windows
from audiocnn.audio.io import AudioError, decode_audio
from audiocnn.data.datasets import register_dataset
from audiocnn.data.loader import Batch, collate
from audiocnn.data.shard_format import AUDIO_FORMATS, INDEX_FILE, ShardInfo, example_key, parse_index
from audiocnn.data.splits import DataError, Example, Splits
from audiocnn.tasks import get_task

__all__ = ["ShardSet", "ShardLoader", "load_shards", "open_location", "shard_loaders", "shard_set_of"]

HTTP_TIMEOUT_S = 60.0
"""How long a read from an ``http(s)://`` shard may stall before the run stops with the URL."""


# --- locations ------------------------------------------------------------------------------------------------------

def _is_url(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in ("http", "https", "file")


def join(base: str, name: str) -> str:
    """``base/name`` for a folder or a URL."""
    return base.rstrip("/") + "/" + name if _is_url(base) else str(Path(base) / name)


def open_location(location: str) -> BinaryIO:
    """A readable binary stream of a path, ``file://`` or ``http(s)://`` URL; a DataError naming it otherwise."""
    parts = urllib.parse.urlsplit(location)
    try:
        if parts.scheme in ("http", "https"):
            return urllib.request.urlopen(location, timeout=HTTP_TIMEOUT_S)  # noqa: S310 (http(s) only)
        path = urllib.request.url2pathname(parts.path) if parts.scheme == "file" else os.path.expanduser(location)
        return open(path, "rb")
    except urllib.error.HTTPError as e:
        raise DataError(f"{location}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DataError(f"{location}: cannot connect ({e.reason}); is the server up and data.root right?") from None
    except FileNotFoundError:
        raise DataError(f"{location}: not found; data.root must hold {INDEX_FILE} and the shards "
                        "(write them with `audiocnn data shard`)") from None
    except OSError as e:
        raise DataError(f"{location}: cannot read ({e.strerror or e})") from None


def _read(location: str) -> bytes:
    with open_location(location) as f:
        try:
            return f.read()
        except OSError as e:
            raise DataError(f"{location}: the read failed ({e})") from None


# --- the shard set --------------------------------------------------------------------------------------------------

@dataclass
class ShardSet:
    """One or more shard sets read as one: ``splits[name]`` is a list of ``(url, ShardInfo)`` in index order."""

    root: str
    task: str
    labels: list[str]
    splits: dict[str, list[tuple[str, ShardInfo]]]

    def examples(self, split: str) -> int:
        return sum(info.examples for _, info in self.splits.get(split, []))


def load_shards(root: str) -> ShardSet:
    """Read ``index.json`` of ``root`` (each set of a brace pattern) and check that the sets agree."""
    if not root:
        raise DataError("data.name=shards needs data.root: the folder or URL that holds index.json "
                        "(written by `audiocnn data shard`)")
    bases = list(braceexpand.braceexpand(root))
    task, labels, splits = None, None, {}
    for base in bases:
        where = join(base, INDEX_FILE)
        index = parse_index(_read(where), where)
        if task is None:
            task, labels = index.task, index.labels
        elif (index.task, index.labels) != (task, labels):
            raise DataError(f"{where}: task {index.task!r} with {len(index.labels)} labels does not match "
                            f"{join(bases[0], INDEX_FILE)} (task {task!r}, {len(labels)} labels); a brace pattern "
                            "must name shard sets of one dataset")
        for name, shards in index.splits.items():
            splits.setdefault(name, []).extend((join(base, s.name), s) for s in shards)
    return ShardSet(root, task, labels, splits)


class _ShardExamples(Sequence):
    """The examples of one split as :class:`Example` rows named ``<shard url>#<key>``, made on demand (a split
    of millions is never held as a list). The writer numbers a split's examples consecutively across its
    shards, so a row needs the index alone."""

    def __init__(self, shards: list[tuple[str, ShardInfo]], split: str):
        self.shards, self.split = shards, split
        self.ends = np.cumsum([info.examples for _, info in shards]) if shards else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        s = int(np.searchsorted(self.ends, i, side="right"))
        return Example(f"{self.shards[s][0]}#{example_key(self.split, i)}", None)


def shard_set_of(splits: Splits, root: str) -> ShardSet:
    """The shard set behind splits built by the ``shards`` dataset (their rows hold the shard lists)."""
    return ShardSet(root, splits.task, list(splits.labels),
                    {name: rows.shards for name, rows in splits.parts().items() if isinstance(rows, _ShardExamples)})


@register_dataset("shards")
def shards_dataset(cfg: Any) -> Splits:
    """``data.root``'s shard sets as splits of named rows (the audio stays in the shards)."""
    shard_set = load_shards(cfg.root)
    parts = {name: _ShardExamples(shard_set.splits.get(name, []), name) for name in ("train", "val", "test")}
    return Splits(shard_set.task, shard_set.labels, **parts)


# --- reading examples -----------------------------------------------------------------------------------------------

@dataclass
class _Raw:
    """One example as read from its shard, before decoding."""

    url: str
    key: str
    audio: bytes
    meta: dict


def _samples(url: str, *, skip: int = 0, take: int | None = None) -> Iterator[_Raw]:
    """Examples of one shard in order (the first ``skip`` left undecoded; at most ``take``), with webdataset's
    tar iteration and key grouping."""
    if take is not None and take <= 0:
        return
    stream = open_location(url)
    try:
        files = ({**f, "__url__": url} for f in tar_file_iterator(stream))
        n = 0
        for i, sample in enumerate(group_by_keys(files)):
            if i < skip:
                continue
            key = sample["__key__"]
            audio = next((sample[ext] for ext in AUDIO_FORMATS if ext in sample), None)
            if audio is None or "json" not in sample:
                raise DataError(f"{url}: example {key!r} lacks its audio ({'/'.join(AUDIO_FORMATS)}) or json "
                                "member; write the shards again with `audiocnn data shard`")
            try:
                meta = json.loads(sample["json"])
            except ValueError as e:
                raise DataError(f"{url}: example {key!r} has a json member that is not JSON ({e})") from None
            yield _Raw(url, key, audio, meta)
            n += 1
            if take is not None and n >= take:
                return
    except (OSError, EOFError) as e:  # a truncated tar or a connection that broke mid-shard
        raise DataError(f"{url}: reading the shard failed ({type(e).__name__}: {e})") from None
    finally:
        stream.close()


def _range(shards: list[tuple[str, ShardInfo]], start: int, stop: int) -> Iterator[_Raw]:
    """Examples ``start:stop`` of the concatenated shards, opening only the shards that overlap."""
    pos = 0
    for url, info in shards:
        lo, hi = pos, pos + info.examples
        pos = hi
        if hi <= start or lo >= stop:
            continue
        yield from _samples(url, skip=max(start - lo, 0), take=min(stop, hi) - max(start, lo))


class _Decoder:
    """Shard bytes -> ``(wave, target)`` at the recipe's rate and crop; bad audio as ``data.on_error`` says."""

    def __init__(self, cfg: Any, task: str, *, mode: str, seed: int):
        self.sample_rate = cfg.sample_rate
        self.num_samples = max(1, int(round(cfg.duration * cfg.sample_rate)))
        self.hop = max(1, int(round(cfg.window_hop * cfg.sample_rate)))
        self.mode, self.seed, self.on_error = mode, seed, cfg.on_error
        self.task = get_task(task)

    def __call__(self, raw: _Raw, epoch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            wave = decode_audio(raw.audio, self.sample_rate, name=f"{raw.url}#{raw.key}")
        except AudioError as e:
            if self.on_error == "raise":
                raise DataError(f"{e}; set data.on_error=skip to train without it") from None
            warnings.warn(f"{e}; skipped (data.on_error: skip), a clip of the same batch takes its place",
                          stacklevel=2)
            return None
        if self.mode == "train":
            rng = np.random.default_rng([self.seed, int(epoch), int(raw.meta.get("index", 0))])
            cut = fix_length(wave, self.num_samples, mode="random", rng=rng)
        elif self.mode == "center":
            cut = fix_length(wave, self.num_samples, mode="center")
        else:
            cut = sliding_windows(wave, self.num_samples, self.hop)
        return torch.from_numpy(np.ascontiguousarray(cut)), self.task.target_tensor(raw.meta["target"])


def _decode_all(decode: _Decoder, raws: list[_Raw], epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    items = [decode(r, epoch) for r in raws]
    good = [x for x in items if x is not None]
    if not good:
        raise DataError(f"none of {len(raws)} examples from {raws[0].url} ({raws[0].key}...) decodes; "
                        "check the shards")
    return [x if x is not None else good[0] for x in items]


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


# --- training: streams of chunks ------------------------------------------------------------------------------------

class _TrainStreams(IterableDataset):
    """Chunks ``(waves (chunk, T), targets (chunk, ...))`` of this process's streams (see the module docstring),
    per step one chunk of each stream in turn; a worker takes every ``num_workers``-th of them."""

    def __init__(self, shards: list[tuple[str, ShardInfo]], decode: _Decoder, *, streams: int, chunk: int,
                 buffer: int, seed: int, mine: Sequence[int]):
        self.shards, self.decode = shards, decode
        self.streams, self.chunk, self.buffer, self.seed = streams, chunk, buffer, seed
        self.mine = list(mine)
        self.epoch, self.start_step = 0, 0
        n = sum(info.examples for _, info in shards)
        self.length = n // streams            # examples per stream
        self.steps = self.length // chunk     # chunks per stream

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> list[tuple[str, ShardInfo]]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        return [self.shards[i] for i in perm]

    def _stream(self, order, s: int) -> Iterator[list[_Raw]]:
        """Stream ``s``'s chunks of raw examples, after its shuffle buffer (the caller takes ``steps`` of them)."""
        rng = np.random.default_rng([self.seed, self.epoch, s, 1])
        buf: list[_Raw] = []
        out: list[_Raw] = []

        def shuffled() -> Iterator[_Raw]:
            for raw in _range(order, s * self.length, (s + 1) * self.length):
                if len(buf) < self.buffer:
                    buf.append(raw)
                    continue
                j = int(rng.integers(len(buf)))
                buf[j], raw = raw, buf[j]
                yield raw
            for j in rng.permutation(len(buf)):
                yield buf[j]

        for raw in shuffled():
            out.append(raw)
            if len(out) == self.chunk:
                yield out
                out = []

    def __iter__(self):
        w, nw = _worker()
        order = self._order()
        mine = self.mine[w::nw]
        streams = [self._stream(order, s) for s in mine]
        for step in range(self.steps):
            for it in streams:
                raws = next(it)
                if step < self.start_step:
                    continue
                items = _decode_all(self.decode, raws, self.epoch)
                yield torch.stack([x for x, _ in items]), torch.stack([t for _, t in items])


# --- evaluation: in index order -------------------------------------------------------------------------------------

class _InOrder(IterableDataset):
    """Collated batches of examples ``rank, rank + world_size, ...`` (at most ``limit`` in all) of a split in
    index order; worker ``w`` of ``n`` decodes batches ``w, w + n, ...``."""

    def __init__(self, shards: list[tuple[str, ShardInfo]], decode: _Decoder, *, batch_size: int, rank: int = 0,
                 world_size: int = 1, limit: int | None = None):
        self.shards, self.decode, self.batch_size = shards, decode, batch_size
        self.rank, self.world_size = rank, world_size
        total = sum(info.examples for _, info in shards)
        self.total = total if limit is None else min(total, limit)
        self.count = len(range(rank, self.total, world_size))
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __iter__(self):
        w, nw = _worker()
        batch: list[_Raw] = []
        k = 0
        for pos, raw in enumerate(_range(self.shards, 0, self.total)):
            if pos % self.world_size != self.rank:
                continue
            batch.append(raw)
            if len(batch) == self.batch_size:
                if k % nw == w:
                    yield collate(_decode_all(self.decode, batch, self.epoch))
                batch, k = [], k + 1
        if batch and k % nw == w:
            yield collate(_decode_all(self.decode, batch, self.epoch))


# --- the loader the engine sees -------------------------------------------------------------------------------------

class ShardLoader:
    """What the engine takes from a loader (``len``, iteration of :class:`Batch`, ``dataset.set_epoch``,
    ``generator``), over shards; :meth:`for_rank` makes one process's share, :meth:`start_at` a resumed epoch."""

    def __init__(self, shard_set: ShardSet, split: str, cfg: Any, *, seed: int, train: bool, rank: int = 0,
                 world_size: int = 1, limit: int | None = None):
        self.shard_set, self.split, self.cfg, self.seed, self.train = shard_set, split, cfg, seed, train
        self.rank, self.world_size, self.limit = rank, world_size, limit
        self.generator = torch.Generator().manual_seed(seed)  # checkpointed as any loader's; shards draw from seeds
        shards = shard_set.splits.get(split, [])
        mode = "train" if train else cfg.eval_crop if limit is None else "center"
        decode = _Decoder(cfg, shard_set.task, mode=mode, seed=seed)
        if train:
            streams = cfg.streams or world_size * max(cfg.num_workers, 1)
            if streams % world_size or (streams // world_size) % max(cfg.num_workers, 1):
                raise DataError(f"data.streams={streams} must be a multiple of the processes x loader workers "
                                f"({world_size} x {max(cfg.num_workers, 1)}); set data.streams to such a multiple")
            if cfg.batch_size % streams:
                raise DataError(f"data.batch_size={cfg.batch_size} must be a multiple of data.streams={streams} (each "
                                "stream gives batch_size / streams clips a step)")
            per = streams // world_size
            self.per_rank = per
            self.dataset = _TrainStreams(shards, decode, streams=streams, chunk=cfg.batch_size // streams,
                                         buffer=cfg.shuffle_buffer, seed=seed, mine=range(rank * per, (rank + 1) * per))
            if self.dataset.steps == 0:
                raise DataError(f"{shard_set.root}: {shard_set.examples(split)} training examples make no step of "
                                f"data.batch_size={cfg.batch_size} over data.streams={streams} streams; lower them")
        else:
            local = max(1, cfg.batch_size // world_size)
            self.dataset = _InOrder(shards, decode, batch_size=local, rank=rank, world_size=world_size, limit=limit)
        self.dataset.examples = _ShardExamples(shards, split)  # names for predictions and reports
        self.collate_fn = collate
        self._decode = decode

    def ordered_view(self) -> "ShardLoader":
        """The split in index order, unshuffled and uncropped at random (what a report looks through)."""
        return self if not self.train else ShardLoader(self.shard_set, self.split, self.cfg, seed=self.seed,
                                                       train=False, rank=self.rank, world_size=self.world_size)

    def item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Example ``index`` of the split, ``(wave, target)`` as this loader cuts it (reads into its shard)."""
        raw = next(_range(self.shard_set.splits.get(self.split, []), index, index + 1), None)
        if raw is None:
            raise IndexError(f"{self.split} has {self.shard_set.examples(self.split)} examples, not {index + 1}")
        return _decode_all(self._decode, [raw], 0)[0]

    def __len__(self) -> int:
        return self.dataset.steps if self.train else len(self.dataset)

    def for_rank(self, rank: int, world_size: int) -> "ShardLoader":
        if self.cfg.batch_size % world_size:
            raise DataError(f"data.batch_size={self.cfg.batch_size} is the global batch and must divide evenly "
                            f"among {world_size} processes; choose a multiple of {world_size}")
        return ShardLoader(self.shard_set, self.split, self.cfg, seed=self.seed, train=self.train, rank=rank,
                           world_size=world_size, limit=self.limit)

    def start_at(self, step: int) -> None:
        """The next pass begins at ``step`` (a resumed epoch); later passes from the start."""
        self.dataset.start_step = int(step)

    def _loader(self) -> DataLoader:
        # workers are made for each pass (no persistent workers): they must see this epoch's set_epoch
        return DataLoader(self.dataset, batch_size=None, num_workers=self.cfg.num_workers,
                          pin_memory=torch.cuda.is_available())

    def __iter__(self) -> Iterator[Batch]:
        if not self.train:
            yield from self._loader()
            return
        chunks = iter(self._loader())
        try:
            while True:
                parts = [next(chunks) for _ in range(self.per_rank)]
                waves = torch.cat([w for w, _ in parts])
                yield Batch(waves, torch.cat([t for _, t in parts]), torch.arange(len(waves)))
        except StopIteration:
            pass
        finally:
            self.dataset.start_step = 0


def shard_loaders(cfg: Any, shard_set: ShardSet, *, seed: int) -> dict[str, ShardLoader]:
    """Loaders of the non-empty splits of one process (:meth:`ShardLoader.for_rank` shares them out)."""
    if not shard_set.examples("train"):
        raise DataError(f"{shard_set.root}: the shard index lists no training examples")
    return {name: ShardLoader(shard_set, name, cfg, seed=seed, train=name == "train")
            for name in ("train", "val", "test") if shard_set.examples(name)}


def fit_loader(cfg: Any, shard_set: ShardSet, *, seed: int) -> ShardLoader:
    """The first ``data.fit_examples`` training examples in index order, centre crops: for the normaliser."""
    return ShardLoader(shard_set, "train", cfg, seed=seed, train=False, limit=cfg.fit_examples)
