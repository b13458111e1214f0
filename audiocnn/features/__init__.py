"""Waveform -> spectrogram front-ends, normalisation, deltas and the augmentations (one registry, :data:`AUGMENTS`).

Example:
    >>> from audiocnn.features import build_frontend, FrequencyNorm, SpecAugment
    >>> fe = build_frontend(kind="logmel", n_mels=64, sample_rate=16000)   # (batch, time) -> (batch, F, frames)
    >>> norm = FrequencyNorm(fe.n_features)
    >>> aug = SpecAugment(freq_masks=2, time_masks=2)
"""
from audiocnn.features.augment import AUGMENT_STAGES, AUGMENTS, Mix, Mixup, SpecAugment
from audiocnn.features.frontends import KINDS, Frontend, FrontendSettings, build_frontend
from audiocnn.features.image import IMAGE_KIND
from audiocnn.features.deltas import Deltas
from audiocnn.features.normalize import FrequencyNorm, UtteranceNorm
from audiocnn.features import vtlp, wave_augment  # noqa: F401  (register their transforms in AUGMENTS)

FRONTEND_KINDS = (*KINDS, IMAGE_KIND)
"""Every ``frontend.kind``: the audio front-ends, then the image pipeline's."""

__all__ = ["AUGMENTS", "AUGMENT_STAGES", "FRONTEND_KINDS", "Deltas", "Frontend", "FrequencyNorm", "FrontendSettings",
           "Mix", "Mixup", "SpecAugment", "UtteranceNorm", "build_frontend"]
