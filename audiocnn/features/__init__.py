"""Waveform -> spectrogram front-ends, per-frequency normalisation and spectrogram augmentation.

Example:
    >>> from audiocnn.features import build_frontend, FrequencyNorm, SpecAugment
    >>> fe = build_frontend(kind="logmel", n_mels=64, sample_rate=16000)   # (batch, time) -> (batch, F, frames)
    >>> norm = FrequencyNorm(fe.n_features)
    >>> aug = SpecAugment(freq_masks=2, time_masks=2)
"""
from audiocnn.features.augment import SpecAugment, draw_mixup, mix
from audiocnn.features.frontends import KINDS, Frontend, FrontendSettings, build_frontend
from audiocnn.features.image import IMAGE_KIND
from audiocnn.features.deltas import Deltas
from audiocnn.features.normalize import FrequencyNorm, UtteranceNorm

FRONTEND_KINDS = (*KINDS, IMAGE_KIND)
"""Every ``frontend.kind``: the audio front-ends, then the image pipeline's."""

__all__ = ["FRONTEND_KINDS", "Deltas", "Frontend", "FrequencyNorm", "FrontendSettings", "SpecAugment", "UtteranceNorm",
           "build_frontend", "draw_mixup", "mix"]
