"""Metrics per task type, computed with scikit-learn on numpy arrays.

``outputs`` are what the model's task activation gives: class probabilities ``(n, classes)`` for
multiclass, ``(n,)`` positive-class probabilities for binary, ``(n, labels)`` sigmoid outputs for
multi-label, predictions ``(n, targets)`` for regression.
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

__all__ = ["classification_report", "compute_metrics", "confusion_matrix"]


def _multiclass(probs: np.ndarray, target: np.ndarray, top_k: int) -> dict[str, float]:
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


def _binary(prob: np.ndarray, target: np.ndarray) -> dict[str, float]:
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


def _multilabel(prob: np.ndarray, target: np.ndarray) -> dict[str, float]:
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


def _regression(pred: np.ndarray, target: np.ndarray, names: list[str]) -> dict[str, float]:
    pred, target = pred.reshape(len(pred), -1), target.reshape(len(target), -1)
    out = {"mse": float(((pred - target) ** 2).mean()), "mae": float(np.abs(pred - target).mean())}
    rs = [_pearson(pred[:, j], target[:, j]) for j in range(target.shape[1])]
    out["pearson"] = float(np.nanmean(rs)) if not np.all(np.isnan(rs)) else float("nan")
    if target.shape[1] > 1:
        for j, name in enumerate(names[: target.shape[1]]):
            out[f"pearson_{name}"] = rs[j]
    return out


def compute_metrics(task: str, outputs: np.ndarray, target: np.ndarray, labels: list[str], top_k: int = 3) -> dict[str, float]:
    """Scalar metrics for one split. See the module docstring for the shapes."""
    if len(target) == 0:
        return {}
    if task == "multiclass":
        return _multiclass(outputs, target.astype(int), top_k)
    if task == "binary":
        return _binary(outputs.reshape(-1), target.reshape(-1))
    if task == "multilabel":
        return _multilabel(outputs, target)
    if task == "regression":
        return _regression(outputs, target, labels)
    raise ValueError(f"unknown task {task!r}")


def confusion_matrix(task: str, outputs: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class (multiclass and binary)."""
    if task == "binary":
        pred, target, n_classes = (outputs.reshape(-1) >= 0.5).astype(int), target.reshape(-1).astype(int), 2
    else:
        pred, target = outputs.argmax(1), target.astype(int)
    return skm.confusion_matrix(target, pred, labels=np.arange(n_classes))


def classification_report(task: str, outputs: np.ndarray, target: np.ndarray, labels: list[str]) -> dict:
    """Per-class precision, recall, F1 and support (multiclass, binary, multi-label)."""
    if task == "regression":
        return {}
    if task == "multilabel":
        pred, y = (outputs >= 0.5).astype(int), target.astype(int)
    elif task == "binary":
        pred, y = (outputs.reshape(-1) >= 0.5).astype(int), target.reshape(-1).astype(int)
    else:
        pred, y = outputs.argmax(1), target.astype(int)
    idx = None if task == "multilabel" else np.arange(len(labels))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    return {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)}
