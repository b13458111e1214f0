"""Datasets on disk -> examples -> splits -> decoded cache -> batches.

One registry, :data:`DATASETS`, holds audio and image datasets; each declares its modality.

``build_splits(cfg)`` reads a registered layout; ``AudioCache`` + ``prepare`` decode every file once,
before training; ``build_loaders`` yields :class:`Batch` (wave ``(N, time)``, target, clip_index).
"""
from audiocnn.data import images  # noqa: F401  (registers the image datasets: mnist, imagefolder)
from audiocnn.data.cache import AudioCache, prepare, prepare_splits
from audiocnn.data.datasets import DATASETS, build_splits, dataset_modality, default_root
from audiocnn.data.loader import (
    AudioDataset, Batch, EpochShuffleSampler, build_loaders, collate,
)
from audiocnn.data.splits import (
    DataError, Example, Splits, group_split, holdout_fractions, holdout_split, stratified_split,
)
from audiocnn.data import shards  # noqa: E402,F401  (registers data.name: shards, read from WebDataset tars)

__all__ = [
    "DATASETS", "AudioCache", "AudioDataset", "Batch", "DataError", "EpochShuffleSampler", "Example", "Splits",
    "build_loaders", "build_splits", "collate", "dataset_modality", "default_root", "group_split",
    "holdout_fractions", "holdout_split", "prepare", "prepare_splits", "stratified_split",
]
