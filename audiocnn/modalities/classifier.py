"""``Classifier``: one module from raw input to logits, the modality's input pipeline included (moves with ``.to``).

    input -> network_input (front-end, normaliser, augmentation in training, mixup) -> network -> logits

A modality subclasses it and defines :meth:`Classifier.network_input` only; ``forward``, ``forward_features`` and
``embed`` are shared. Submodules keep the names ``frontend``, ``norm``, ``augment`` and ``network`` (checkpoint keys);
``mixup`` holds no state.
"""
from __future__ import annotations

import torch
from torch import nn

from audiocnn.features.augment import Mix, Mixup

__all__ = ["Classifier", "Mix"]


class Classifier(nn.Module):
    """Raw input in, logits out.

    Args:
        frontend: raw input -> features; its kernels are not saved.
        norm: statistics fitted on the training split (``norm.fit``).
        network: a model with ``forward_features`` and ``forward_head`` (a :class:`~audiocnn.models.ConvNet`).
        augment: augmentation, active only in training mode.
        mixup: ``augment.mixup_alpha``'s :class:`~audiocnn.features.augment.Mixup` (default: off); the engine
            draws from it each training step and passes the draw to :meth:`forward` as ``mix``.
    """

    modality: str = ""

    def __init__(self, frontend: nn.Module, norm: nn.Module, network: nn.Module, augment: nn.Module | None = None,
                 *, mixup: Mixup | None = None):
        super().__init__()
        self.frontend = frontend
        self.norm = norm
        self.augment = augment if augment is not None else nn.Identity()
        self.network = network
        self.mixup = mixup if mixup is not None else Mixup()

    def network_input(self, x: torch.Tensor, mix: Mix | None = None) -> torch.Tensor:
        """Raw input -> what the network takes. ``mix=(perm, lam)`` applies mixup (training)."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor, *, mix: Mix | None = None) -> torch.Tensor:
        """Backbone feature map."""
        return self.network.forward_features(self.network_input(x, mix))

    def forward(self, x: torch.Tensor, *, mix: Mix | None = None) -> torch.Tensor:
        """``(batch, ...) -> (batch, num_outputs)`` logits."""
        return self.network.forward_head(self.forward_features(x, mix=mix))

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The layer before the head's last linear layer: ``(batch, ...) -> (batch, num_features)``."""
        return self.network.forward_head(self.forward_features(x), pre_logits=True)
