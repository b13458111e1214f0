"""``AudioClassifier``: one module from waveform to logits, front-end included (moves with ``.to``).

    wave (batch, time) -> frontend -> (batch, n_features, frames) -> FrequencyNorm -> SpecAugment (training only)
    -> 2-D backbone: (batch, 1, n_features, frames) | 1-D backbone: (batch, n_features, frames) -> logits
"""
from __future__ import annotations

import torch
from torch import nn

from audiocnn.config import Config
from audiocnn.features import FrequencyNorm, SpecAugment, build_frontend
from audiocnn.models.registry import create_model, model_dims

__all__ = ["AudioClassifier", "build_classifier", "num_outputs"]


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


def num_outputs(task: str, labels: list[str]) -> int:
    """Logit count: one per class, one for binary, one per target for regression."""
    return 1 if task == "binary" else len(labels)


def build_classifier(cfg: Config, labels: list[str], *, pretrained: bool = True) -> AudioClassifier:
    """Front-end, augmentation and network from a recipe; the network's input size comes from the front-end.

    ``pretrained=False`` skips ``model.pretrained`` (a checkpoint's own weights are loaded next anyway).
    """
    frontend = build_frontend(cfg.frontend, cfg.data.sample_rate)
    aug = cfg.augment
    augment = None
    if aug.freq_masks or aug.time_masks:
        augment = SpecAugment(freq_masks=aug.freq_masks, freq_mask_param=aug.freq_mask_param,
                              time_masks=aug.time_masks, time_mask_param=aug.time_mask_param)
    args = dict(cfg.model.args)
    args.update(_size_args(cfg, args, frontend, dims=model_dims(cfg.model.name, args)))
    args.setdefault("num_classes", num_outputs(cfg.data.task, labels))
    network = create_model(cfg.model.name, **args)
    if cfg.model.pretrained or cfg.model.freeze != "none":
        from audiocnn.models.pretrained import freeze, load_pretrained
        if cfg.model.pretrained and pretrained:
            load_pretrained(network, cfg.model.pretrained, model_name=cfg.model.name)
        freeze(network, cfg.model.freeze)
    return AudioClassifier(frontend, network, augment)


def _size_args(cfg: Config, args: dict, frontend: nn.Module, dims: int) -> dict:
    """``in_chans`` (and ``input_size`` for flatten heads) follow the front-end's output."""
    frames = frontend.num_frames(int(round(cfg.data.duration * cfg.data.sample_rate)))
    out = {k: v for k, v in args.items() if k != "num_classes"}
    if dims == 1:
        out["in_chans"] = frontend.n_features
        if args.get("global_pool") == "flatten":
            out["input_size"] = (frontend.n_features, frames)
    else:
        out.setdefault("in_chans", 1)
        if args.get("global_pool") == "flatten":
            out["input_size"] = (1, frontend.n_features, frames)
    return out
