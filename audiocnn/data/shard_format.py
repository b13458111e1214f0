"""The shard layout ``audiocnn data shard`` writes and ``data.name: shards`` reads: one definition for both.

A shard set is a folder (or the same files behind a ``file://`` or ``http(s)://`` URL)::

    index.json                  what is where (below)
    train-000000.tar ...        WebDataset tars, one per ~shard size, per split
    val-000000.tar, test-000000.tar

Each example is two consecutive tar members with the same key (``<split>-<index:07d>``, no dots, as WebDataset
groups members by the name before the first dot):

    train-0000042.flac          the clip, mono, compressed (or ``.wav``, float32)
    train-0000042.json          {"target": ..., "label": ..., "split": "train", "group": "speaker_3",
                                 "duration_s": 0.61, "sample_rate": 8000, "index": 42, "source": "3_jackson_12.wav"}

``target`` is the encoded target of :class:`audiocnn.data.Example` (class index, multi-hot list, ...);
``index`` is the example's position in its split, which seeds its random crops as a file's index does.

``index.json``::

    {"format": "audiocnn-shards", "version": 1, "dataset": "fsdd", "task": "multiclass", "labels": [...],
     "audio_format": "flac", "sample_rate": null,
     "splits": {"train": {"examples": 1600, "duration_s": 703.1,
                          "shards": [{"name": "train-000000.tar", "examples": 512, "duration_s": 224.9,
                                      "bytes": 8123904}, ...]}, ...}}

``sample_rate`` is the rate every clip was resampled to when sharding, or ``null`` for each file's own rate.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from audiocnn.core.errors import DataError

__all__ = ["AUDIO_FORMATS", "FORMAT", "INDEX_FILE", "VERSION", "ShardIndex", "ShardInfo", "example_key",
           "parse_index", "shard_name"]

FORMAT = "audiocnn-shards"
VERSION = 1
INDEX_FILE = "index.json"
AUDIO_FORMATS = ("flac", "wav")
"""Audio member extensions: ``flac`` (16-bit, lossless for 16-bit sources) or ``wav`` (float32)."""


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}.tar"


def example_key(split: str, index: int) -> str:
    return f"{split}-{index:07d}"


@dataclass(frozen=True)
class ShardInfo:
    """One tar of a split: its file name (relative to the shard set), example count, seconds of audio, size."""

    name: str
    examples: int
    duration_s: float = 0.0
    bytes: int = 0


@dataclass
class ShardIndex:
    """A parsed ``index.json``: ``splits`` maps a split name to its shards, in order."""

    dataset: str
    task: str
    labels: list[str]
    audio_format: str
    splits: dict[str, list[ShardInfo]]
    sample_rate: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def examples(self, split: str) -> int:
        return sum(s.examples for s in self.splits.get(split, []))

    def duration_s(self, split: str) -> float:
        return sum(s.duration_s for s in self.splits.get(split, []))

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "dataset": self.dataset, "task": self.task,
                "labels": list(self.labels), "audio_format": self.audio_format, "sample_rate": self.sample_rate,
                "splits": {name: {"examples": self.examples(name), "duration_s": round(self.duration_s(name), 3),
                                  "shards": [vars(s) for s in shards]} for name, shards in self.splits.items()},
                **self.extra}


def parse_index(text: str | bytes, where: str) -> ShardIndex:
    """An ``index.json``'s text as a :class:`ShardIndex`; a DataError naming ``where`` when it is not one."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{where}: not a shard index (not JSON: {e}); write one with `audiocnn data shard`") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError(f"{where}: not an audiocnn shard index (no \"format\": \"{FORMAT}\"); write one with "
                        "`audiocnn data shard`")
    if raw.get("version") != VERSION:
        raise DataError(f"{where}: shard index version {raw.get('version')!r}; this audiocnn reads version {VERSION}")
    try:
        splits = {name: [ShardInfo(str(s["name"]), int(s["examples"]), float(s.get("duration_s", 0.0)),
                                   int(s.get("bytes", 0))) for s in part["shards"]]
                  for name, part in raw["splits"].items()}
        known = {"format", "version", "dataset", "task", "labels", "audio_format", "sample_rate", "splits"}
        index = ShardIndex(str(raw["dataset"]), str(raw["task"]), [str(x) for x in raw["labels"]],
                           str(raw["audio_format"]), splits, raw.get("sample_rate"),
                           {k: v for k, v in raw.items() if k not in known})
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}: shard index is missing or mangles a field ({type(e).__name__}: {e}); "
                        "write it again with `audiocnn data shard`") from None
    if index.audio_format not in AUDIO_FORMATS:
        raise DataError(f"{where}: audio_format {index.audio_format!r} is not one of {', '.join(AUDIO_FORMATS)}")
    for name, shards in index.splits.items():
        for s in shards:
            if "/" in s.name or "\\" in s.name or s.name.startswith("."):
                raise DataError(f"{where}: shard name {s.name!r} in split {name!r} must be a plain file name")
    return index
