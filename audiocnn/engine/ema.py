"""``trainer.ema_decay``: an exponential moving average of the weights, kept beside the trained ones.

After every optimisation step, for every floating-point entry ``v`` of the model's ``state_dict`` (parameters and
batch-norm statistics alike, as timm's ``ModelEmaV3`` does)::

    ema = d * ema + (1 - d) * v,    d = min(ema_decay, (1 + n) / (10 + n))    # n: updates so far

The warm-up ``(1 + n) / (10 + n)`` keeps the first steps from being averaged with the random initial weights for
thousands of steps (a short run at ``d = 0.999`` would otherwise end near its initialisation). Integer entries
(``num_batches_tracked``) are copied.

In a run with ``ema_decay > 0`` the averaged weights are the run's model: ``val_*`` metrics, the choice of
``best.pt``, and what ``evaluate``, ``predict``, ``export`` and ``embed`` load are the averaged weights; the trained
weights' validation metrics are logged as ``raw_val_*`` and the weights themselves kept in each checkpoint as
``raw_model`` (what ``--resume`` continues training).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["WeightEMA"]


class WeightEMA:
    """The moving average of ``model``'s weights, as a second copy of the model (evaluation mode, no gradients).

    Args:
        model: the plain model being trained (not a DDP wrapper); copied once here.
        decay: ``trainer.ema_decay``, in ``(0, 1)``.

    Example:
        >>> ema = WeightEMA(model, decay=0.999)
        >>> ...; optimizer.step(); ema.update()
        >>> ema.averaged(wave)          # logits of the averaged weights
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.averaged = copy.deepcopy(model).eval()
        for p in self.averaged.parameters():
            p.requires_grad_(False)
        # (average, trained) tensor pairs, found once: training and loading update both in place
        trained = model.state_dict()
        self._pairs = [(avg, trained[key]) for key, avg in self.averaged.state_dict().items()]

    def current_decay(self) -> float:
        """The decay the next :meth:`update` applies (warm-up, then ``decay``)."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        d = self.current_decay()
        for avg, value in self._pairs:
            if avg.is_floating_point():
                avg.lerp_(value.to(avg.dtype), 1.0 - d)
            else:
                avg.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], *, updates: int) -> None:
        self.averaged.load_state_dict(state)
        self.updates = int(updates)
