"""Metrics per task type on numpy arrays (each :class:`~audiocnn.tasks.Task` calls its own).

Multiclass metrics, the confusion matrix and the per-class report are counted here with NumPy (they run after every
epoch, and importing scikit-learn costs two seconds of start-up); the rest are scikit-learn's, imported when first
needed. tests/test_metrics.py checks the counted ones against scikit-learn.

``outputs`` are what the model's task activation gives: class probabilities ``(n, classes)`` for
multiclass, ``(n,)`` positive-class probabilities for binary, ``(n, labels)`` sigmoid outputs for
multi-label, predictions ``(n, targets)`` for regression.
"""
from __future__ import annotations

import numpy as np

__all__ = ["binary", "classification_report", "confusion_matrix", "multiclass", "multilabel", "regression"]


def multiclass(probs: np.ndarray, target: np.ndarray, top_k: int) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall over the classes present), macro F1 over every class (0 for a
    class never true nor predicted) and, with ``1 < top_k < classes``, top-k accuracy."""
    n_classes = probs.shape[1]
    cm = confusion_matrix(probs.argmax(1), target, n_classes)
    tp, support, predicted = np.diag(cm).astype(np.float64), cm.sum(1), cm.sum(0)
    present = support > 0
    f1_denominator = support + predicted
    f1 = np.divide(2 * tp, f1_denominator, out=np.zeros(n_classes), where=f1_denominator > 0)
    out = {
        "accuracy": float(tp.sum() / max(len(target), 1)),
        "balanced_accuracy": float((tp[present] / support[present]).mean()) if present.any() else float("nan"),
        "macro_f1": float(f1.mean()),
    }
    if 1 < top_k < n_classes:
        topk = np.argsort(-probs, axis=1)[:, :top_k]
        out[f"top{top_k}_accuracy"] = float((topk == target[:, None]).any(1).mean())
    return out


def binary(prob: np.ndarray, target: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    pred = (prob >= 0.5).astype(int)
    target = target.astype(int)
    out = {
        "accuracy": float(skm.accuracy_score(target, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(target, pred)) if len(np.unique(target)) > 1 else float(skm.accuracy_score(target, pred)),
        "f1": float(skm.f1_score(target, pred, zero_division=0)),
    }
    if len(np.unique(target)) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(target, prob))
    return out


def multilabel(prob: np.ndarray, target: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    pred = (prob >= 0.5).astype(int)
    target = target.astype(int)
    has_pos = target.sum(0) > 0
    ap = [skm.average_precision_score(target[:, c], prob[:, c]) for c in np.flatnonzero(has_pos)]
    return {
        "mAP": float(np.mean(ap)) if ap else float("nan"),
        "micro_f1": float(skm.f1_score(target, pred, average="micro", zero_division=0)),
        "macro_f1": float(skm.f1_score(target, pred, average="macro", zero_division=0)),
        "subset_accuracy": float((pred == target).all(1).mean()),
    }


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def regression(pred: np.ndarray, target: np.ndarray, names: list[str]) -> dict[str, float]:
    pred, target = pred.reshape(len(pred), -1), target.reshape(len(target), -1)
    out = {"mse": float(((pred - target) ** 2).mean()), "mae": float(np.abs(pred - target).mean())}
    rs = [_pearson(pred[:, j], target[:, j]) for j in range(target.shape[1])]
    out["pearson"] = float(np.nanmean(rs)) if not np.all(np.isnan(rs)) else float("nan")
    if target.shape[1] > 1:
        for j, name in enumerate(names[: target.shape[1]]):
            out[f"pearson_{name}"] = rs[j]
    return out


def confusion_matrix(pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class, both class indices."""
    pred, target = np.asarray(pred).astype(np.int64).ravel(), np.asarray(target).astype(np.int64).ravel()
    if pred.size and (min(pred.min(), target.min()) < 0 or max(pred.max(), target.max()) >= n_classes):
        raise ValueError(f"class indices must be in [0, {n_classes}), got predictions {pred.min()}..{pred.max()} "
                         f"and targets {target.min()}..{target.max()}")
    return np.bincount(target * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_report(pred: np.ndarray, target: np.ndarray, labels: list[str], *, per_column: bool = False) -> dict:
    """Per-class precision, recall, F1 and support (0 where a ratio has nothing to count). ``per_column``:
    ``pred``/``target`` are multi-hot ``(n, labels)``; else class indices ``(n,)``."""
    if per_column:
        pred, target = pred.astype(bool), target.astype(bool)
        tp, predicted, support = (pred & target).sum(0), pred.sum(0), target.sum(0)
    else:  # counts of the named classes only (a binary task may name one)
        pred, target = pred.astype(np.int64).ravel(), target.astype(np.int64).ravel()
        tp, predicted, support = (np.bincount(x, minlength=len(labels))[:len(labels)]
                                  for x in (target[pred == target], pred, target))

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)

    p, r, f = ratio(tp, predicted), ratio(tp, support), ratio(2 * tp, predicted + support)
    return {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, name in enumerate(labels)}
