"""The downstream predictor (:class:`DownstreamMLP`, heareval's ``FullyConnectedPrediction``), its training with
early stopping on the validation score (:func:`fit`) and its scores on test data (:func:`test_scores`)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from audiocnn.hear.embeddings import HearEvalError
from audiocnn.hear.events import EventDecoder
from audiocnn.hear.frames import Frames
from audiocnn.hear.protocol import TaskSpec
from audiocnn.hear.scores import EVENT_SCORES, SCENE_SCORES
from audiocnn.tasks import get_task

__all__ = ["PRECISIONS", "DownstreamMLP", "EarlyStopping", "Fitted", "autocast", "fit", "new_model", "test_scores",
           "train_batches"]

PRECISIONS = ("fp32", "bf16")
_INIT = {"xavier_uniform": nn.init.xavier_uniform_, "xavier_normal": nn.init.xavier_normal_}


# --- the predictor -------------------------------------------------------------------------------------------------

class DownstreamMLP(nn.Module):
    """heareval's ``FullyConnectedPrediction``: ``(batch, in_features) -> (batch, num_classes)`` logits.

    Args:
        in_features: embedding width.
        num_classes: labels.
        hidden_layers: blocks of Linear, BatchNorm1d, Dropout, ReLU (0 for a linear model).
        hidden_dim: their width.
        drop_rate: dropout probability.
        initialization: ``xavier_uniform`` or ``xavier_normal`` for the weights (gain 1 for the first layer,
            sqrt(2) after a ReLU).
    """

    def __init__(self, in_features: int, num_classes: int, *, hidden_layers: int = 1, hidden_dim: int = 1024,
                 drop_rate: float = 0.1, initialization: str = "xavier_uniform"):
        super().__init__()
        init = _INIT[initialization]
        layers: list[nn.Module] = []
        dim, previous = in_features, "linear"
        for _ in range(hidden_layers):
            linear = nn.Linear(dim, hidden_dim)
            init(linear.weight, gain=nn.init.calculate_gain(previous))
            layers += [linear, nn.BatchNorm1d(hidden_dim), nn.Dropout(drop_rate), nn.ReLU()]
            dim, previous = hidden_dim, "relu"
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(dim, num_classes)
        init(self.head.weight, gain=nn.init.calculate_gain(previous))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x))


# --- training ------------------------------------------------------------------------------------------------------

@dataclass
class Fitted:
    """A trained predictor: the kept weights and how it got there."""

    model: DownstreamMLP
    conf: dict[str, Any]
    validation_score: float
    epoch: int
    epochs: int
    postprocessing: tuple
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {"conf": self.conf, "validation_score": finite_or_none(self.validation_score), "epoch": self.epoch,
                "epochs_run": self.epochs, "postprocessing": dict(self.postprocessing),
                "seconds": round(self.seconds, 3)}


def finite_or_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _loss(spec: TaskSpec, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The task's own loss; HEAR gives multiclass targets one-hot, which cross-entropy takes as class indices."""
    task = get_task(spec.prediction_type)
    return task.loss(logits, y.argmax(1) if task.name == "multiclass" else y)


