"""Event postprocessing: frame probabilities -> events per file (median filter, threshold, minimum duration) for
all files at once, and the events' onset F-measures (:class:`EventDecoder`)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from audiocnn.hear.frames import Frames
from audiocnn.hear.protocol import parameter_grid
from audiocnn.hear.scores import f_measure_from_counts, onset_true_positives

__all__ = ["EventDecoder"]


class EventDecoder:
    """Frame probabilities of one set of files -> events, and their onset F-measures, for a postprocessing grid.

    Everything that depends only on the files (frame order, median-filter windows, reference onsets) is
    computed here once; :meth:`decode` is then a few tensor operations for all files at once.

    Args:
        frames: the rows (event tasks) to decode.
        labels: the label vocabulary.
        grid: postprocessing grid (``median_filter_ms``, ``min_duration``).
    """

    def __init__(self, frames: Frames, labels: list[str], grid: dict[str, list]):
        assert frames.file is not None and frames.time is not None
        device = frames.x.device
        order = np.lexsort((frames.time, frames.file))
        f, t = frames.file[order], frames.time[order]
        last = np.ones(len(f), bool)              # heareval keys frames by timestamp: a repeated one keeps the last
        last[:-1] = (f[:-1] != f[1:]) | (t[:-1] != t[1:])
        self.rows = torch.as_tensor(order[last], device=device)
        self.file, self.time = f[last], t[last]
        self.n_labels = len(labels)
        self.confs = [tuple(c.items()) for c in parameter_grid(grid)]
        begin = np.flatnonzero(np.r_[True, self.file[1:] != self.file[:-1]])
        self.bounds = list(zip(begin.tolist(), np.r_[begin[1:], len(self.file)].tolist()))
        self.first = np.zeros(len(self.file), bool)
        self.first[begin] = True
        self.last = np.r_[self.first[1:], True]
        self.windows = {ms: self._windows(ms, device) for ms in {dict(c)["median_filter_ms"] for c in self.confs}}
        # reference onsets of the files that have frames (heareval scores those only); key = file x (labels + 1)
        index = {label: i for i, label in enumerate(labels)}
        keys, onsets = [], []
        for fi in np.unique(self.file).tolist():
            for e in frames.events.get(frames.names[fi], []):
                keys.append(fi * (self.n_labels + 1) + index.get(str(e["label"]), self.n_labels))
                onsets.append(e["start"] / 1000.0)
        self.ref_key = np.asarray(keys, np.int64)
        self.ref_onset = np.asarray(onsets, np.float64)

    def _windows(self, median_filter_ms: float, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Indices for a median filter of every file at once: the mirrored-edge sequence ``ext`` and per frame
        its window ``[lo, hi)`` in ``ext`` and the count of active frames that makes the median active."""
        ext, lo, hi, need = [], [], [], []
        at = 0
        for a, b in self.bounds:
            n = b - a
            width = 0
            if median_filter_ms and n > 1:
                width = int(round(median_filter_ms / np.mean(np.diff(self.time[a:b]))))
            width = max(width, 1)
            j = np.arange(-(width // 2), n + width - 1 - width // 2)
            m = np.mod(j, 2 * n)
            ext.append(a + np.where(m < n, m, 2 * n - 1 - m))
            lo.append(at + np.arange(n))
            hi.append(at + np.arange(n) + width)
            need.append(np.full(n, width - width // 2))   # the element of rank width // 2 is > 0.5
            at += n + width - 1
        as_t = lambda parts: torch.as_tensor(np.concatenate(parts), device=device)  # noqa: E731
        return as_t(ext), as_t(lo), as_t(hi), as_t(need)[:, None]

    def decode(self, probs: torch.Tensor) -> dict[tuple, tuple[np.ndarray, ...]]:
        """``(rows, labels)`` probabilities -> per postprocessing setting ``(file, label, start ms, end ms)``."""
        p = probs[self.rows] > 0.5
        out = {}
        active_by_ms = {}
        for conf in self.confs:
            c = dict(conf)
            ms = c["median_filter_ms"]
            if ms not in active_by_ms:
                ext, lo, hi, need = self.windows[ms]
                cum = F.pad(p[ext].to(torch.int32).cumsum(0), (0, 0, 1, 0))
                active = ((cum[hi] - cum[lo]) >= need).cpu().numpy()
                off = np.zeros((1, active.shape[1]), bool)
                before = np.r_[off, active[:-1]] & ~self.first[:, None]   # the previous frame of the same file
                after = np.r_[active[1:], off] & ~self.last[:, None]
                ls, fs = np.nonzero((active & ~before).T)               # runs in (label, frame) order
                _, fe = np.nonzero((active & ~after).T)
                active_by_ms[ms] = (self.file[fs], ls, self.time[fs], self.time[fe])
            fi, label, start, end = active_by_ms[ms]
            keep = end - start >= c["min_duration"]
            out[conf] = (fi[keep], label[keep], start[keep], end[keep])
        return out

    def f_measure(self, events: tuple[np.ndarray, ...], collar: float) -> float:
        """Onset-only F-measure of decoded events against the references (sed_eval's NaN conventions)."""
        fi, label, start, _ = events
        key = fi * (self.n_labels + 1) + label
        tp = onset_true_positives(self.ref_key, self.ref_onset, key, start / 1000.0, collar)
        return f_measure_from_counts(tp, len(key), len(self.ref_key))[0]
