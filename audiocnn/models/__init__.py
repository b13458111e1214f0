"""Models: the registry, the generic backbone and its blocks, and the model families."""
from audiocnn.models import spectrogram_cnns  # noqa: F401  (registers the family)
from audiocnn.models.backbone import ClassifierHead, ConvNet, Stage
from audiocnn.models.blocks import BLOCKS
from audiocnn.models.registry import create_model, list_models, register_model

__all__ = ["BLOCKS", "ClassifierHead", "ConvNet", "Stage", "create_model", "list_models", "register_model"]
