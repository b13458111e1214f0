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

import dataclasses
from pathlib import Path

from audiocnn.config import Config
from audiocnn.core.errors import ConfigError
from audiocnn.features import FrontendSettings
from audiocnn.models import create_model
from audiocnn.models.pretrained import PretrainedError, freeze, load_pretrained, read_weights
from audiocnn.models.registry import input_spec
from audiocnn.models.released import RELEASED, Released, released
from audiocnn.modalities import AudioClassifier, Classifier, Modality, modality_of
from audiocnn.tasks import get_task

__all__ = ["build_classifier", "build_released", "check_recipe", "monitor_of"]


def check_recipe(cfg: Config) -> Modality:
    """Everything that can be checked without data: the modality against the recipe, the task, the model name
    and (for audio) the front-end settings. Returns the recipe's modality.

    Raises:
        ConfigError, DataError, ModelError: naming the key and what to do.
    """
    modality = modality_of(cfg)
    get_task(cfg.data.task)
    input_spec(cfg.model.name)
    if cfg.model.pretrained and cfg.model.name in RELEASED:  # before the generic front-end checks: says more
        _check_released_input(cfg, released(cfg.model.name))
    modality.input_parts(cfg)  # front-end settings: a ConfigError naming the key
    if cfg.model.pretrained:  # a file that is missing or holds no weights fails before any work
        read_weights(cfg.model.pretrained, model_name=cfg.model.name)
    return modality


def _check_released_input(cfg: Config, entry: Released) -> None:
    """A released model's weights fit only the front-end they were trained with: the recipe must spell it out."""
    want = dataclasses.asdict(entry.frontend)
    have = dataclasses.asdict(FrontendSettings.of(cfg.frontend))
    for d in (want, have):  # no win_length means n_fft
        d["win_length"] = d["win_length"] or d["n_fft"]
    wrong = [f"frontend.{k}={have[k]!r} (needs {v!r})" for k, v in want.items() if k != "backend" and have[k] != v]
    if cfg.data.sample_rate != entry.sample_rate:
        wrong.insert(0, f"data.sample_rate={cfg.data.sample_rate} (needs {entry.sample_rate})")
    if wrong:
        raise ConfigError(f"model.pretrained: {cfg.model.name}'s weights were trained on another input: "
                          f"{', '.join(wrong)}")


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


def build_released(name: str, weights: str | Path | None) -> tuple[AudioClassifier, Released]:
    """A released model (:data:`audiocnn.models.released.RELEASED`) with its own front-end, in eval mode:
    waveform ``(batch, time)`` at ``entry.sample_rate`` -> logits ``(batch, entry.num_classes)``.

    Args:
        name: a released model (``panns_cnn14`` ...).
        weights: its checkpoint file (the official layout or a state dict in audiocnn's names); ``None`` keeps
            the random initialisation (layer tables).

    Raises:
        UnknownNameError: not a released model. PretrainedError: a file that does not fit, or one fine-tuned to
            another label set (its head would be dropped).
    """
    entry = released(name)
    frontend = entry.frontend.build(entry.sample_rate)
    size = (1, frontend.n_features, frontend.num_frames(int(entry.clip_s * entry.sample_rate)))
    network = create_model(name, num_classes=entry.num_classes, input_size=size)
    if weights is not None:
        info = load_pretrained(network, weights, model_name=name)
        if info["replaced_head"]:
            raise PretrainedError(f"{weights}: its head has another class count than {name}'s {entry.num_classes} "
                                  "outputs (a fine-tuned file); train from it with model.pretrained, or use the "
                                  "run folder it came from")
    return AudioClassifier(frontend, network).eval(), entry


def monitor_of(cfg: Config) -> tuple[str, str]:
    """``(metric, "max" | "min")`` for the best checkpoint and early stopping: ``trainer.monitor``, else the task's
    own (``val_accuracy``, ``val_mAP``, ``val_loss``); ``trainer.monitor_mode: auto`` takes the task's direction
    for its own metric, ``min`` for losses and errors, else ``max``."""
    tr, (metric, mode) = cfg.trainer, get_task(cfg.data.task).monitor
    if tr.monitor and tr.monitor != metric:
        metric = tr.monitor
        mode = "min" if any(w in metric for w in ("loss", "mse", "mae", "error")) else "max"
    return metric, (mode if tr.monitor_mode == "auto" else tr.monitor_mode)
