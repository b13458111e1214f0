"""HEAR downstream evaluation, heareval 2021.1.3's protocol made fast: ``audiocnn hear-eval``.

    audiocnn hear-eval runs/digits/<run> --tasks-dir tasks/ --out results/
    audiocnn hear-eval hearbaseline --model naive_baseline.pt --tasks-dir tasks/ --out results/
    audiocnn hear-eval --embeddings embeddings/hearbaseline/ --out results/     # heareval embedding folders

Each task is embedded once (:mod:`audiocnn.hear.embeddings`, cached under ``OUT/embeddings/``), then a shallow
predictor is trained on the embeddings and scored on held-out data exactly as
``heareval/predictions/task_predictions.py`` (2021.1.3) does:

- Splits. ``trainvaltest``: one split. k-fold: k splits; split ``i`` tests fold ``i``, validates on fold
  ``i + 1`` (mod k) and trains on the others (folds sorted by name).
- Predictor. ``hidden_layers`` x [Linear(1024), BatchNorm1d, Dropout(0.1), ReLU], then Linear to the labels.
  Weights: Xavier uniform or normal, gain 1 for the first layer and sqrt(2) after a ReLU; biases keep PyTorch's
  default. Multiclass: cross-entropy, softmax outputs; multilabel and event: binary cross-entropy, sigmoid.
- Training. Adam, batches of 1024 rows in the stored order (heareval never shuffles: its loader shuffles only a
  split named by the string ``"train"`` and is always given a list), at most 500 epochs, a validation after
  every 3rd epoch on the primary score. Kept: the first validation with the best score. Early stopping after 20
  validations (60 epochs) without a strictly better score, or at a non-finite score. Scores are compared as
  float32, the precision Lightning logs them in.
- Grid. ``hidden_layers`` {1, 2} x ``initialization`` {xavier_uniform, xavier_normal} x ``lr`` {3.2e-3, 1e-3,
  3.2e-4, 1e-4}, in scikit-learn ``ParameterGrid`` order, shuffled by ``random.Random(42)``: the first 8 points
  are trained on split 0 and the best validation score (the earlier point on ties) is trained again on the
  other splits. Torch is seeded with 42 once per task. Task metadata may override grid entries
  (``evaluation_params.task_specific_param_grid``); ``dcase2016_task2`` validates every 10 epochs.
- Events. Frame targets come with the embeddings (:func:`~audiocnn.hear.embeddings.frame_labels`). Frame
  probabilities become events per file: a median filter over frames (width ``round(median_filter_ms / mean
  frame step)``, SciPy's mirrored edges, the upper median for even widths), probability > 0.5, each run of
  frames an event from its first to its last frame's timestamp, kept when ``end - start >= min_duration``.
  Postprocessing grid: ``median_filter_ms`` 250, ``min_duration`` {125, 250} ms (or the task's
  ``evaluation_params.event_postprocessing_grid``); at every validation the best one on the primary score is
  chosen (NaN counted as 0; ties to the larger setting) and the test uses the one of the kept epoch.
- Scores (:mod:`audiocnn.hear.scores`): every metric of the task's ``evaluation`` on each split's test data;
  mean and sample standard deviation (n - 1) over splits.

Speed: all embeddings stay in tensors on the device, the training loop is plain PyTorch, the scene scores are
vectorised, and the event postprocessing of all files is a few tensor operations on precomputed indices (only
the matching of estimated to reference onsets walks the events). What remains is the predictor's arithmetic,
which the protocol fixes: on a CPU a 1024-wide hidden layer makes it the larger part of heareval's time too
(``benchmarks/hear/RESULTS.md``: 1.2-1.7x faster there; 4.7-5.9x with a 64-wide predictor).

One deliberate difference: a last training batch of a single row is dropped (batch norm cannot train on one
row; heareval stops with an error there).

Outputs in ``OUT``: ``scores.json`` (per model and task: every metric per split, mean, std, the chosen grid
point, all grid points, timings) and ``scores.md`` (one row per model, one column per task: the primary score,
mean ± std). Both are rewritten atomically and keep the results of other models and tasks.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiocnn.hear.embeddings import (EmbeddedSplit, HearEvalError, embed_task, is_embedding_folder,
                                      load_hear_module, read_split)
from audiocnn.hear.scores import EVENT_SCORES, SCENE_SCORES, f_measure_from_counts, onset_true_positives
from audiocnn.utils import atomic_write_text, pick_device

__all__ = ["DownstreamMLP", "Frames", "GRID", "POSTPROCESSING_GRID", "EventDecoder", "evaluate",
           "evaluate_embeddings", "fold_splits", "markdown_table", "parameter_grid", "sample_grid"]

GRID: dict[str, list] = {
    "hidden_layers": [1, 2],
    "hidden_dim": [1024],
    "dropout": [0.1],
    "lr": [3.2e-3, 1e-3, 3.2e-4, 1e-4],
    "patience": [20],
    "max_epochs": [500],
    "check_val_every_n_epoch": [3],
    "batch_size": [1024],
    "initialization": ["xavier_uniform", "xavier_normal"],
}
"""heareval's ``PARAM_GRID`` (its single-valued entries for norms and optimiser are built in)."""
POSTPROCESSING_GRID: dict[str, list] = {"median_filter_ms": [250], "min_duration": [125, 250]}
TASK_GRIDS: dict[str, dict[str, list]] = {"dcase2016_task2": {"check_val_every_n_epoch": [10]}}
GRID_POINTS = 8
SEED = 42
_INIT = {"xavier_uniform": nn.init.xavier_uniform_, "xavier_normal": nn.init.xavier_normal_}


