"""Images: batches that are images already, augmented on the device and normalised per channel.

    images (batch, C, H, W) in [0, 1] -> ImageAugment (training only) -> ChannelNorm -> mixup (training)
    -> 2-D network -> logits
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiocnn.config import Config
from audiocnn.core.errors import ConfigError
from audiocnn.data.images import (
    IMAGE_EXTENSIONS, ImageDataset, ImageError, ImageStore, build_image_loaders, build_image_splits, decode_image,
    image_collate, image_shape,
)
from audiocnn.features import AUGMENTS
from audiocnn.features.image import IMAGE_KIND, ChannelNorm, ImageAugment
from audiocnn.models.registry import InputSpec
from audiocnn.modalities.base import Data, InputParts, Modality, register_modality
from audiocnn.modalities.classifier import Classifier, Mix
from audiocnn.plots import image_thumbnail

__all__ = ["ImageClassifier", "ImageModality"]


class ImageClassifier(Classifier):
    """Images in, logits out (see the module docstring).

    Args:
        network: a 2-D model with ``forward_features`` and ``forward_head`` (a :class:`ConvNet`).
        channels: image channels (1 or 3).
        input_shape: ``(C, H, W)`` the network is built for.
        augment: image augmentation, active only in training mode.

    ``frontend`` is the identity, so ``norm.fit(frontend(images))`` fits per-channel statistics as it fits
    per-frequency ones for audio.
    """

    modality = "image"

    def __init__(self, network: nn.Module, *, channels: int, input_shape: tuple[int, int, int] | None = None,
                 augment: nn.Module | None = None, mixup: nn.Module | None = None):
        super().__init__(nn.Identity(), ChannelNorm(channels), network, augment, mixup=mixup)
        self.input_shape = input_shape

    def network_input(self, images: torch.Tensor, mix: Mix | None = None) -> torch.Tensor:
        return self.mixup(self.norm(self.augment(images)), mix)


@register_modality
class ImageModality(Modality):
    name = "image"
    kinds = (IMAGE_KIND,)
    normalize = ("per_channel",)
    augment_keys = ("invert", "rotation", "translate", "shear", "zoom", "hflip", "mixup_alpha")
    extensions = IMAGE_EXTENSIONS
    media_types = ("image/",)
    waveforms = False

    def load_data(self, cfg: Config) -> Data:
        splits, store = build_image_splits(cfg.data)
        return Data(splits, build_image_loaders(cfg.data, splits, store, seed=cfg.trainer.seed), store)

    def normalizer_batches(self, cfg: Config, data: Data) -> torch.utils.data.DataLoader:
        ds = ImageDataset(data.splits.train, data.cache, task=cfg.data.task)
        return torch.utils.data.DataLoader(ds, batch_size=cfg.data.batch_size, collate_fn=image_collate)

    def input_parts(self, cfg: Config) -> InputParts:
        channels, height, width = image_shape(cfg.data)
        a = cfg.augment
        augment = ImageAugment(invert=a.invert, rotation=a.rotation, translate=a.translate, shear=a.shear, zoom=a.zoom,
                               hflip=a.hflip)
        mixup = AUGMENTS.get("mixup")(alpha=a.mixup_alpha) if a.mixup_alpha else None
        return InputParts(nn.Identity(), augment if augment.active else None, channels, (height, width), mixup=mixup)

    def network_args(self, parts: InputParts, spec: InputSpec, args: dict) -> dict:
        if spec.rank(args) != 2:
            raise ConfigError("model.name is a 1-D model; images need a 2-D one")
        channels = parts.n_features
        if args.get("in_chans", channels) != channels:
            raise ConfigError(f"model.args.in_chans={args['in_chans']} but the images have {channels} channel(s); "
                              "drop model.args.in_chans or set data.channels")
        out = {"in_chans": channels}
        if spec.input_size and "input_size" not in args:
            out["input_size"] = (channels, *parts.spatial)
        return out

    def classifier(self, parts: InputParts, network: nn.Module) -> ImageClassifier:
        shape = (parts.n_features, *parts.spatial)
        return ImageClassifier(network, channels=parts.n_features, input_shape=shape, augment=parts.augment,
                               mixup=parts.mixup)

    def example_input(self, cfg: Config, model: Classifier, batch_size: int) -> tuple[torch.Tensor, str]:
        return torch.zeros(batch_size, *model.input_shape), f"images {'x'.join(map(str, model.input_shape))}"

    def read_file(self, cfg: Config, path: Path, *, hop: float | None = None) -> tuple[torch.Tensor, dict]:
        """One image ``(1, C, H, W)`` in [0, 1], decoded at the run's ``data.image_size`` and ``data.channels``."""
        channels, height, width = image_shape(cfg.data)
        image = ImageStore(size=(height, width), channels=channels, max_bytes=0).load(str(path))
        return _as_input(image), {}

    def read_bytes(self, cfg: Config, data: bytes, *, hop: float | None = None, max_duration: float | None = None
                   ) -> tuple[torch.Tensor, dict]:
        """:meth:`read_file` of an image file's bytes (an upload)."""
        channels, height, width = image_shape(cfg.data)
        if not data:
            raise ImageError("request body", "empty (0 bytes)")
        return _as_input(decode_image(io.BytesIO(data), size=(height, width), channels=channels, name="request body")), {}

    def describe_input(self, cfg: Config, model: Classifier) -> str:
        shape = getattr(model, "input_shape", None)
        return "images" + (f" {'x'.join(map(str, shape))} (channels x height x width)" if shape else "")

    def input_name(self, cfg: Config) -> str:
        return ("normalised " if cfg.frontend.normalize != "none" else "") + "image"

    def preview(self, cfg: Config, model: Classifier, x: torch.Tensor):
        return image_thumbnail(x), None


def _as_input(image: np.ndarray) -> torch.Tensor:
    """``(C, H, W)`` uint8 -> ``(1, C, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(image)[None].float().div_(255.0)
