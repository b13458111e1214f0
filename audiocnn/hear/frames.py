"""The rows of one or more splits as tensors on the device (:class:`Frames`): embeddings, multi-hot targets and,
for event tasks, each row's file and timestamp with the files' reference events."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from audiocnn.hear.embeddings import EmbeddedSplit, HearEvalError

__all__ = ["Frames"]


@dataclass
class Frames:
    """Rows of one or more splits on the device.

    Attributes:
        x: ``(n, dim)`` float32 embeddings.
        y: ``(n, labels)`` float32 multi-hot targets.
        file / time: event tasks: per row, a file index into ``names`` and the timestamp (ms).
        names: event tasks: file names.
        events: event tasks: the reference events per file (from ``{split}.json``).
    """

    x: torch.Tensor
    y: torch.Tensor
    file: np.ndarray | None = None
    time: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    events: dict[str, list] = field(default_factory=dict)

    @staticmethod
    def cat(parts: list[Frames]) -> Frames:
        if len(parts) == 1:
            return parts[0]
        out = Frames(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
        if parts[0].file is not None:
            offsets = np.cumsum([0] + [len(p.names) for p in parts[:-1]])
            out.file = np.concatenate([p.file + o for p, o in zip(parts, offsets)])
            out.time = np.concatenate([p.time for p in parts])
            out.names = [n for p in parts for n in p.names]
            out.events = {k: v for p in parts for k, v in p.events.items()}
        return out


def split_frames(split: EmbeddedSplit, label_index: dict[str, int], events: dict[str, list] | None, where: str,
            device: torch.device) -> Frames:
    y = np.zeros((len(split.labels), len(label_index)), np.float32)
    for i, labels in enumerate(split.labels):
        for label in labels:
            if label not in label_index:
                raise HearEvalError(f"{where}: label {label!r} is not in labelvocabulary.csv")
            y[i, label_index[label]] = 1.0
    if not np.isfinite(split.x).all():
        raise HearEvalError(f"{where}: the embeddings hold NaN or Inf; check the model")
    out = Frames(torch.from_numpy(split.x).to(device), torch.from_numpy(y).to(device))
    if split.files is not None:
        names = list(dict.fromkeys(split.files))
        index = {n: i for i, n in enumerate(names)}
        out.file = np.asarray([index[f] for f in split.files], np.int64)
        out.time = split.timestamps
        out.names = names
        out.events = dict(events or {})
    return out
