"""``AudioClassifier``: one module from waveform to logits, front-end included (moves with ``.to``).

    wave (batch, time) -> frontend -> (batch, n_features, frames) -> FrequencyNorm -> SpecAugment (training only)
    -> 2-D backbone: (batch, 1, n_features, frames) | 1-D backbone: (batch, n_features, frames) -> logits

``ImageClassifier`` is the same interface for images (``frontend.kind: image``):

    images (batch, C, H, W) in [0, 1] -> ImageAugment (training only) -> ChannelNorm -> 2-D backbone -> logits
"""
from __future__ import annotations

import torch
from torch import nn

from audiocnn.config import Config, ConfigError
from audiocnn.features import FrequencyNorm, SpecAugment, build_frontend
from audiocnn.features.image import ChannelNorm, ImageAugment
from audiocnn.models.registry import accepts, create_model, model_dims

__all__ = ["AudioClassifier", "ImageClassifier", "build_classifier", "num_outputs"]


class AudioClassifier(nn.Module):
    """Waveform in, logits out.

    Args:
        frontend: waveform -> ``(batch, n_features, frames)``; its kernels are not saved.
        network: a model with ``dims``, ``forward_features`` and ``forward_head`` (a :class:`ConvNet`).
        augment: spectrogram augmentation, active only in training mode.
    """

    def __init__(self, frontend: nn.Module, network: nn.Module, augment: nn.Module | None = None):
        super().__init__()
        self.frontend = frontend
        self.norm = FrequencyNorm(frontend.n_features)
        self.augment = augment if augment is not None else nn.Identity()
        self.network = network

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, time) -> (batch, n_features, frames)``, normalised, float32."""
        return self.norm(self.frontend(wave))

    def _to_network(self, spec: torch.Tensor) -> torch.Tensor:
        return spec.unsqueeze(1) if self.network.dims == 2 else spec

    def forward_features(self, wave: torch.Tensor, *, mix: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
        """Backbone feature map. ``mix=(perm, lam)`` applies mixup to the spectrograms (training)."""
        spec = self.spectrogram(wave)
        if mix is not None:
            perm, lam = mix
            spec = lam * spec + (1.0 - lam) * spec[perm]
        spec = self.augment(spec)
        return self.network.forward_features(self._to_network(spec))

    def forward(self, wave: torch.Tensor, *, mix: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
        """``(batch, time) -> (batch, num_outputs)`` logits."""
        return self.network.forward_head(self.forward_features(wave, mix=mix))

    @torch.no_grad()
    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """The layer before the head's last linear layer: ``(batch, time) -> (batch, num_features)``."""
        return self.network.forward_head(self.forward_features(wave), pre_logits=True)


