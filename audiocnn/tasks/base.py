"""The :class:`Task` interface and the four registered tasks (see the package docstring for the table)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from audiocnn.core.errors import ConfigError, DataError
from audiocnn.core.registry import Registry
from audiocnn.tasks import metrics

__all__ = ["FALSE_STRINGS", "TASKS", "TRUE_STRINGS", "LabelError", "Task", "get_task"]

TRUE_STRINGS = frozenset({"1", "true", "yes", "y", "t", "1.0"})
"""Spellings of a positive flag in label files (multi-hot columns, binary labels)."""
FALSE_STRINGS = frozenset({"0", "false", "no", "n", "f", "0.0", ""})


class LabelError(DataError, ValueError):
    """A raw label that does not fit the task's labels (the dataset reader adds the file and line)."""


class Task:
    """What a task kind decides. Subclasses set the class attributes and override the methods.

    Attributes:
        name: the ``data.task`` value.
        monitor: ``(metrics.csv column, "max" | "min")`` a run tracks when ``trainer.monitor`` is not set.
        classes: whether labels are classes (a confusion matrix and a per-class report exist).
    """

    name: str = ""
    monitor: tuple[str, str] = ("val_loss", "min")
    classes: bool = True

    def num_outputs(self, labels: Sequence[str]) -> int:
        """Logit count: one per class (binary: one), one per target (regression)."""
        return len(labels)

    def encode(self, labels: Sequence[str], raw: Any) -> Any:
        """A raw label to the plain-Python target stored in an ``Example``; ``DataError`` names a bad one."""
        raise NotImplementedError

    def target_tensor(self, target: Any) -> torch.Tensor:
        """An encoded target as the tensor the loss takes."""
        return torch.tensor(np.asarray(target, dtype=np.float32).reshape(-1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> what metrics and predictions use."""
        return logits.float()

    def metrics(self, outputs: np.ndarray, target: np.ndarray, labels: list[str], top_k: int = 3) -> dict[str, float]:
        """Scalar metrics of one split (``{}`` for an empty one)."""
        raise NotImplementedError

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs -> hard predictions: class indices ``(n,)``, or multi-hot ``(n, labels)``."""
        return (outputs >= 0.5).astype(int)

    def report(self, outputs: np.ndarray, target: np.ndarray, labels: list[str]) -> dict:
        """Per-class precision, recall, F1 and support."""
        return metrics.classification_report(self.predict(outputs), target.reshape(-1), list(labels))

    def confusion(self, outputs: np.ndarray, target: np.ndarray, labels: list[str]) -> tuple[list[str], np.ndarray] | None:
        """``(class names, matrix)``, rows true and columns predicted; ``None`` where it has no meaning."""
        return None

    def __repr__(self) -> str:
        return f"Task({self.name!r})"


TASKS: Registry[type[Task]] = Registry("task")


class _ClassLabel(Task):
    """One label per example, a class name or its index."""

    monitor = ("val_accuracy", "max")

    def encode(self, labels: Sequence[str], raw: Any) -> int:
        labels = list(labels)
        if isinstance(raw, (int, np.integer)) and not isinstance(raw, bool) and 0 <= raw < len(labels):
            return int(raw)
        if str(raw) in labels:
            return labels.index(str(raw))
        raise LabelError(f"label {raw!r} is not one of {labels}")


@TASKS.register("multiclass")
class Multiclass(_ClassLabel):
    name = "multiclass"

    def target_tensor(self, target: Any) -> torch.Tensor:
        return torch.tensor(int(target), dtype=torch.int64)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target.long())

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(-1)

    def metrics(self, outputs, target, labels, top_k=3):
        return metrics.multiclass(outputs, target.astype(int), top_k) if len(target) else {}

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.argmax(1)

    def confusion(self, outputs, target, labels):
        return list(labels), metrics.confusion_matrix(self.predict(outputs), target, len(labels))


@TASKS.register("binary")
class Binary(_ClassLabel):
    name = "binary"

    def num_outputs(self, labels: Sequence[str]) -> int:
        return 1

    def target_tensor(self, target: Any) -> torch.Tensor:
        return torch.tensor(float(target), dtype=torch.float32)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float().reshape(-1), target.float().reshape(-1))

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().reshape(-1).sigmoid()

    def metrics(self, outputs, target, labels, top_k=3):
        return metrics.binary(outputs.reshape(-1), target.reshape(-1)) if len(target) else {}

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return (outputs.reshape(-1) >= 0.5).astype(int)

    def report(self, outputs, target, labels):
        return metrics.classification_report(self.predict(outputs), target.reshape(-1), list(labels))

    def confusion(self, outputs, target, labels):
        names = list(labels) if len(labels) == 2 else ["negative", "positive"]
        return names, metrics.confusion_matrix(self.predict(outputs), target.reshape(-1), 2)


@TASKS.register("multilabel")
class Multilabel(Task):
    name = "multilabel"
    monitor = ("val_mAP", "max")

    def encode(self, labels: Sequence[str], raw: Any) -> tuple[int, ...]:
        """Label names, or a multi-hot sequence of ``len(labels)`` 0/1 values."""
        labels, values = list(labels), list(raw)
        flags = TRUE_STRINGS | FALSE_STRINGS
        if len(values) == len(labels) and all(str(v).strip().lower() in flags for v in values) \
                and not set(map(str, values)) <= set(labels):
            return tuple(int(str(v).strip().lower() in TRUE_STRINGS) for v in values)
        hot = [0] * len(labels)
        for name in values:
            if str(name) not in labels:
                raise LabelError(f"label {name!r} is not one of {labels}")
            hot[labels.index(str(name))] = 1
        return tuple(hot)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    def metrics(self, outputs, target, labels, top_k=3):
        return metrics.multilabel(outputs, target) if len(target) else {}

    def report(self, outputs, target, labels):
        return metrics.classification_report(self.predict(outputs), target, list(labels), per_column=True)


@TASKS.register("regression")
class Regression(Task):
    name = "regression"
    monitor = ("val_loss", "min")
    classes = False

    def encode(self, labels: Sequence[str], raw: Any) -> tuple[float, ...]:
        values = [raw] if np.isscalar(raw) else list(raw)
        if len(values) != len(labels):
            raise LabelError(f"expected {len(labels)} regression targets ({list(labels)}), got {values!r}")
        try:
            out = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise LabelError(f"regression targets must be numbers, got {values!r}") from None
        if not all(np.isfinite(out)):
            raise LabelError(f"regression targets must be finite, got {values!r}")
        return out

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits.float(), target.float().reshape(logits.shape))

    def metrics(self, outputs, target, labels, top_k=3):
        return metrics.regression(outputs, target, labels) if len(target) else {}

    def report(self, outputs, target, labels):
        return {}


_INSTANCES: dict[str, Task] = {}


def get_task(name: str | Task) -> Task:
    """The task object for a ``data.task`` value; an unknown name is a ``ConfigError`` naming the choices."""
    if isinstance(name, Task):
        return name
    if name not in _INSTANCES:
        if name not in TASKS:
            raise ConfigError(f"data.task={name!r} is not one of {', '.join(TASKS.names())}")
        _INSTANCES[name] = TASKS.get(name)()
    return _INSTANCES[name]
