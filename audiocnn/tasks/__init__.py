"""Task types as objects: each owns its target encoding, loss, output activation, metrics and default monitor.

==============  ====================  ===================  ============================  ================
task            logits                loss                 outputs (for metrics)         monitor
==============  ====================  ===================  ============================  ================
multiclass      (batch, classes)      cross-entropy        softmax probabilities         val_accuracy max
binary          (batch, 1)            BCE with logits      sigmoid probability (batch,)  val_accuracy max
multilabel      (batch, labels)       BCE with logits      sigmoid probabilities         val_mAP max
regression      (batch, targets)      mean squared error   the logits themselves         val_loss min
==============  ====================  ===================  ============================  ================

Activations live here, not inside the model, so models always return logits. ``TASKS`` is the one list of task
kinds; data, the engine, evaluation and HEAR scoring all ask it.

Example:
    >>> task = get_task("multilabel")
    >>> task.encode(["dog", "cat", "rain"], ["rain", "dog"])
    (1, 0, 1)
    >>> task.monitor
    ('val_mAP', 'max')
"""
from audiocnn.tasks.base import FALSE_STRINGS, TASKS, TRUE_STRINGS, Task, get_task

__all__ = ["FALSE_STRINGS", "TASKS", "TRUE_STRINGS", "Task", "get_task"]
