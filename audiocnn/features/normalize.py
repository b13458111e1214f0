"""Standardisation of spectrograms: per frequency with statistics from the training split (:class:`FrequencyNorm`),
or per utterance, each clip with its own (:class:`UtteranceNorm`, cepstral mean and variance normalisation)."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

__all__ = ["FrequencyNorm", "UtteranceNorm"]


class FrequencyNorm(nn.Module):
    """``(x - mean[f]) / std[f]`` for every frequency row ``f``.

    ``mean`` and ``std`` are persistent buffers of shape ``(n_features,)``: they come from the
    training data, so they are saved in checkpoints. Until :meth:`fit` (or a checkpoint) sets
    them, the module is the identity (mean 0, std 1).

    Args:
        n_features: rows of the spectrogram (``Frontend.n_features``).
        eps: lower bound on ``std`` (a constant row, such as a silent band, stays finite).

    Shape:
        ``(batch, n_features, frames) -> (batch, n_features, frames)``; any ``(..., n_features, frames)``.

    Example:
        >>> norm = FrequencyNorm(64).fit(frontend(wave) for wave, _ in train_loader)
        >>> z = norm(frontend(wave))        # ~zero mean, unit std per row on the training data
    """

    def __init__(self, n_features: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.eps = float(eps)
        self.register_buffer("mean", torch.zeros(self.n_features))
        self.register_buffer("std", torch.ones(self.n_features))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[-2] != self.n_features:
            raise ValueError(f"FrequencyNorm({self.n_features}) expects (batch, {self.n_features}, frames), got {tuple(x.shape)}")
        return (x - self.mean[:, None]) / self.std[:, None]

    @torch.no_grad()
    def fit(self, batches: Iterable[Tensor]) -> "FrequencyNorm":
        """Set ``mean`` and ``std`` (population) over all examples and frames of ``batches``.

        Streaming: batches are merged one at a time (Chan et al.'s pairwise update) with float64
        accumulators, so a whole training split never needs to be in memory.

        Args:
            batches: ``(batch, n_features, frames)`` tensors, e.g. front-end outputs of the training loader.

        Returns:
            ``self``, fitted.
        """
        count = 0
        mean = torch.zeros(self.n_features, dtype=torch.float64)
        m2 = torch.zeros(self.n_features, dtype=torch.float64)
        for x in batches:
            if x.dim() < 2 or x.shape[-2] != self.n_features:
                raise ValueError(f"FrequencyNorm.fit expects (batch, {self.n_features}, frames), got {tuple(x.shape)}")
            rows = x.detach().to("cpu", torch.float64).transpose(0, -2).reshape(self.n_features, -1)
            n = rows.shape[1]
            if n == 0:
                continue
            b_mean = rows.mean(dim=1)
            b_m2 = (rows - b_mean[:, None]).square().sum(dim=1)
            delta = b_mean - mean
            total = count + n
            mean += delta * (n / total)
            m2 += b_m2 + delta.square() * (count * n / total)
            count = total
        if count == 0:
            raise ValueError("FrequencyNorm.fit got no frames; is the training split empty?")
        self.mean.copy_(mean)
        self.std.copy_((m2 / count).sqrt().clamp(min=self.eps))
        return self

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}"


class UtteranceNorm(nn.Module):
    """``frontend.normalize: per_utterance``: each clip's rows standardised over its own frames (CMVN).

    ``(x[b, f, :] - mean_t x[b, f, :]) / std_t x[b, f, :]``, population std, floored at ``eps``. A fixed channel
    (a microphone's frequency response) is a constant offset of every log-spectrogram row, and a louder speaker or
    gain a constant offset of all rows: both are removed, whatever the training data. No statistics are fitted
    or saved; the clip is its own reference, so a stream (which has not heard the clip's end) cannot use it.

    Args:
        n_features: rows of the spectrogram.
        eps: lower bound on each row's std (a silent band stays finite).

    Shape:
        ``(batch, n_features, frames) -> (batch, n_features, frames)``; any ``(..., n_features, frames)``.
    """

    def __init__(self, n_features: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.eps = float(eps)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[-2] != self.n_features:
            raise ValueError(f"UtteranceNorm({self.n_features}) expects (batch, {self.n_features}, frames), got {tuple(x.shape)}")
        mean = x.mean(dim=-1, keepdim=True)
        std = (x - mean).square().mean(dim=-1, keepdim=True).sqrt().clamp(min=self.eps)
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}"