# --- grid and splits -----------------------------------------------------------------------------------------------

def parameter_grid(grid: dict[str, list]) -> list[dict[str, Any]]:
    """All combinations, in scikit-learn ``ParameterGrid`` order (keys sorted, the last varying fastest)."""
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def sample_grid(grid: dict[str, list], n: int = GRID_POINTS, seed: int = SEED) -> list[dict[str, Any]]:
    """The first ``n`` grid points after shuffling with ``random.Random(seed)``, as heareval samples them."""
    confs = parameter_grid(grid)
    random.Random(seed).shuffle(confs)
    return confs[:n]


def fold_splits(split_mode: str, split_names: list[str]) -> list[dict[str, list[str]]]:
    """``[{"train": [...], "valid": [...], "test": [...]}, ...]``: one for ``trainvaltest``, else one per fold
    (test fold ``i``, validation fold ``i + 1`` mod k, the rest for training, folds sorted)."""
    if split_mode == "trainvaltest":
        return [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    folds = sorted(split_names)
    if len(folds) < 3:
        raise HearEvalError(f"{split_mode} with {len(folds)} folds: the rotation needs at least 3 (test, validation, "
                            "training)")
    out = []
    for i, test in enumerate(folds):
        valid = folds[(i + 1) % len(folds)]
        out.append({"train": [f for f in folds if f not in (test, valid)], "valid": [valid], "test": [test]})
    return out


def task_grid(metadata: dict[str, Any]) -> dict[str, list]:
    """:data:`GRID` with the task's overrides (by name, then from ``evaluation_params``)."""
    grid = dict(GRID)
    grid.update(TASK_GRIDS.get(metadata["task_name"], {}))
    extra = metadata.get("evaluation_params", {}).get("task_specific_param_grid", {})
    unknown = sorted(set(extra) - set(GRID))
    if unknown:
        raise HearEvalError(f"{metadata['task_name']}: evaluation_params.task_specific_param_grid sets {unknown}; "
                            f"the evaluator knows {sorted(GRID)}")
    grid.update({k: list(v) for k, v in extra.items()})
    return grid


# --- data ----------------------------------------------------------------------------------------------------------

@dataclass
class Frames:
    """Rows of one or more splits on the device.

    Attributes:
        x: ``(n, dim)`` float32 embeddings.
        y: ``(n, labels)`` float32 multi-hot targets.
        file / time: event tasks: per row, a file index into ``names`` and the timestamp (ms).
        names: event tasks: file names.
        events: event tasks: the reference events per file (from ``{split}.json``).
    """

    x: torch.Tensor
    y: torch.Tensor
    file: np.ndarray | None = None
    time: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    events: dict[str, list] = field(default_factory=dict)

    @staticmethod
    def cat(parts: list[Frames]) -> Frames:
        if len(parts) == 1:
            return parts[0]
        out = Frames(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
        if parts[0].file is not None:
            offsets = np.cumsum([0] + [len(p.names) for p in parts[:-1]])
            out.file = np.concatenate([p.file + o for p, o in zip(parts, offsets)])
            out.time = np.concatenate([p.time for p in parts])
            out.names = [n for p in parts for n in p.names]
            out.events = {k: v for p in parts for k, v in p.events.items()}
        return out


def _frames(split: EmbeddedSplit, label_index: dict[str, int], events: dict[str, list] | None, where: str,
            device: torch.device) -> Frames:
    y = np.zeros((len(split.labels), len(label_index)), np.float32)
    for i, labels in enumerate(split.labels):
        for label in labels:
            if label not in label_index:
                raise HearEvalError(f"{where}: label {label!r} is not in labelvocabulary.csv")
            y[i, label_index[label]] = 1.0
    if not np.isfinite(split.x).all():
        raise HearEvalError(f"{where}: the embeddings hold NaN or Inf; check the model")
    out = Frames(torch.from_numpy(split.x).to(device), torch.from_numpy(y).to(device))
    if split.files is not None:
        names = list(dict.fromkeys(split.files))
        index = {n: i for i, n in enumerate(names)}
        out.file = np.asarray([index[f] for f in split.files], np.int64)
        out.time = split.timestamps
        out.names = names
        out.events = dict(events or {})
    return out


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


# --- events --------------------------------------------------------------------------------------------------------

class EventDecoder:
    """Frame probabilities of one set of files -> events, and their onset F-measures, for a postprocessing grid.

    Everything that depends only on the files (frame order, median-filter windows, reference onsets) is
    computed here once; :meth:`decode` is then a few tensor operations for all files at once.

    Args:
        frames: the rows (event tasks) to decode.
        labels: the label vocabulary.
        grid: postprocessing grid (``median_filter_ms``, ``min_duration``).
    """

    def __init__(self, frames: Frames, labels: list[str], grid: dict[str, list]):
        assert frames.file is not None and frames.time is not None
        device = frames.x.device
        order = np.lexsort((frames.time, frames.file))
        f, t = frames.file[order], frames.time[order]
        last = np.ones(len(f), bool)              # heareval keys frames by timestamp: a repeated one keeps the last
        last[:-1] = (f[:-1] != f[1:]) | (t[:-1] != t[1:])
        self.rows = torch.as_tensor(order[last], device=device)
        self.file, self.time = f[last], t[last]
        self.n_labels = len(labels)
        self.confs = [tuple(c.items()) for c in parameter_grid(grid)]
        begin = np.flatnonzero(np.r_[True, self.file[1:] != self.file[:-1]])
        self.bounds = list(zip(begin.tolist(), np.r_[begin[1:], len(self.file)].tolist()))
        self.first = np.zeros(len(self.file), bool)
        self.first[begin] = True
        self.last = np.r_[self.first[1:], True]
        self.windows = {ms: self._windows(ms, device) for ms in {dict(c)["median_filter_ms"] for c in self.confs}}
        # reference onsets of the files that have frames (heareval scores those only); key = file x (labels + 1)
        index = {label: i for i, label in enumerate(labels)}
        keys, onsets = [], []
        for fi in np.unique(self.file).tolist():
            for e in frames.events.get(frames.names[fi], []):
                keys.append(fi * (self.n_labels + 1) + index.get(str(e["label"]), self.n_labels))
                onsets.append(e["start"] / 1000.0)
        self.ref_key = np.asarray(keys, np.int64)
        self.ref_onset = np.asarray(onsets, np.float64)

    def _windows(self, median_filter_ms: float, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Indices for a median filter of every file at once: the mirrored-edge sequence ``ext`` and per frame
        its window ``[lo, hi)`` in ``ext`` and the count of active frames that makes the median active."""
        ext, lo, hi, need = [], [], [], []
        at = 0
        for a, b in self.bounds:
            n = b - a
            width = 0
            if median_filter_ms and n > 1:
                width = int(round(median_filter_ms / np.mean(np.diff(self.time[a:b]))))
            width = max(width, 1)
            j = np.arange(-(width // 2), n + width - 1 - width // 2)
            m = np.mod(j, 2 * n)
            ext.append(a + np.where(m < n, m, 2 * n - 1 - m))
            lo.append(at + np.arange(n))
            hi.append(at + np.arange(n) + width)
            need.append(np.full(n, width - width // 2))   # the element of rank width // 2 is > 0.5
            at += n + width - 1
        as_t = lambda parts: torch.as_tensor(np.concatenate(parts), device=device)  # noqa: E731
        return as_t(ext), as_t(lo), as_t(hi), as_t(need)[:, None]

    def decode(self, probs: torch.Tensor) -> dict[tuple, tuple[np.ndarray, ...]]:
        """``(rows, labels)`` probabilities -> per postprocessing setting ``(file, label, start ms, end ms)``."""
        p = probs[self.rows] > 0.5
        out = {}
        active_by_ms = {}
        for conf in self.confs:
            c = dict(conf)
            ms = c["median_filter_ms"]
            if ms not in active_by_ms:
                ext, lo, hi, need = self.windows[ms]
                cum = F.pad(p[ext].to(torch.int32).cumsum(0), (0, 0, 1, 0))
                active = ((cum[hi] - cum[lo]) >= need).cpu().numpy()
                off = np.zeros((1, active.shape[1]), bool)
                before = np.r_[off, active[:-1]] & ~self.first[:, None]   # the previous frame of the same file
                after = np.r_[active[1:], off] & ~self.last[:, None]
                ls, fs = np.nonzero((active & ~before).T)               # runs in (label, frame) order
                _, fe = np.nonzero((active & ~after).T)
                active_by_ms[ms] = (self.file[fs], ls, self.time[fs], self.time[fe])
            fi, label, start, end = active_by_ms[ms]
            keep = end - start >= c["min_duration"]
            out[conf] = (fi[keep], label[keep], start[keep], end[keep])
        return out

    def f_measure(self, events: tuple[np.ndarray, ...], collar: float) -> float:
        """Onset-only F-measure of decoded events against the references (sed_eval's NaN conventions)."""
        fi, label, start, _ = events
        key = fi * (self.n_labels + 1) + label
        tp = onset_true_positives(self.ref_key, self.ref_onset, key, start / 1000.0, collar)
        return f_measure_from_counts(tp, len(key), len(self.ref_key))[0]


# --- training ------------------------------------------------------------------------------------------------------

@dataclass
class TaskSpec:
    """What the training needs to know about a task."""

    name: str
    embedding_type: str
    prediction_type: str
    labels: list[str]
    evaluation: list[str]
    use_scoring: bool = True
    postprocessing_grid: dict[str, list] = field(default_factory=lambda: dict(POSTPROCESSING_GRID))

    @property
    def primary(self) -> str:
        return self.evaluation[0]


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
        return {"conf": self.conf, "validation_score": _num(self.validation_score), "epoch": self.epoch,
                "epochs_run": self.epochs, "postprocessing": dict(self.postprocessing),
                "seconds": round(self.seconds, 3)}


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _loss(spec: TaskSpec, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if spec.prediction_type == "multiclass":
        return F.cross_entropy(logits, y.argmax(1))
    return F.binary_cross_entropy_with_logits(logits, y)


def _outputs(spec: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(1) if spec.prediction_type == "multiclass" else logits.sigmoid()


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


def fit(spec: TaskSpec, conf: dict[str, Any], train: Frames, valid: Frames) -> Fitted:
    """Train one predictor with early stopping on ``valid`` (see the module docstring)."""
    t0 = time.perf_counter()
    model = DownstreamMLP(train.x.shape[1], len(spec.labels), hidden_layers=conf["hidden_layers"],
                          hidden_dim=conf["hidden_dim"], drop_rate=conf["dropout"],
                          initialization=conf["initialization"]).to(train.x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=conf["lr"])
    validate = _Validator(spec, valid)
    n, bs = len(train.x), conf["batch_size"]
    batches = [(a, min(a + bs, n)) for a in range(0, n, bs)]
    if len(batches) > 1 and batches[-1][1] - batches[-1][0] == 1:
        batches.pop()
    kept_score, kept_state, kept_epoch, kept_post = -math.inf, None, -1, ()
    best_for_stopping, waited = -math.inf, 0
    epoch = 0
    for epoch in range(conf["max_epochs"]):
        model.train()
        for a, b in batches:
            loss = _loss(spec, model(train.x[a:b]), train.y[a:b])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if (epoch + 1) % conf["check_val_every_n_epoch"]:
            continue
        model.eval()
        with torch.no_grad():
            score, post = validate(model(valid.x))
        score = _f32(score)
        monitored = -math.inf if math.isnan(score) else score
        if kept_state is None or monitored > kept_score:
            kept_score, kept_epoch, kept_post = monitored, epoch, post
            kept_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if not math.isfinite(score):
            break
        if score > best_for_stopping:
            best_for_stopping, waited = score, 0
        else:
            waited += 1
            if waited >= conf["patience"]:
                break
    if kept_state is None:
        raise HearEvalError(f"{spec.name}: no validation ran (max_epochs {conf['max_epochs']} < "
                            f"check_val_every_n_epoch {conf['check_val_every_n_epoch']})")
    model.load_state_dict(kept_state)
    model.eval()
    if not spec.use_scoring:
        kept_score = -kept_score
    return Fitted(model, conf, kept_score, kept_epoch, epoch + 1, kept_post, time.perf_counter() - t0)


def test_scores(spec: TaskSpec, fitted: Fitted, test: Frames) -> dict[str, float]:
    """Every supported metric of ``spec.evaluation`` on ``test`` (events with the kept postprocessing)."""
    with torch.no_grad():
        probs = _outputs(spec, fitted.model(test.x))
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


# --- a whole task --------------------------------------------------------------------------------------------------

def _spec(folder: Path, metadata: dict[str, Any], labels: list[str]) -> TaskSpec:
    name = metadata.get("task_name", folder.name)
    event = metadata.get("embedding_type") == "event"
    known = EVENT_SCORES if event else SCENE_SCORES
    evaluation = list(metadata.get("evaluation") or [])
    if not evaluation or evaluation[0] not in known:
        raise HearEvalError(f"{folder / 'task_metadata.json'}: primary metric {evaluation[:1]} is not one the "
                            f"evaluator computes for {metadata.get('embedding_type')} tasks ({', '.join(known)})")
    params = metadata.get("evaluation_params", {})
    return TaskSpec(name=name, embedding_type=metadata["embedding_type"], prediction_type=metadata["prediction_type"],
                    labels=labels, evaluation=[m for m in evaluation if m in known],
                    use_scoring=bool(metadata.get("use_scoring_for_early_stopping", True)),
                    postprocessing_grid=dict(params.get("event_postprocessing_grid", POSTPROCESSING_GRID)))


def _read_labels(folder: Path) -> list[str]:
    import csv

    with open(folder / "labelvocabulary.csv", newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    try:
        by_idx = {int(r["idx"]): str(r["label"]) for r in rows}
    except (KeyError, ValueError) as e:
        raise HearEvalError(f"{folder / 'labelvocabulary.csv'}: expected columns idx,label ({e})") from None
    if sorted(by_idx) != list(range(len(by_idx))):
        raise HearEvalError(f"{folder / 'labelvocabulary.csv'}: idx must run 0..{len(by_idx) - 1}")
    return [by_idx[i] for i in range(len(by_idx))]


def evaluate_embeddings(folder: str | Path, *, device: str | torch.device | None = None, seed: int = SEED,
                        grid_points: int = GRID_POINTS, grid: dict[str, list] | None = None,
                        log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train and score one task from its embedding folder (heareval's layout).

    Args:
        folder: a task's embedding folder (:func:`~audiocnn.hear.embeddings.embed_task`, or heareval's).
        device: default: CUDA when available, else CPU.
        seed: seeds the grid sampling and torch, as heareval's ``seed_everything(42)``.
        grid_points: points of the grid trained on the first split.
        grid: replaces entries of the task's grid (tests use a small ``max_epochs``).

    Returns:
        The task's record for ``scores.json``.
    """
    folder = Path(folder)
    t0 = time.perf_counter()
    dev = pick_device("auto") if device is None else torch.device(device)
    metadata = json.loads((folder / "task_metadata.json").read_text())
    labels = _read_labels(folder)
    spec = _spec(folder, metadata, labels)
    split_names = metadata.get("splits") or sorted(p.name[:-len(".embedding-dimensions.json")]
                                                   for p in folder.glob("*.embedding-dimensions.json"))
    splits = fold_splits(metadata["split_mode"], list(split_names))
    label_index = {label: i for i, label in enumerate(labels)}
    data = {}
    for name in split_names:
        events = json.loads((folder / f"{name}.json").read_text()) if spec.embedding_type == "event" else None
        data[name] = _frames(read_split(folder, name), label_index, events, str(folder / name), dev)
        if spec.prediction_type == "multiclass" and not bool((data[name].y.sum(1) == 1).all()):
            raise HearEvalError(f"{folder / name}: a multiclass task needs exactly one label per row")
    loaded = time.perf_counter() - t0

    conf_grid = task_grid(metadata)
    conf_grid.update(grid or {})
    confs = sample_grid(conf_grid, grid_points, seed)
    torch.manual_seed(seed)

    def parts(split: dict[str, list[str]], key: str) -> Frames:
        return Frames.cat([data[s] for s in split[key]])

    first = splits[0]
    train, valid = parts(first, "train"), parts(first, "valid")
    results = []
    for i, conf in enumerate(confs):
        fitted = fit(spec, conf, train, valid)
        results.append(fitted)
        if log is not None:
            log(f"{spec.name}: grid point {i + 1}/{len(confs)} {_conf_text(conf)}: validation {spec.primary} "
                f"{fitted.validation_score:.4f} at epoch {fitted.epoch} ({fitted.epochs} epochs, "
                f"{fitted.seconds:.1f} s)")
    sign = 1 if spec.use_scoring else -1
    ranked = sorted(results, key=lambda r: -math.inf if math.isnan(r.validation_score) else sign * r.validation_score,
                    reverse=True)
    best = ranked[0]
    per_split = [best]
    for split in splits[1:]:
        fitted = fit(spec, best.conf, parts(split, "train"), parts(split, "valid"))
        per_split.append(fitted)
        if log is not None:
            log(f"{spec.name}: split test={'|'.join(split['test'])}: validation {spec.primary} "
                f"{fitted.validation_score:.4f} at epoch {fitted.epoch} ({fitted.seconds:.1f} s)")
    split_records, table = [], {}
    for split, fitted in zip(splits, per_split):
        scores = test_scores(spec, fitted, parts(split, "test"))
        key = "|".join(split["test"])
        table[key] = scores
        split_records.append({**split, **fitted.summary(), "scores": {k: _num(v) for k, v in scores.items()}})
    summary = {}
    for metric in spec.evaluation:
        values = [table[k][metric] for k in table]
        with np.errstate(invalid="ignore"):  # d_prime is infinite where a label is separated perfectly
            mean, std = float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None
        summary[metric] = {"mean": _num(mean), "std": _num(std), "splits": {k: _num(table[k][metric]) for k in table}}
    seconds = time.perf_counter() - t0
    record = {
        "task_name": spec.name, "version": metadata.get("version"), "embedding_type": spec.embedding_type,
        "prediction_type": spec.prediction_type, "split_mode": metadata["split_mode"], "primary": spec.primary,
        "scores": summary, "grid_point": {**best.conf, "postprocessing": dict(best.postprocessing)},
        "validation_score": _num(best.validation_score), "grid": [r.summary() for r in results],
        "splits": split_records, "embedding_folder": str(folder), "device": str(dev), "seed": seed,
        "seconds": {"loading": round(loaded, 3), "downstream": round(seconds - loaded, 3), "total": round(seconds, 3)},
    }
    if log is not None:
        s = summary[spec.primary]
        log(f"{spec.name}: test {spec.primary} {_pm(s)} over {len(splits)} split(s) in {seconds:.1f} s")
    return record


def _conf_text(conf: dict[str, Any]) -> str:
    return f"hidden_layers={conf['hidden_layers']} {conf['initialization']} lr={conf['lr']:g}"


def _pm(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "nan"
    return f"{s['mean']:.4f}" + (f" ± {s['std']:.4f}" if s.get("std") is not None else "")


# --- reports and the command ---------------------------------------------------------------------------------------

def markdown_table(doc: dict[str, Any]) -> str:
    """One row per model, one column per task (the primary score, mean ± std over splits)."""
    models = doc.get("models", {})
    tasks = sorted({t for m in models.values() for t in m.get("tasks", {})})
    primary = {}
    for m in models.values():
        for t, rec in m.get("tasks", {}).items():
            primary.setdefault(t, rec.get("primary", ""))
    lines = ["| model | " + " | ".join(f"{t} ({primary[t]})" for t in tasks) + " |",
             "|---|" + "---|" * len(tasks)]
    for name in sorted(models):
        cells = []
        for t in tasks:
            rec = models[name].get("tasks", {}).get(t)
            cells.append(_pm(rec["scores"][rec["primary"]]) if rec else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_reports(out: Path, model_name: str, entry: dict[str, Any]) -> None:
    path = out / "scores.json"
    doc: dict[str, Any] = {"models": {}}
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            doc = {"models": {}}
        doc.setdefault("models", {})
    old = doc["models"].get(model_name, {})
    tasks = {**old.get("tasks", {}), **entry.get("tasks", {})}
    errors = {k: v for k, v in {**old.get("errors", {}), **entry.get("errors", {})}.items() if k not in entry["tasks"]}
    doc["models"][model_name] = {**old, **entry, "tasks": tasks, "errors": errors}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / "scores.md", "# HEAR scores\n\nPrimary score per task, mean ± standard deviation over "
                                         "splits.\n\n" + markdown_table(doc))


def evaluate(module_or_run: str | None = None, tasks_dir: str | Path | None = None, *, model: str | None = None,
             out: str | Path = "results", embeddings: str | Path | None = None, tasks: list[str] | None = None,
             device: str | None = None, batch_size: int = 32, progress: str = "auto", seed: int = SEED,
             grid_points: int = GRID_POINTS, grid: dict[str, list] | None = None,
             log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Embed (or read embeddings of) HEAR tasks, train and score the downstream predictors, write the reports.

    Args:
        module_or_run: a HEAR module's import name or an audiocnn run folder (see
            :func:`~audiocnn.hear.embeddings.load_hear_module`).
        tasks_dir: a folder of HEAR task folders (or one task folder).
        model: the path for the module's ``load_model``.
        out: results folder: ``scores.json``, ``scores.md`` and ``embeddings/<model>/<task>/``.
        embeddings: instead of a module and tasks, a folder of heareval embedding folders (or one).
        tasks: only these task names.
        device: default: CUDA when available, else CPU.
        batch_size: sounds per call of the module.

    Returns:
        This run's entry of ``scores.json``: ``{"name", "module", "model", "device", "tasks": {task: record},
        "errors": {task: message}}``. A task that fails is reported in ``errors`` and the others go on.
    """
    out = Path(out)
    dev = pick_device("auto") if device is None else torch.device(device)
    entry: dict[str, Any] = {"tasks": {}, "errors": {}}
    if embeddings is not None:
        if module_or_run is not None or tasks_dir is not None or model is not None:
            raise HearEvalError("--embeddings takes embeddings that exist; drop the module, --tasks-dir and --model")
        root = Path(embeddings)
        folders = [root] if is_embedding_folder(root) else sorted(p for p in root.iterdir()
                                                                   if p.is_dir() and is_embedding_folder(p))
        if not folders:
            raise HearEvalError(f"{root}: no embedding folders (task_metadata.json with *.embedding-dimensions.json)")
        name = root.parent.name if is_embedding_folder(root) else root.name
        entry.update(module=None, model=None, embeddings=str(root.resolve()))
        work = [(p.name, lambda p=p: (p, None)) for p in folders]
    else:
        from audiocnn.hear.tasks import find_tasks, read_task

        if tasks_dir is None:
            raise HearEvalError("--tasks-dir is needed: a folder of HEAR tasks (audiocnn hear make-task writes them)")
        hm = load_hear_module(module_or_run, model, device=dev)
        name = hm.label
        entry.update(module=hm.name, model=hm.model_path, sample_rate=hm.sample_rate)
        task_dirs = find_tasks(tasks_dir)
        if not task_dirs:
            raise HearEvalError(f"{tasks_dir}: no task folders (with task_metadata.json) in it")

        def make(task_dir: Path) -> Callable[[], tuple[Path, float]]:
            return lambda: embed_task(hm, read_task(task_dir), out / "embeddings" / hm.label, batch_size=batch_size,
                                      progress=progress, log=log)

        work = [(p.name, make(p)) for p in task_dirs]
    if tasks:
        unknown = sorted(set(tasks) - {n for n, _ in work})
        if unknown:
            raise HearEvalError(f"--tasks {unknown} not found; there are {', '.join(n for n, _ in work)}")
        work = [(n, w) for n, w in work if n in tasks]
    entry["device"] = str(dev)
    for task_name, prepare in work:
        t0 = time.perf_counter()
        try:
            folder, embed_seconds = prepare()
            record = evaluate_embeddings(folder, device=dev, seed=seed, grid_points=grid_points, grid=grid, log=log)
        except (HearEvalError, ValueError, OSError) as e:
            entry["errors"][task_name] = f"{type(e).__name__}: {e}"
            if log is not None:
                log(f"{task_name}: ERROR {e}")
            _write_reports(out, name, entry)
            continue
        record["seconds"]["embedding"] = None if embed_seconds is None else round(embed_seconds, 3)
        record["embedding_cached"] = embed_seconds == 0.0
        record["seconds"]["task"] = round(time.perf_counter() - t0, 3)
        record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
        entry["tasks"][record["task_name"]] = record
        _write_reports(out, name, entry)  # after every task: a later failure loses nothing
    if log is not None:
        log(f"wrote {out / 'scores.json'} and {out / 'scores.md'}")
    return {"name": name, **entry}
