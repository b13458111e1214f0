"""The work behind commands that are more than one library call (``audiocnn summary``); ``cli.py`` parses and
dispatches only."""
from __future__ import annotations

from pathlib import Path

import torch

from audiocnn.build import build_classifier
from audiocnn.config import load_config
from audiocnn.core.errors import ConfigError
from audiocnn.data import DATASETS
from audiocnn.models import create_model, list_models
from audiocnn.models.registry import input_spec
from audiocnn.models.released import RELEASED
from audiocnn.models.summary import format_summary, model_summary
from audiocnn.modalities import modality_of
from audiocnn.tasks import get_task

__all__ = ["summary"]


def summary(target: str, overrides: list[str] | None = None, *, input_shape: str | None = None, num_classes: int = 0,
            batch_size: int = 1, depth: int = 3) -> str:
    """The layer table of a recipe's classifier (front-end included) or of a registered model.

    A recipe needs no data on disk: the label count is ``num_classes``, else the count its dataset declares
    (``synthetic``: ``data.num_classes``; ``folder``/``manifest``: ``data.num_classes`` too).
    """
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        cfg = load_config(target, overrides)
        modality = modality_of(cfg)
        n_labels = num_classes or getattr(DATASETS.get(cfg.data.name), "num_labels", None) or cfg.data.num_classes
        labels = [str(i) for i in range(n_labels)]
        model = build_classifier(cfg, labels)
        example, what = modality.example_input(cfg, model, batch_size)
        outputs = get_task(cfg.data.task).num_outputs(labels)
        title = f"{target}: {cfg.model.name} on {what}, {outputs} outputs, batch {batch_size}"
    else:
        if target not in list_models():
            raise ConfigError(f"{target!r} is neither a recipe file nor a registered model; models: "
                              f"{', '.join(list_models())}")
        spec = input_spec(target)
        if input_shape is None:  # the model's declared example input
            shape = spec.example_shape
        else:
            try:
                shape = tuple(int(s) for s in input_shape.split(","))
            except ValueError:
                raise ConfigError(f"--input-shape {input_shape!r}: give integers, batch,channels,"
                                  f"{'height,width' if spec.dims == 2 else 'time'}") from None
        if len(shape) != spec.dims + 2 and input_shape is not None:
            raise ConfigError(f"--input-shape {input_shape!r}: {target} takes {spec.dims + 2} numbers (batch,channels,"
                              f"{'height,width' if spec.dims == 2 else 'time'}), e.g. "
                              f"{','.join(map(str, spec.example_shape))}")
        default = RELEASED.get(target).num_classes if target in RELEASED else 10  # a released model: its outputs
        model = create_model(target, num_classes=num_classes or default, in_chans=shape[1])
        example = torch.zeros(*shape)
        title = f"{target}: input {'x'.join(map(str, shape))}"
        if input_shape is not None:  # a shape the user chose may not fit the network: say so in one line
            try:
                return format_summary(model_summary(model, example, max_depth=depth), title=title)
            except (RuntimeError, ValueError) as e:
                raise ConfigError(f"--input-shape {input_shape}: {target} cannot take it ({str(e).splitlines()[0]}); "
                                  f"its example input is {','.join(map(str, spec.example_shape))}") from None
    return format_summary(model_summary(model, example, max_depth=depth), title=title)