class ImageClassifier(nn.Module):
    """Images in, logits out: :class:`AudioClassifier`'s interface, so the same engine trains it.

    Args:
        network: a 2-D model with ``forward_features`` and ``forward_head`` (a :class:`ConvNet`).
        channels: image channels (1 or 3).
        augment: image augmentation, active only in training mode.

    ``frontend`` is the identity (the batches are already images), so ``norm.fit(frontend(images))`` fits the
    per-channel statistics as it fits per-frequency ones for audio; ``input_shape`` is ``(C, H, W)``.
    """

    def __init__(self, network: nn.Module, *, channels: int, input_shape: tuple[int, int, int] | None = None,
                 augment: nn.Module | None = None):
        super().__init__()
        self.frontend = nn.Identity()
        self.norm = ChannelNorm(channels)
        self.augment = augment if augment is not None else nn.Identity()
        self.network = network
        self.input_shape = input_shape

    def forward_features(self, images: torch.Tensor, *, mix: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
        """``(batch, C, H, W)`` -> backbone feature map. ``mix=(perm, lam)`` applies mixup after normalisation."""
        x = self.norm(self.augment(images))
        if mix is not None:
            perm, lam = mix
            x = lam * x + (1.0 - lam) * x[perm]
        return self.network.forward_features(x)

    def forward(self, images: torch.Tensor, *, mix: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
        """``(batch, C, H, W) -> (batch, num_outputs)`` logits."""
        return self.network.forward_head(self.forward_features(images, mix=mix))

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The layer before the head's last linear layer: ``(batch, C, H, W) -> (batch, num_features)``."""
        return self.network.forward_head(self.forward_features(images), pre_logits=True)


def num_outputs(task: str, labels: list[str]) -> int:
    """Logit count: one per class, one for binary, one per target for regression."""
    return 1 if task == "binary" else len(labels)


def build_classifier(cfg: Config, labels: list[str], *, pretrained: bool = True) -> AudioClassifier:
    """Front-end, augmentation and network from a recipe; the network's input size comes from the front-end.

    ``pretrained=False`` skips ``model.pretrained`` (a checkpoint's own weights are loaded next anyway).
    ``frontend.kind: image`` gives an :class:`ImageClassifier`.
    """
    _check_augment(cfg)
    if cfg.frontend.kind == "image":
        return _build_image_classifier(cfg, labels, pretrained=pretrained)
    frontend = build_frontend(cfg.frontend, cfg.data.sample_rate)
    aug = cfg.augment
    augment = None
    if aug.freq_masks or aug.time_masks:
        augment = SpecAugment(freq_masks=aug.freq_masks, freq_mask_param=aug.freq_mask_param,
                              time_masks=aug.time_masks, time_mask_param=aug.time_mask_param)
    args = dict(cfg.model.args)
    args.update(_size_args(cfg, args, frontend, dims=model_dims(cfg.model.name, args)))
    args.setdefault("num_classes", num_outputs(cfg.data.task, labels))
    network = _create_network(cfg, args, pretrained)
    return AudioClassifier(frontend, network, augment)


def _create_network(cfg: Config, args: dict, pretrained: bool) -> nn.Module:
    network = create_model(cfg.model.name, **args)
    if cfg.model.pretrained or cfg.model.freeze != "none":
        from audiocnn.models.pretrained import freeze, load_pretrained
        if cfg.model.pretrained and pretrained:
            load_pretrained(network, cfg.model.pretrained, model_name=cfg.model.name)
        freeze(network, cfg.model.freeze)
    return network


_AUDIO_AUGMENT = ("freq_masks", "time_masks", "gain_db")
_IMAGE_AUGMENT = ("invert", "rotation", "translate", "shear", "zoom", "hflip")


def _check_augment(cfg: Config) -> None:
    """Options of the other modality are errors, not silently ignored."""
    image = cfg.frontend.kind == "image"
    wrong = [k for k in (_AUDIO_AUGMENT if image else _IMAGE_AUGMENT) if getattr(cfg.augment, k)]
    if wrong:
        kind = "waveforms and spectrograms" if image else "images (frontend.kind: image)"
        raise ConfigError(f"augment.{wrong[0]}={getattr(cfg.augment, wrong[0])} applies to {kind} only; "
                          f"frontend.kind={cfg.frontend.kind!r}")
    if (cfg.frontend.normalize == "per_channel") != image and cfg.frontend.normalize != "none":
        want = "per_channel" if image else "per_frequency"
        raise ConfigError(f"frontend.normalize={cfg.frontend.normalize!r} does not fit frontend.kind={cfg.frontend.kind!r}; "
                          f"use {want} or none")


def _build_image_classifier(cfg: Config, labels: list[str], *, pretrained: bool) -> ImageClassifier:
    """Network sized from ``data.image_size``/``data.channels`` (``input_size`` for flatten heads)."""
    from audiocnn.data.images import image_shape

    if model_dims(cfg.model.name, cfg.model.args) != 2:
        raise ConfigError(f"model.name={cfg.model.name!r} is a 1-D model; images need a 2-D one")
    shape = image_shape(cfg.data)
    args = dict(cfg.model.args)
    if args.setdefault("in_chans", shape[0]) != shape[0]:
        raise ConfigError(f"model.args.in_chans={args['in_chans']} but the images have {shape[0]} channel(s); "
                          "drop model.args.in_chans or set data.channels")
    if accepts(cfg.model.name, "input_size"):
        args.setdefault("input_size", shape)
    args.setdefault("num_classes", num_outputs(cfg.data.task, labels))
    a = cfg.augment
    augment = ImageAugment(invert=a.invert, rotation=a.rotation, translate=a.translate, shear=a.shear, zoom=a.zoom,
                           hflip=a.hflip)
    return ImageClassifier(_create_network(cfg, args, pretrained), channels=shape[0], input_shape=shape,
                           augment=augment if augment.active else None)


def _size_args(cfg: Config, args: dict, frontend: nn.Module, dims: int) -> dict:
    """``in_chans`` and ``input_size`` follow the front-end's output (flatten heads infer their width from it)."""
    frames = frontend.num_frames(int(round(cfg.data.duration * cfg.data.sample_rate)))
    out = {k: v for k, v in args.items() if k != "num_classes"}
    if dims == 1:
        out["in_chans"] = frontend.n_features
        size = (frontend.n_features, frames)
    else:
        out.setdefault("in_chans", 1)
        size = (out["in_chans"], frontend.n_features, frames)
    if accepts(cfg.model.name, "input_size"):
        out.setdefault("input_size", size)
    return out
