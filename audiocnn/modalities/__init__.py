"""Modalities as data: what an audio run and an image run do differently, in one place.

Each dataset declares its modality (:func:`audiocnn.data.dataset_modality`); the :class:`Modality` registered
under that name owns the input pipeline (front-end, normaliser, augmentation), how its data is loaded, what a
summary feeds the model, how ``predict`` reads a file and what a report shows of an example. Nothing outside
this package branches on ``frontend.kind == "image"``.

Example:
    >>> modality = modality_of(cfg)          # from cfg.data.name, checked against cfg.frontend.kind
    >>> data = modality.load_data(cfg)       # splits, decoded store, loaders
"""
from audiocnn.modalities.audio import AudioClassifier, AudioModality
from audiocnn.modalities.base import MODALITIES, Data, InputParts, Modality, modality_of
from audiocnn.modalities.classifier import Classifier
from audiocnn.modalities.image import ImageClassifier, ImageModality

__all__ = ["MODALITIES", "AudioClassifier", "AudioModality", "Classifier", "Data", "ImageClassifier", "ImageModality",
           "InputParts", "Modality", "modality_of"]