def _outputs(spec: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    return get_task(spec.prediction_type).outputs(logits)


class _Validator:
    """The monitored validation value (higher is better) and the postprocessing that gives it."""

    def __init__(self, spec: TaskSpec, valid: Frames):
        self.spec, self.valid = spec, valid
        self.decoder = EventDecoder(valid, spec.labels, spec.postprocessing_grid) if valid.file is not None else None
        if self.decoder is not None and not spec.use_scoring and len(self.decoder.confs) != 1:
            raise HearEvalError(f"{spec.name}: use_scoring_for_early_stopping is false, which needs exactly one "
                                "postprocessing setting")

    def __call__(self, logits: torch.Tensor) -> tuple[float, tuple]:
        spec = self.spec
        if not spec.use_scoring:  # heareval then monitors the validation loss (lower is better)
            post = self.decoder.confs[0] if self.decoder is not None else ()
            return -float(_loss(spec, logits, self.valid.y)), post
        probs = _outputs(spec, logits)
        if self.decoder is None:
            return SCENE_SCORES[spec.primary](probs, self.valid.y), ()
        events = self.decoder.decode(probs)
        collar = EVENT_SCORES[spec.primary]
        scored = [(self.decoder.f_measure(ev, collar), conf) for conf, ev in events.items()]
        best = max(scored, key=lambda sc: (0.0 if math.isnan(sc[0]) else sc[0], sc[1]))
        return best


def _f32(v: float) -> float:
    return float(np.float32(v))


class EarlyStopping:
    """heareval's early stopping and checkpoint choice for one predictor, one validation at a time.

    Kept: the first validation with the best score (NaN counts as -inf). Stop: at a non-finite score, or after
    ``patience`` validations without a strictly better score. Scores are compared as float32.
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.kept_score, self.kept_epoch, self.kept_post = -math.inf, -1, ()
        self.best, self.waited = -math.inf, 0

    def update(self, score: float, post: tuple, epoch: int) -> tuple[bool, bool]:
        """Record a validation after ``epoch`` (0-based); ``(keep these weights, stop now)``."""
        score = _f32(score)
        monitored = -math.inf if math.isnan(score) else score
        keep = self.kept_epoch < 0 or monitored > self.kept_score
        if keep:
            self.kept_score, self.kept_epoch, self.kept_post = monitored, epoch, post
        if not math.isfinite(score):
            return keep, True
        if score > self.best:
            self.best, self.waited = score, 0
        else:
            self.waited += 1
        return keep, self.waited >= self.patience


def new_model(spec: TaskSpec, conf: dict[str, Any], in_features: int, device: torch.device) -> DownstreamMLP:
    """A freshly initialised predictor for grid point ``conf`` (draws from torch's global generator)."""
    return DownstreamMLP(in_features, len(spec.labels), hidden_layers=conf["hidden_layers"],
                         hidden_dim=conf["hidden_dim"], drop_rate=conf["dropout"],
                         initialization=conf["initialization"]).to(device)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The predictor's arithmetic precision: ``fp32``, or ``bf16`` (autocast: matrix products in bfloat16)."""
    if precision not in PRECISIONS:
        raise HearEvalError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def no_validation(spec: TaskSpec, conf: dict[str, Any]) -> HearEvalError:
    return HearEvalError(f"{spec.name}: no validation ran (max_epochs {conf['max_epochs']} < "
                         f"check_val_every_n_epoch {conf['check_val_every_n_epoch']})")


def fit(spec: TaskSpec, conf: dict[str, Any], train: Frames, valid: Frames, *, model: DownstreamMLP | None = None,
        precision: str = "fp32") -> Fitted:
    """Train one predictor with early stopping on ``valid`` (see :mod:`audiocnn.hear.evaluate`).

    Args:
        model: the initial predictor (trained in place); default: :func:`new_model`.
        precision: ``fp32`` or ``bf16`` (:func:`autocast`).
    """
    t0 = time.perf_counter()
    model = new_model(spec, conf, train.x.shape[1], train.x.device) if model is None else model
    cast = autocast(train.x.device, precision)
    optimizer = torch.optim.Adam(model.parameters(), lr=conf["lr"], fused=True)  # the kernel StackedAdam uses
    validate = _Validator(spec, valid)
    batches = train_batches(len(train.x), conf["batch_size"])
    stopping = EarlyStopping(conf["patience"])
    kept_state = None
    epoch = 0
    for epoch in range(conf["max_epochs"]):
        model.train()
        for a, b in batches:
            with cast:
                logits = model(train.x[a:b])
            loss = _loss(spec, logits, train.y[a:b])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if (epoch + 1) % conf["check_val_every_n_epoch"]:
            continue
        model.eval()
        with torch.no_grad(), cast:
            logits = model(valid.x)
        keep, stop = stopping.update(*validate(logits.float()), epoch)
        if keep:
            kept_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if stop:
            break
    if kept_state is None:
        raise no_validation(spec, conf)
    model.load_state_dict(kept_state)
    model.eval()
    return fitted(spec, model, conf, stopping, epoch + 1, time.perf_counter() - t0)


def train_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Row ranges of one epoch in stored order; a last batch of a single row is dropped (batch norm needs 2)."""
    batches = [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]
    if len(batches) > 1 and batches[-1][1] - batches[-1][0] == 1:
        batches.pop()
    return batches


def fitted(spec: TaskSpec, model: DownstreamMLP, conf: dict[str, Any], stopping: EarlyStopping, epochs: int,
           seconds: float) -> Fitted:
    score = stopping.kept_score if spec.use_scoring else -stopping.kept_score
    return Fitted(model, conf, score, stopping.kept_epoch, epochs, stopping.kept_post, seconds)


def test_scores(spec: TaskSpec, fitted: Fitted, test: Frames, *, precision: str = "fp32") -> dict[str, float]:
    """Every supported metric of ``spec.evaluation`` on ``test`` (events with the kept postprocessing)."""
    with torch.no_grad(), autocast(test.x.device, precision):
        logits = fitted.model(test.x)
    probs = _outputs(spec, logits.float())
    out = {}
    if test.file is None:
        for metric in spec.evaluation:
            if metric in SCENE_SCORES:
                out[metric] = SCENE_SCORES[metric](probs, test.y)
        return out
    decoder = EventDecoder(test, spec.labels, {k: [v] for k, v in fitted.postprocessing} or spec.postprocessing_grid)
    events = decoder.decode(probs)[decoder.confs[0]]
    for metric in spec.evaluation:
        if metric in EVENT_SCORES:
            out[metric] = decoder.f_measure(events, EVENT_SCORES[metric])
    return out
