"""Evaluation and prediction: metrics, confusion matrices, per-class reports, top-k predictions."""
from audiocnn.evaluation.metrics import classification_report, compute_metrics, confusion_matrix

__all__ = ["classification_report", "compute_metrics", "confusion_matrix"]
