"""Waveform -> spectrogram front-ends, per-frequency normalisation and spectrogram augmentation.

Example:
    >>> from audiocnn.features import build_frontend, FrequencyNorm, SpecAugment
    >>> fe = build_frontend(cfg.frontend, sample_rate=cfg.data.sample_rate)   # (batch, time) -> (batch, F, frames)
    >>> norm = FrequencyNorm(fe.n_features)
    >>> aug = SpecAugment(freq_masks=2, time_masks=2)
"""
from audiocnn.features.augment import SpecAugment, mixup_batch
from audiocnn.features.frontends import Frontend, build_frontend
from audiocnn.features.normalize import FrequencyNorm

__all__ = ["Frontend", "FrequencyNorm", "SpecAugment", "build_frontend", "mixup_batch"]
