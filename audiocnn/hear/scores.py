"""HEAR 2021 scores, computed as heareval 2021.1.3 computes them, vectorised on tensors (any device).

Scene scores take ``predictions (n, labels)`` (softmax or sigmoid outputs) and multi-hot ``targets (n, labels)``:

- ``top1_acc`` (alias ``pitch_acc``): argmax of the prediction equals argmax of the target.
- ``chroma_acc``: the same modulo 12 (octave errors forgiven).
- ``mAP``: scikit-learn's ``average_precision_score(targets, predictions, average="macro")``: per-label
  average precision over distinct thresholds (tied scores move together), averaged over labels; a label
  without positives counts as 0, as scikit-learn does.
- ``aucroc``: ``roc_auc_score(..., average="macro")``, the per-label ROC AUC (ties count one half) averaged;
  NaN when some label has only positives or only negatives (heareval's value there).
- ``d_prime``: per label ``sqrt(2) * Phi^-1(AUC)``, averaged (NaN as ``aucroc``).

Event scores compare event lists ``{file: [{"label", "start", "end"}, ...]}`` (milliseconds), as
``sed_eval.sound_event.EventBasedMetrics(evaluate_onset=True, evaluate_offset=False, t_collar=...)`` does with
its default optimal matching, file by file, micro-averaged over all files:

- ``event_onset_200ms_fms`` and ``event_onset_50ms_fms``: an estimated event is a true positive when it has the
  reference's label and its onset lies within the collar (0.2 s, 0.05 s) of the reference onset; each event is
  matched at most once and the matching is maximal. F = 2PR / (P + R) with P = TP / estimated and
  R = TP / reference; as in sed_eval, P is NaN without estimated events (so F is NaN) and R is NaN without
  reference events.

Only the files of the *estimated* dictionary are scored, as heareval does (every file with frames has an entry,
possibly empty).

    >>> top1_acc(torch.tensor([[.9, .1], [.3, .7]]), torch.tensor([[1., 0.], [1., 0.]]))
    0.5
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

__all__ = ["EVENT_SCORES", "SCENE_SCORES", "aucroc", "average_precision", "chroma_acc", "d_prime",
           "f_measure_from_counts", "mean_average_precision", "onset_f_measure", "onset_true_positives", "roc_auc",
           "top1_acc"]

Events = Mapping[str, Sequence[Mapping[str, Any]]]


def _as_tensors(predictions: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.as_tensor(predictions)
    t = torch.as_tensor(targets, device=p.device)
    if p.dim() != 2 or t.shape != p.shape:
        raise ValueError(f"predictions and targets must both be (n, labels), got {tuple(p.shape)} and {tuple(t.shape)}")
    return p, t


def top1_acc(predictions: Any, targets: Any) -> float:
    """Share of rows whose highest prediction is the (first) target label."""
    p, t = _as_tensors(predictions, targets)
    return float((p.argmax(1) == t.argmax(1)).double().mean())


def chroma_acc(predictions: Any, targets: Any) -> float:
    """:func:`top1_acc` with labels compared modulo 12 (pitch classes)."""
    p, t = _as_tensors(predictions, targets)
    return float((p.argmax(1) % 12 == t.argmax(1) % 12).double().mean())


def _ranked(predictions: Any, targets: Any) -> tuple[torch.Tensor, ...]:
    """Per label (rows of the results): sorted scores, targets in that order, and for each sorted position the
    first and one-past-last index of its group of tied scores."""
    p, t = _as_tensors(predictions, targets)
    scores, order = torch.sort(p.T.contiguous().double(), dim=1)
    hits = torch.gather(t.T.double(), 1, order)
    first = torch.searchsorted(scores, scores, right=False)
    last = torch.searchsorted(scores, scores, right=True)
    return scores, hits, first, last


def average_precision(predictions: Any, targets: Any) -> torch.Tensor:
    """``(labels,)`` float64 average precision per label, scikit-learn's definition (0 without positives).

    Over distinct thresholds ``t`` taken from high to low, AP = sum of (recall step) x (precision at ``t``), which
    is the mean over positives ``i`` of ``precision(score >= score_i)``.
    """
    _, hits, first, _ = _ranked(predictions, targets)
    n = hits.shape[1]
    positives = hits.sum(1, keepdim=True)
    cum = torch.nn.functional.pad(hits.cumsum(1), (1, 0))          # positives among the k lowest scores
    tp_at_or_above = positives - cum.gather(1, first)
    precision = tp_at_or_above / (n - first).double()
    ap = (precision * hits).sum(1) / positives.squeeze(1)
    return torch.where(positives.squeeze(1) > 0, ap, torch.zeros_like(ap))


def mean_average_precision(predictions: Any, targets: Any) -> float:
    """Macro mean of :func:`average_precision`."""
    return float(average_precision(predictions, targets).mean())


def roc_auc(predictions: Any, targets: Any) -> torch.Tensor:
    """``(labels,)`` float64 ROC AUC per label (Mann-Whitney with ties as one half); NaN for a label with only
    positives or only negatives."""
    _, hits, first, last = _ranked(predictions, targets)
    n = hits.shape[1]
    positives = hits.sum(1)
    negatives = n - positives
    ranks = (first + last + 1).double() / 2                          # 1-based ranks, ties averaged
    u = (ranks * hits).sum(1) - positives * (positives + 1) / 2
    auc = u / (positives * negatives)
    return torch.where((positives > 0) & (negatives > 0), auc, torch.full_like(auc, float("nan")))


def aucroc(predictions: Any, targets: Any) -> float:
    """Macro mean of :func:`roc_auc` (NaN if any label's AUC is undefined)."""
    return float(roc_auc(predictions, targets).mean())


def d_prime(predictions: Any, targets: Any) -> float:
    """Mean over labels of ``sqrt(2) * Phi^-1(AUC)`` = ``2 * erfinv(2 AUC - 1)``."""
    auc = roc_auc(predictions, targets)
    return float((2 * torch.erfinv(2 * auc - 1)).mean())


SCENE_SCORES: dict[str, Callable[[Any, Any], float]] = {
    "top1_acc": top1_acc, "pitch_acc": top1_acc, "chroma_acc": chroma_acc,
    "mAP": mean_average_precision, "d_prime": d_prime, "aucroc": aucroc,
}
"""heareval score name -> function of ``(predictions, targets)``."""


# --- events --------------------------------------------------------------------------------------------------------

def onset_true_positives(ref_key: np.ndarray, ref_onset: np.ndarray, est_key: np.ndarray, est_onset: np.ndarray,
                         collar: float) -> int:
    """Size of a maximum matching between reference and estimated events.

    Args:
        ref_key / est_key: ``(n,)`` integers; only events with equal keys (same file and label) can match.
        ref_onset / est_onset: ``(n,)`` onsets in seconds; a pair matches when ``|ref - est| <= collar``.
        collar: seconds.

    Within one key every reference accepts the estimates in a window ``[onset - collar, onset + collar]`` whose
    ends grow with the onset, so walking both lists in onset order and pairing the first compatible pair is
    a maximum matching (the count sed_eval's Hopcroft-Karp matching gives).
    """
    ro = np.lexsort((ref_onset, ref_key))
    eo = np.lexsort((est_onset, est_key))
    rk, rt = ref_key[ro].tolist(), ref_onset[ro].tolist()
    ek, et = est_key[eo].tolist(), est_onset[eo].tolist()
    i = j = tp = 0
    while i < len(rk) and j < len(ek):
        if rk[i] != ek[j]:
            if rk[i] < ek[j]:
                i += 1
            else:
                j += 1
        elif math.fabs(rt[i] - et[j]) <= collar:
            tp, i, j = tp + 1, i + 1, j + 1
        elif rt[i] > et[j]:
            j += 1
        else:
            i += 1
    return tp


def f_measure_from_counts(tp: int, n_est: int, n_ref: int) -> tuple[float, float, float]:
    """``(f_measure, precision, recall)`` with sed_eval's conventions for empty lists (NaN)."""
    precision = tp / n_est if n_est else float("nan")
    recall = tp / n_ref if n_ref else float("nan")
    if precision == 0 and recall == 0:
        return 0.0, precision, recall
    return 2 * precision * recall / (precision + recall), precision, recall


def _event_arrays(events: Events, files: dict[str, int], labels: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(key, onset seconds)`` of the events of ``files``; key = file index x labels + label index."""
    keys, onsets = [], []
    for name, file_events in events.items():
        if name in files:
            for e in file_events:
                keys.append(files[name] * len(labels) + labels[str(e["label"])])
                onsets.append(e["start"] / 1000.0)
    return np.asarray(keys, np.int64), np.asarray(onsets, np.float64)


def onset_f_measure(reference: Events, estimated: Events, *, collar: float) -> tuple[float, float, float]:
    """Onset-only event F-measure over the files of ``estimated``: ``(f_measure, precision, recall)``.

    Args:
        reference / estimated: ``{file: [{"label", "start", "end"}, ...]}``, times in milliseconds.
        collar: seconds (0.2 for ``event_onset_200ms_fms``).
    """
    files = {name: i for i, name in enumerate(estimated)}
    names = {str(e["label"]) for events in (reference, estimated) for name, file_events in events.items()
             if name in files for e in file_events}
    labels = {label: i for i, label in enumerate(sorted(names))}
    est_key, est_t = _event_arrays(estimated, files, labels)
    ref_key, ref_t = _event_arrays(reference, files, labels)
    tp = onset_true_positives(ref_key, ref_t, est_key, est_t, collar)
    return f_measure_from_counts(tp, len(est_key), len(ref_key))


EVENT_SCORES: dict[str, float] = {"event_onset_200ms_fms": 0.2, "event_onset_50ms_fms": 0.05}
"""heareval event score name -> onset collar in seconds."""
