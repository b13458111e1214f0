"""Task types: the loss, the output activation and the metrics that go with each.

==============  ====================  ===================  ============================
task            logits                loss                 outputs (for metrics)
==============  ====================  ===================  ============================
multiclass      (batch, classes)      cross-entropy        softmax probabilities
binary          (batch, 1)            BCE with logits      sigmoid probability (batch,)
multilabel      (batch, labels)       BCE with logits      sigmoid probabilities
regression      (batch, targets)      mean squared error   the logits themselves
==============  ====================  ===================  ============================

Activations live here, not inside the model, so models always return logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["TASKS", "task_loss", "task_outputs", "default_monitor"]

TASKS = ("multiclass", "binary", "multilabel", "regression")


def task_loss(task: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    if task == "multiclass":
        return F.cross_entropy(logits, target.long())
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), target.float().reshape(-1))
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, target.float())
    if task == "regression":
        return F.mse_loss(logits, target.float().reshape(logits.shape))
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def task_outputs(task: str, logits: torch.Tensor) -> torch.Tensor:
    """Logits -> what metrics and predictions use (see the table above)."""
    logits = logits.float()
    if task == "multiclass":
        return logits.softmax(-1)
    if task == "binary":
        return logits.reshape(-1).sigmoid()
    if task == "multilabel":
        return logits.sigmoid()
    return logits


def default_monitor(task: str) -> tuple[str, str]:
    """The validation metric a recipe that names none should track, and its direction."""
    return {"multiclass": ("val_accuracy", "max"), "binary": ("val_accuracy", "max"),
            "multilabel": ("val_mAP", "max"), "regression": ("val_mse", "min")}[task]
