"""The one builder: a recipe in, typed calls out.

Below this module nothing takes a whole recipe: front-ends take torchaudio-named keyword arguments, models take
timm-style ones (``num_classes``, ``in_chans``, ``drop_rate``), and each model declares its input contract as
data (:func:`audiocnn.models.registry.input_spec`). Here the recipe's sections become those calls.

Example:
    >>> cfg = load_config("recipes/digits.yaml")
    >>> check_recipe(cfg)                          # before any work: modality, front-end and model settings
    >>> model = build_classifier(cfg, labels)      # waveform (batch, time) -> logits (batch, classes)
"""
from __future__ import annotations

from audiocnn.config import Config
from audiocnn.models import create_model
from audiocnn.models.pretrained import freeze, load_pretrained, read_weights
from audiocnn.models.registry import input_spec
from audiocnn.modalities import Classifier, Modality, modality_of
from audiocnn.tasks import get_task

__all__ = ["build_classifier", "check_recipe", "monitor_of"]


def check_recipe(cfg: Config) -> Modality:
    """Everything that can be checked without data: the modality against the recipe, the task, the model name
    and (for audio) the front-end settings. Returns the recipe's modality.

    Raises:
        ConfigError, DataError, ModelError: naming the key and what to do.
    """
    modality = modality_of(cfg)
    get_task(cfg.data.task)
    input_spec(cfg.model.name)
    modality.input_parts(cfg)  # front-end settings: a ConfigError naming the key
    if cfg.model.pretrained:  # a file that is missing or holds no weights fails before any work
        read_weights(cfg.model.pretrained, model_name=cfg.model.name)
    return modality


def build_classifier(cfg: Config, labels: list[str], *, pretrained: bool = True) -> Classifier:
    """The modality's input pipeline and the network, sized from the pipeline's output.

    Args:
        cfg: a validated recipe.
        labels: class names (regression: target names); the task decides the logit count.
        pretrained: load ``model.pretrained`` (``False`` when a run's checkpoint is loaded next anyway).
    """
    modality = modality_of(cfg)
    parts = modality.input_parts(cfg)
    args = dict(cfg.model.args)
    args.update(modality.network_args(parts, input_spec(cfg.model.name), args))
    args.setdefault("num_classes", get_task(cfg.data.task).num_outputs(labels))
    network = create_model(cfg.model.name, **args)
    if cfg.model.pretrained and pretrained:
        load_pretrained(network, cfg.model.pretrained, model_name=cfg.model.name)
    if cfg.model.freeze != "none":
        freeze(network, cfg.model.freeze)
    return modality.classifier(parts, network)


def monitor_of(cfg: Config) -> tuple[str, str]:
    """``(metric, "max" | "min")`` for the best checkpoint and early stopping: ``trainer.monitor``, else the task's
    own (``val_accuracy``, ``val_mAP``, ``val_loss``); ``trainer.monitor_mode: auto`` takes the task's direction
    for its own metric, ``min`` for losses and errors, else ``max``."""
    tr, (metric, mode) = cfg.trainer, get_task(cfg.data.task).monitor
    if tr.monitor and tr.monitor != metric:
        metric = tr.monitor
        mode = "min" if any(w in metric for w in ("loss", "mse", "mae", "error")) else "max"
    return metric, (mode if tr.monitor_mode == "auto" else tr.monitor_mode)
