"""Metrics per task type, computed with scikit-learn on numpy arrays (each :class:`~audiocnn.tasks.Task` calls its own).

``outputs`` are what the model's task activation gives: class probabilities ``(n, classes)`` for
multiclass, ``(n,)`` positive-class probabilities for binary, ``(n, labels)`` sigmoid outputs for
multi-label, predictions ``(n, targets)`` for regression.
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

__all__ = ["binary", "classification_report", "confusion_matrix", "multiclass", "multilabel", "regression"]


def multiclass(probs: np.ndarray, target: np.ndarray, top_k: int) -> dict[str, float]:
    pred = probs.argmax(1)
    out = {
        "accuracy": float(skm.accuracy_score(target, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(target, pred)) if len(np.unique(target)) > 1 else float(skm.accuracy_score(target, pred)),
        "macro_f1": float(skm.f1_score(target, pred, average="macro", labels=np.arange(probs.shape[1]), zero_division=0)),
    }
    if 1 < top_k < probs.shape[1]:
        topk = np.argsort(-probs, axis=1)[:, :top_k]
        out[f"top{top_k}_accuracy"] = float((topk == target[:, None]).any(1).mean())
    return out


def binary(prob: np.ndarray, target: np.ndarray) -> dict[str, float]:
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
    return skm.confusion_matrix(target.astype(int), pred.astype(int), labels=np.arange(n_classes))


def classification_report(pred: np.ndarray, target: np.ndarray, labels: list[str], *, per_column: bool = False) -> dict:
    """Per-class precision, recall, F1 and support. ``per_column``: ``pred``/``target`` are multi-hot
    ``(n, labels)``; else class indices ``(n,)``."""
    idx = None if per_column else np.arange(len(labels))
    p, r, f, s = skm.precision_recall_fscore_support(target.astype(int), pred.astype(int), labels=idx, zero_division=0)
    return {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)}
