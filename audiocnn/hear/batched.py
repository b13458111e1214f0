"""Many downstream predictors trained at once (:func:`fit_batched`): the grid points of a task on one split, or one
grid point on several splits, as stacked models (:mod:`audiocnn.hear.stacked`).

Each member follows :func:`~audiocnn.hear.predictor.fit` exactly: its own batches of its own training rows in
stored order (a last batch of one row dropped), its own batch-norm statistics, dropout mask and Adam state, its
own validations and early stopping (:class:`~audiocnn.hear.predictor.EarlyStopping`). Members of one structure
(depth, width, dropout, batch size, epochs, validation interval) share a stack; a member that stops leaves the
stack, so the arithmetic is that of the members still training. Members whose training sets differ in length
carry a row mask in the batches where they differ; a member without a batch at some step does not step.
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from audiocnn.hear.embeddings import HearEvalError
from audiocnn.hear.frames import Frames
from audiocnn.hear.predictor import (DownstreamMLP, EarlyStopping, Fitted, _Validator, autocast, fitted, new_model,
                                     no_validation, train_batches)
from audiocnn.hear.protocol import TaskSpec
from audiocnn.hear.stacked import StackedAdam, StackedMLP

__all__ = ["fit_batched"]

_STRUCTURE = ("hidden_layers", "hidden_dim", "dropout", "batch_size", "max_epochs", "check_val_every_n_epoch")


def fit_batched(spec: TaskSpec, confs: list[dict[str, Any]], trains: list[Frames], valids: list[Frames], *,
                models: list[DownstreamMLP] | None = None, precision: str = "fp32") -> list[Fitted]:
    """Train member ``i`` (grid point ``confs[i]`` on ``trains[i]``, validated on ``valids[i]``) for every ``i``.

    Args:
        models: the members' initial predictors (trained in place); default: :func:`~audiocnn.hear.predictor.
            new_model` for each conf in order.
        precision: ``fp32`` or ``bf16``.

    Returns:
        One :class:`~audiocnn.hear.predictor.Fitted` per member, in order; ``seconds`` is the time of the stack
        the member trained in.
    """
    if not len(confs) == len(trains) == len(valids):
        raise ValueError(f"{len(confs)} confs, {len(trains)} training and {len(valids)} validation sets")
    if models is None:
        models = [new_model(spec, c, t.x.shape[1], t.x.device) for c, t in zip(confs, trains)]
    groups: dict[tuple, list[int]] = {}
    for i, conf in enumerate(confs):
        groups.setdefault(tuple(conf[k] for k in _STRUCTURE), []).append(i)
    out: list[Fitted | None] = [None] * len(confs)
    for members in groups.values():
        done = _fit_stack(spec, [confs[i] for i in members], [trains[i] for i in members],
                          [valids[i] for i in members], [models[i] for i in members], precision)
        for i, f in zip(members, done):
            out[i] = f
    return out  # type: ignore[return-value]


def _member_losses(spec: TaskSpec, logits: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """``(m, n, labels)`` logits and targets -> the sum over members of each member's mean loss."""
    logits = logits.float()
    y = y.expand_as(logits)
    if spec.prediction_type == "multiclass":
        per_row = F.cross_entropy(logits.flatten(0, 1), y.argmax(-1).flatten(), reduction="none").view(logits.shape[:2])
    elif spec.prediction_type == "multilabel":
        per_row = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(2)
    else:
        raise HearEvalError(f"{spec.name}: prediction_type {spec.prediction_type!r}; HEAR has multiclass and "
                            "multilabel")
    if rows is None:
        return per_row.mean(1).sum()
    w = rows.to(per_row.dtype)
    return ((per_row * w).sum(1) / w.sum(1).clamp_min(1)).sum()


def _padded(parts: list[torch.Tensor]) -> torch.Tensor:
    """``[(n_i, d)]`` -> ``(m, max n_i, d)``, zeros after each member's rows."""
    out = parts[0].new_zeros((len(parts), max(len(p) for p in parts), parts[0].shape[1]))
    for i, p in enumerate(parts):
        out[i, :len(p)] = p
    return out


class _Rows:
    """The training or validation rows of a stack's members: one shared tensor, or a padded stack.

    ``x`` is ``(n, d)`` when all members read the same rows, else ``(m, max n, d)``; ``y`` likewise; ``n (m,)`` the
    rows each member trains on (its last batch of one row already left out).
    """

    def __init__(self, frames: list[Frames], batch_size: int | None = None):
        self.shared = all(f is frames[0] for f in frames)
        ends = [train_batches(len(f.x), batch_size)[-1][1] if batch_size else len(f.x) for f in frames]
        self.n = torch.tensor(ends, device=frames[0].x.device)
        if self.shared:
            self.x, self.y = frames[0].x[:ends[0]], frames[0].y[:ends[0]]
        else:
            self.x, self.y = _padded([f.x[:e] for f, e in zip(frames, ends)]), _padded([f.y[:e] for f, e in zip(frames, ends)])

    def __len__(self) -> int:
        return self.x.shape[-2]

    def keep(self, members: torch.Tensor) -> None:
        self.n = self.n[members]
        if not self.shared:
            self.x, self.y = self.x[members], self.y[members]

    def batch(self, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Rows ``[a, b)``: ``x``, ``y``, the row mask (``None``: all real) and the members with rows (``None``:
        all)."""
        if self.shared:
            return self.x[a:b], self.y[a:b], None, None
        x, y = self.x[:, a:b], self.y[:, a:b]
        rows = torch.arange(a, b, device=x.device) < self.n[:, None]
        if bool(rows.all()):
            return x, y, None, None
        active = rows.any(1)
        return x, y, rows, None if bool(active.all()) else active


def _fit_stack(spec: TaskSpec, confs: list[dict[str, Any]], trains: list[Frames], valids: list[Frames],
               models: list[DownstreamMLP], precision: str) -> list[Fitted]:
    t0 = time.perf_counter()
    conf = confs[0]
    device = trains[0].x.device
    cast = autocast(device, precision)
    stack = StackedMLP(models)
    optimizer = StackedAdam(stack.parameters(), torch.tensor([c["lr"] for c in confs], device=device))
    train, valid = _Rows(trains, conf["batch_size"]), _Rows(valids)
    validators = {id(v): _Validator(spec, v) for v in valids}
    stopping = [EarlyStopping(c["patience"]) for c in confs]
    kept: list[list[torch.Tensor] | None] = [None] * len(confs)
    epochs = [conf["max_epochs"]] * len(confs)
    alive = list(range(len(confs)))                       # stack position -> member
    bs = conf["batch_size"]
    for epoch in range(conf["max_epochs"]):
        for a in range(0, int(train.n.max()), bs):
            x, y, rows, active = train.batch(a, min(a + bs, len(train)))
            with cast:
                logits = stack.forward(x, training=True, rows=rows)
            loss = _member_losses(spec, logits, y, rows)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step(active)
        if (epoch + 1) % conf["check_val_every_n_epoch"]:
            continue
        with torch.no_grad(), cast:
            logits = stack.forward(valid.x, training=False).float()
        stays = []
        for pos, i in enumerate(alive):
            member_logits = logits[pos] if valid.shared else logits[pos, :int(valid.n[pos])]
            keep, stop = stopping[i].update(*validators[id(valids[i])](member_logits), epoch)
            if keep:
                kept[i] = stack.member(pos)
            if stop:
                epochs[i] = epoch + 1
            else:
                stays.append(pos)
        if len(stays) < len(alive):
            if not stays:
                break
            index = torch.tensor(stays, device=device)
            stack.keep(index)
            optimizer.keep(stack.parameters(), index)
            train.keep(index)
            valid.keep(index)
            alive = [alive[pos] for pos in stays]
    seconds = time.perf_counter() - t0
    out = []
    for i, (c, model) in enumerate(zip(confs, models)):
        if kept[i] is None:
            raise no_validation(spec, c)
        stack.load_member(model, kept[i])
        model.eval()
        out.append(fitted(spec, model, c, stopping[i], epochs[i], seconds))
    return out
