"""Several downstream predictors of one depth as one model: stacked weights (:class:`StackedMLP`) and Adam over
stacked tensors with a learning rate per member (:class:`StackedAdam`).

Member ``i`` of a stack computes what its own :class:`~audiocnn.hear.predictor.DownstreamMLP` would: batch-norm
statistics over its own rows, its own dropout mask, its own Adam state and step count. Inside, activations are
``(members, features, rows)``: each layer is one ``baddbmm`` and batch norm is PyTorch's own kernel over
``members x features`` channels. Members whose batches differ in length carry a row mask (batch norm then
computes its masked statistics by hand).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.optim.adam import adam

from audiocnn.hear.predictor import DownstreamMLP

__all__ = ["StackedAdam", "StackedMLP"]

_BN_EPS, _BN_MOMENTUM = 1e-5, 0.1          # nn.BatchNorm1d's defaults


class StackedMLP:
    """``m`` :class:`~audiocnn.hear.predictor.DownstreamMLP` of one depth and width as stacked tensors.

    Parameters (``requires_grad``) per hidden block ``l``: ``weight[l] (m, out, in)``, ``bias[l] (m, out)``,
    ``gamma[l]`` and ``beta[l] (m, out)``; the head ``weight[-1] (m, classes, hidden)``, ``bias[-1]``. Buffers:
    ``running_mean[l]``, ``running_var[l] (m, out)`` and ``tracked (m,)`` batches.

    Args:
        models: the members, in order (their current weights are copied).
    """

    def __init__(self, models: list[DownstreamMLP]):
        blocks = [[m.hidden[i:i + 4] for i in range(0, len(m.hidden), 4)] for m in models]
        depths = {len(b) for b in blocks}
        if len(depths) != 1:
            raise ValueError(f"a stack needs members of one depth, got hidden_layers {sorted(depths)}")
        self.depth = depths.pop()
        rates = {float(b[layer][2].p) for b in blocks for layer in range(self.depth)}
        if len(rates) > 1:
            raise ValueError(f"a stack needs members of one dropout rate, got {sorted(rates)}")
        self.drop_rate = rates.pop() if rates else 0.0

        def stack(get) -> torch.Tensor:
            return torch.stack([get(i).detach() for i in range(len(models))]).clone()

        self.weight, self.bias, self.gamma, self.beta, self.running_mean, self.running_var = [], [], [], [], [], []
        for layer in range(self.depth):
            self.weight.append(stack(lambda i: blocks[i][layer][0].weight))
            self.bias.append(stack(lambda i: blocks[i][layer][0].bias))
            self.gamma.append(stack(lambda i: blocks[i][layer][1].weight))
            self.beta.append(stack(lambda i: blocks[i][layer][1].bias))
            self.running_mean.append(stack(lambda i: blocks[i][layer][1].running_mean))
            self.running_var.append(stack(lambda i: blocks[i][layer][1].running_var))
        self.weight.append(stack(lambda i: models[i].head.weight))
        self.bias.append(stack(lambda i: models[i].head.bias))
        self.tracked = torch.zeros(len(models), dtype=torch.long, device=self.weight[0].device)
        for p in self.parameters():
            p.requires_grad_(True)

    def __len__(self) -> int:
        return self.weight[0].shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return [*self.weight, *self.bias, *self.gamma, *self.beta]

    def _tensors(self) -> list[list[torch.Tensor]]:
        return [self.weight, self.bias, self.gamma, self.beta, self.running_mean, self.running_var]

    def keep(self, members: torch.Tensor) -> None:
        """Keep only ``members`` (indices into the current stack), in that order."""
        for group in self._tensors():
            for j, t in enumerate(group):
                group[j] = t.detach()[members].requires_grad_(t.requires_grad)
        self.tracked = self.tracked[members]

    def member(self, i: int) -> list[torch.Tensor]:
        """A copy of member ``i``'s tensors (for :meth:`load_member`)."""
        return [t.detach()[i].clone() for group in self._tensors() for t in group] + [self.tracked[i].clone()]

    def forward(self, x: torch.Tensor, *, training: bool, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``(rows, in)`` shared by all members, or ``(m, rows, in)`` -> ``(m, rows, classes)`` logits.

        Args:
            training: batch statistics (updating the running ones) and dropout, as ``model.train()``.
            rows: ``(m, rows)`` bool, the real rows of each member (``None``: all); only these enter the
                batch statistics.
        """
        m = len(self)
        h = x.T.expand(m, *x.T.shape) if x.dim() == 2 else x.transpose(1, 2)      # (m, in, rows)
        cols = None if rows is None else rows.unsqueeze(1)                          # (m, 1, rows)
        for layer in range(self.depth):
            h = torch.baddbmm(self.bias[layer].unsqueeze(2), self.weight[layer], h)
            h = self._batch_norm(h, layer, training, cols)
            if training and self.drop_rate:
                h = self._dropout(h)
            h = torch.relu(h)
        return torch.baddbmm(self.bias[-1].unsqueeze(2), self.weight[-1], h).transpose(1, 2)

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        """``F.dropout`` with the mask drawn in ``(m, rows, out)`` order, as a lone member draws its own."""
        keep = 1 - self.drop_rate
        mask = torch.empty(h.shape[0], h.shape[2], h.shape[1], dtype=h.dtype, device=h.device).bernoulli_(keep)
        return h * mask.div_(keep).transpose(1, 2)

    def _batch_norm(self, h: torch.Tensor, layer: int, training: bool, cols: torch.Tensor | None) -> torch.Tensor:
        """``nn.BatchNorm1d`` per member over its own rows: ``(m, out, rows) -> (m, out, rows)``."""
        h = h.float()                                          # bf16 autocast: the statistics in float32
        m, c, n = h.shape
        rm, rv = self.running_mean[layer], self.running_var[layer]
        if cols is None or not training:
            if training:
                self.tracked += 1 if layer == 0 else 0
            return F.batch_norm(h.reshape(1, m * c, n), rm.view(-1), rv.view(-1), self.gamma[layer].reshape(-1),
                                self.beta[layer].reshape(-1), training, _BN_MOMENTUM, _BN_EPS).view(m, c, n)
        w = cols.to(h.dtype)
        count = w.sum(2, keepdim=True)                         # (m, 1, 1)
        mean = (h * w).sum(2, keepdim=True) / count.clamp_min(1)
        centred = h - mean
        var = (centred * centred * w).sum(2, keepdim=True) / count.clamp_min(1)
        with torch.no_grad():
            live = count.view(m, 1) > 1                        # a member without rows this step keeps its stats
            unbiased = (var * count / (count - 1).clamp_min(1)).squeeze(2)
            rm.copy_(torch.where(live, torch.lerp(rm, mean.squeeze(2), _BN_MOMENTUM), rm))
            rv.copy_(torch.where(live, torch.lerp(rv, unbiased, _BN_MOMENTUM), rv))
            if layer == 0:
                self.tracked += live.view(m).long()
        return centred * torch.rsqrt(var + _BN_EPS) * self.gamma[layer].unsqueeze(2) + self.beta[layer].unsqueeze(2)

    def load_member(self, model: DownstreamMLP, state: list[torch.Tensor]) -> DownstreamMLP:
        """Write a :meth:`member`'s tensors into ``model`` (a DownstreamMLP of the same shape)."""
        d = self.depth
        weight, bias = state[:d + 1], state[d + 1:2 * d + 2]
        gamma, beta, rmean, rvar = (state[2 * d + 2 + k * d:2 * d + 2 + (k + 1) * d] for k in range(4))
        with torch.no_grad():
            for layer in range(d):
                linear, bn = model.hidden[4 * layer], model.hidden[4 * layer + 1]
                linear.weight.copy_(weight[layer])
                linear.bias.copy_(bias[layer])
                bn.weight.copy_(gamma[layer])
                bn.bias.copy_(beta[layer])
                bn.running_mean.copy_(rmean[layer])
                bn.running_var.copy_(rvar[layer])
                bn.num_batches_tracked.fill_(state[-1])
            model.head.weight.copy_(weight[-1])
            model.head.bias.copy_(bias[-1])
        return model


class StackedAdam:
    """``torch.optim.Adam`` (betas 0.9, 0.999, eps 1e-8, no weight decay) over stacked parameters, one learning
    rate and one step count per member (dimension 0); :meth:`step` updates only the members in ``active``.

    Each member's slices of the stacked tensors are updated by torch's fused Adam kernel (``fused=True``, one pass
    over each tensor instead of the half-dozen temporaries of the plain implementation).

    Args:
        params: stacked parameters, member first.
        lr: ``(m,)`` learning rates.
    """

    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor, *, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params, self.betas, self.eps = params, betas, eps
        self.lr = lr.to(torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        # the fused kernel's step counters: one float32 scalar per member and parameter, advanced by the kernel
        self._steps = torch.zeros(len(lr), len(params), dtype=torch.float32, device=lr.device)

    @property
    def steps(self) -> torch.Tensor:
        """``(m,)`` the steps each member has taken."""
        return self._steps[:, 0].to(torch.float64)

    def keep(self, params: list[torch.Tensor], members: torch.Tensor) -> None:
        """Follow :meth:`StackedMLP.keep`: the new parameter tensors and the kept members' state."""
        self.params = params
        self.lr, self._steps = self.lr[members], self._steps[members]
        self.exp_avg = [t[members] for t in self.exp_avg]
        self.exp_avg_sq = [t[members] for t in self.exp_avg_sq]

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One Adam step of the members where ``active (m,)`` is true (all when ``None``)."""
        b1, b2 = self.betas
        members = range(len(self.lr)) if active is None else active.nonzero()[:, 0].tolist()
        for i in members:
            adam([p[i] for p in self.params], [p.grad[i] for p in self.params], [m[i] for m in self.exp_avg],
                 [v[i] for v in self.exp_avg_sq], [], list(self._steps[i].unbind()), fused=True, amsgrad=False,
                 beta1=b1, beta2=b2, lr=float(self.lr[i]), weight_decay=0.0, eps=self.eps, maximize=False)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
