"""Released (pretrained) audio models as data: which network, which exact front-end, which labels.

A row of :data:`RELEASED` says everything the pretrained verbs need to run a released checkpoint without a recipe
(``audiocnn predict NAME --weights W``, ``audiocnn embed NAME --weights W``, ``hear-eval``, ``summary``):

- ``name``: a registered model (:func:`~audiocnn.models.create_model`) whose weights the file holds; the file is
  read by :func:`~audiocnn.models.pretrained.load_pretrained` through that model's reference layout;
- ``sample_rate`` and ``frontend``: the front-end the weights were trained with (:class:`FrontendSettings`);
- ``labels`` (a label file shipped in ``audiocnn/models/labels/``) and ``task`` (``multilabel``: sigmoid
  outputs, ``multiclass``: softmax);
- ``clip_s``: the clip length the tagger was trained on (longer files are cut into such windows and the
  outputs averaged); ``embed_window_s`` / ``embed_hop_s``: the windows ``embed`` and HEAR take;
- ``embedding``: which vector ``embed`` and HEAR return, ``embedding_dim`` wide: ``pre_logits`` (the head's hidden
  layer, PANNs' ``fc1``) or ``pooled`` (the globally pooled last feature map, as EfficientAT's own HEAR wrapper).

A family file registers its rows with :func:`register_released` (``panns.py``: ``panns_cnn6`` ...;
``efficientat.py``: ``efficientat_mn04`` ...).

Example:
    >>> r = released("panns_cnn14")
    >>> r.sample_rate, r.frontend.hop_length, len(r.label_names())
    (32000, 320, 527)
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Literal
from functools import lru_cache
from importlib import resources

from audiocnn.core.errors import DataError
from audiocnn.core.registry import Registry
from audiocnn.features.frontends import FrontendSettings

__all__ = ["LABEL_SETS", "RELEASED", "Released", "label_set", "register_released", "released"]


LABEL_SETS = {"audioset": "audioset_class_labels_indices.csv"}
"""Label files shipped with the package (``index,mid,display_name``, one row per output)."""


@lru_cache(maxsize=None)
def label_set(name: str) -> tuple[str, ...]:
    """The display names of a shipped label set, in output order (``audioset``: 527 names)."""
    if name not in LABEL_SETS:
        raise DataError(f"unknown label set {name!r}; shipped: {', '.join(LABEL_SETS)}")
    text = resources.files("audiocnn.models").joinpath("labels", LABEL_SETS[name]).read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise DataError(f"label file {LABEL_SETS[name]} is not indexed 0..{len(rows) - 1} in order")
    return tuple(r["display_name"] for r in rows)


@dataclass(frozen=True)
class Released:
    """One released model (see the module docstring for the fields)."""

    name: str
    sample_rate: int
    frontend: FrontendSettings
    num_classes: int
    embedding_dim: int
    labels: str | None = None
    task: str = "multilabel"
    clip_s: float = 10.0
    embed_window_s: float = 1.0
    embed_hop_s: float = 0.5
    embedding: Literal["pre_logits", "pooled"] = "pre_logits"
    weights_file: str = ""
    """The name of the file users hold, e.g. ``Cnn14_mAP=0.431.pth``."""
    source: str = ""
    """Where the weights come from (a URL or a record)."""
    licence: str = "see the upstream"

    def label_names(self) -> list[str]:
        """One name per output (``0``, ``1`` ... when the model ships no label file)."""
        if self.labels is None:
            return [str(i) for i in range(self.num_classes)]
        names = list(label_set(self.labels))
        if len(names) != self.num_classes:
            raise DataError(f"{self.name}: label set {self.labels} has {len(names)} names for "
                            f"{self.num_classes} outputs")
        return names


RELEASED: Registry[Released] = Registry("released model")


def register_released(entry: Released) -> Released:
    """Add a row to :data:`RELEASED` (the model name must be registered with ``register_model`` too)."""
    RELEASED.register(entry.name)(entry)
    return entry


def released(name: str) -> Released:
    """The row of a released model; an unknown name lists the known ones (:class:`UnknownNameError`)."""
    return RELEASED.get(name)
