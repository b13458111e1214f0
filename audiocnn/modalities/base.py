"""The :class:`Modality` interface, its registry and :func:`modality_of`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from audiocnn.config import AugmentConfig, Config
from audiocnn.core.errors import ConfigError, DataError
from audiocnn.core.registry import Registry
from audiocnn.data import Splits, dataset_modality
from audiocnn.models.registry import InputSpec
from audiocnn.modalities.classifier import Classifier

__all__ = ["MODALITIES", "Data", "InputParts", "Modality", "modality_of"]


@dataclass
class Data:
    """Everything training and evaluation need from the data side."""

    splits: Splits
    loaders: dict[str, torch.utils.data.DataLoader]
    cache: Any
    """Where decoded examples are read from: an :class:`~audiocnn.data.AudioCache` or an image store."""


@dataclass
class InputParts:
    """A modality's input pipeline for one recipe, before the network exists.

    Attributes:
        frontend: raw input -> features ``(batch, n_features, frames)`` (images: the identity).
        augment: training-only augmentation, or ``None``.
        n_features: feature rows (audio) or channels (images).
        spatial: the feature map's spatial size after the front-end: ``(frames,)`` or ``(height, width)``.
        wave_augment: training-only waveform augmentation before the front-end (audio), or ``None``.
        norm: the normaliser, or ``None`` for the modality's fitted default.
        maps: feature maps per example after the normaliser (audio: 1 + ``frontend.deltas``).
        stack: the module that makes those maps (audio: :class:`~audiocnn.features.Deltas`), or ``None``.
        warp: training-only augmentation inside the front-end (audio: :class:`~audiocnn.features.vtlp.VTLP`), or
            ``None``.
        mixup: ``augment.mixup_alpha``'s :class:`~audiocnn.features.Mixup`, or ``None`` (off).
    """

    frontend: nn.Module
    augment: nn.Module | None
    n_features: int
    spatial: tuple[int, ...]
    wave_augment: nn.Module | None = None
    norm: nn.Module | None = None
    maps: int = 1
    stack: nn.Module | None = None
    warp: nn.Module | None = None
    mixup: nn.Module | None = None


class Modality:
    """What differs between modalities. Subclasses set the attributes and implement the methods.

    Attributes:
        name: the value datasets declare (``audio``, ``image``).
        kinds: the ``frontend.kind`` values this modality takes.
        normalize: its ``frontend.normalize`` values besides ``none``.
        augment_keys: the ``augment`` fields that apply to it (the other modality's are errors).
        extensions: file extensions ``predict`` reads.
        media_types: the ``Content-Type`` prefixes ``audiocnn serve`` takes for it (``audio/``).
        waveforms: whether its input is a waveform (embedders and HEAR take those only).
    """

    name: str = ""
    kinds: tuple[str, ...] = ()
    normalize: tuple[str, ...] = ()
    augment_keys: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    media_types: tuple[str, ...] = ()
    waveforms: bool = False

    # -- recipe -------------------------------------------------------------------------------------------

    def check(self, cfg: Config) -> None:
        """Settings of another modality are errors, not silently ignored."""
        if cfg.frontend.kind not in self.kinds:
            choose = f"set frontend.kind: {self.kinds[0]}" if len(self.kinds) == 1 else \
                f"set frontend.kind to one of {', '.join(self.kinds)}"
            raise DataError(f"data.name={cfg.data.name!r} is an {self.name} dataset; {choose} "
                            f"(frontend.kind={cfg.frontend.kind!r})")
        foreign = [k for m in MODALITIES.names() if m != self.name for k in MODALITIES.get(m).augment_keys
                   if k not in self.augment_keys]
        wrong = [k for k in foreign if getattr(cfg.augment, k) != _AUGMENT_DEFAULTS[k]]
        if wrong:
            raise ConfigError(f"augment.{wrong[0]}={getattr(cfg.augment, wrong[0])} does not apply to {self.name} "
                              f"data (frontend.kind={cfg.frontend.kind!r}); its augment keys: "
                              f"{', '.join(self.augment_keys)}")
        if cfg.frontend.normalize not in ("none", *self.normalize):
            raise ConfigError(f"frontend.normalize={cfg.frontend.normalize!r} does not fit frontend.kind="
                              f"{cfg.frontend.kind!r}; use {', '.join(self.normalize)} or none")
        if cfg.frontend.deltas and not self.waveforms:
            raise ConfigError(f"frontend.deltas={cfg.frontend.deltas} applies to spectrograms, not to {self.name} "
                              "data; remove it")

    # -- data ---------------------------------------------------------------------------------------------

    def load_data(self, cfg: Config) -> Data:
        """Splits, the decoded store (bad files reported before any epoch) and the loaders."""
        raise NotImplementedError

    def normalizer_batches(self, cfg: Config, data: Data) -> torch.utils.data.DataLoader:
        """The training split in order, unaugmented (centre crops), for fitting the normaliser."""
        raise NotImplementedError

    # -- model --------------------------------------------------------------------------------------------

    def input_parts(self, cfg: Config) -> InputParts:
        raise NotImplementedError

    def network_args(self, parts: InputParts, spec: InputSpec, args: dict) -> dict:
        """``in_chans`` and ``input_size`` for the network, from the front-end's output and the model's contract."""
        raise NotImplementedError

    def classifier(self, parts: InputParts, network: nn.Module) -> Classifier:
        raise NotImplementedError

    # -- using a model ------------------------------------------------------------------------------------

    def example_input(self, cfg: Config, model: Classifier, batch_size: int) -> tuple[torch.Tensor, str]:
        """A zero input of the recipe's size and a phrase saying what it is (``audiocnn summary``)."""
        raise NotImplementedError

    def read_file(self, cfg: Config, path: Path, *, hop: float | None = None) -> tuple[torch.Tensor, dict]:
        """One file as a batch for the model and what to report of it; the modality's error (with ``reason``)."""
        raise NotImplementedError

    def read_bytes(self, cfg: Config, data: bytes, *, hop: float | None = None, max_duration: float | None = None
                   ) -> tuple[torch.Tensor, dict]:
        """:meth:`read_file` of a file's bytes held in memory (an upload); ``max_duration`` bounds decoded audio."""
        raise NotImplementedError

    def describe_input(self, cfg: Config, model: Classifier) -> str:
        """One line for a report: what the model reads."""
        raise NotImplementedError

    def input_name(self, cfg: Config) -> str:
        """What the network gets, in a word or two (``normalised spectrogram``, ``image``)."""
        raise NotImplementedError

    def preview(self, cfg: Config, model: Classifier, x: torch.Tensor) -> tuple[Any, np.ndarray | None]:
        """A report's view of one model input ``x`` (one example): a thumbnail figure, and audio to play or None."""
        raise NotImplementedError


_AUGMENT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AugmentConfig)}

MODALITIES: Registry[Modality] = Registry("modality")


def register_modality(cls: Callable[[], Modality]) -> Callable[[], Modality]:
    """Register one instance of a :class:`Modality` subclass under its ``name``."""
    instance = cls()
    MODALITIES.register(instance.name)(instance)
    return cls


def modality_of(cfg: Config) -> Modality:
    """The modality of a recipe's dataset, checked against the rest of the recipe (``ConfigError``, ``DataError``)."""
    modality = MODALITIES.get(dataset_modality(cfg.data.name))
    modality.check(cfg)
    return modality
