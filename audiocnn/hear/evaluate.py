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
  other splits. Torch is seeded with the seed (42) before the grid's initial weights, all drawn before any
  training, and with seed + 1 before those of the other splits (heareval seeds once per task; its random
  stream is not reproduced either way, see ``benchmarks/hear_compare.py``). Task metadata may override grid entries
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

Speed: all embeddings stay in tensors on the device, the scene scores are vectorised, and the event
postprocessing of all files is a few tensor operations on precomputed indices (only the matching of estimated to
reference onsets walks the events). Training is batched by default (:mod:`~audiocnn.hear.batched`): the grid
points of one depth train as one stacked model (one ``baddbmm`` per layer for all members, PyTorch's batch-norm
kernel over members x features channels, a hand-written Adam over the stacked tensors with a learning rate per
member), then the other splits of the chosen point as one more; a member that stops early leaves the stack. Each
member computes what it would alone (its own batches in stored order, batch statistics, dropout mask, Adam state
and early stopping; ``tests/test_hear_batched.py`` checks kept epochs and scores against the sequential trainer,
``batched=False`` / ``--no-batched``). Batching saves launches and Python overhead, not arithmetic: on a CPU
the 1024-wide predictor's matrix products, which the protocol fixes, remain most of the time in either trainer
(``benchmarks/hear/RESULTS.md`` has the measured ratios to heareval, taken before batching). ``precision="bf16"``
(``--precision bf16``) autocasts the predictor's matrix products to bfloat16; it pays only where the hardware
has bfloat16 matrix units, and scores move by a few thousandths on average.

One deliberate difference: a last training batch of a single row is dropped (batch norm cannot train on one
row; heareval stops with an error there).

Outputs in ``OUT``: ``scores.json`` (per model and task: every metric per split, mean, std, the chosen grid
point, all grid points, timings) and ``scores.md`` (one row per model, one column per task: the primary score,
mean ± std). Both are rewritten atomically and keep the results of other models and tasks.

Code: :mod:`~audiocnn.hear.protocol` (grid, splits, task metadata), :mod:`~audiocnn.hear.frames` (the data on the
device), :mod:`~audiocnn.hear.predictor` (the predictor, its training and test scores),
:mod:`~audiocnn.hear.events` (event postprocessing), :mod:`~audiocnn.hear.report` (``scores.json``,
``scores.md``); this module runs a task (:func:`evaluate_embeddings`) and the command (:func:`evaluate`).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from audiocnn.hear.embeddings import HearEvalError, embed_task, is_embedding_folder, load_hear_module, read_split
from audiocnn.hear.frames import Frames, split_frames
from audiocnn.hear.batched import fit_batched
from audiocnn.hear.predictor import Fitted, finite_or_none, fit, new_model, test_scores
from audiocnn.hear.protocol import GRID_POINTS, SEED, read_labels, task_spec, fold_splits, sample_grid, task_grid
from audiocnn.hear.report import conf_text, mean_pm, write_reports
from audiocnn.hear.tasks import find_tasks, read_task
from audiocnn.core.runtime import pick_device

__all__ = ["evaluate", "evaluate_embeddings"]


# --- a whole task --------------------------------------------------------------------------------------------------

def evaluate_embeddings(folder: str | Path, *, device: str | torch.device | None = None, seed: int = SEED,
                        grid_points: int = GRID_POINTS, grid: dict[str, list] | None = None,
                        batched: bool = True, precision: str = "fp32",
                        log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train and score one task from its embedding folder (heareval's layout).

    Args:
        folder: a task's embedding folder (:func:`~audiocnn.hear.embeddings.embed_task`, or heareval's).
        device: default: CUDA when available, else CPU.
        seed: seeds the grid sampling and torch, as heareval's ``seed_everything(42)``.
        grid_points: points of the grid trained on the first split.
        grid: replaces entries of the task's grid (tests use a small ``max_epochs``).
        batched: train the grid points, then the other splits, as stacked models
            (:func:`~audiocnn.hear.batched.fit_batched`); ``False``: one after the other
            (:func:`~audiocnn.hear.predictor.fit`, the reference).
        precision: the predictor's arithmetic, ``fp32`` or ``bf16`` (autocast).

    Returns:
        The task's record for ``scores.json``.
    """
    folder = Path(folder)
    t0 = time.perf_counter()
    dev = pick_device(device)
    metadata = json.loads((folder / "task_metadata.json").read_text())
    labels = read_labels(folder)
    spec = task_spec(folder, metadata, labels)
    split_names = metadata.get("splits") or sorted(p.name[:-len(".embedding-dimensions.json")]
                                                   for p in folder.glob("*.embedding-dimensions.json"))
    splits = fold_splits(metadata["split_mode"], list(split_names))
    label_index = {label: i for i, label in enumerate(labels)}
    data = {}
    for name in split_names:
        events = json.loads((folder / f"{name}.json").read_text()) if spec.embedding_type == "event" else None
        data[name] = split_frames(read_split(folder, name), label_index, events, str(folder / name), dev)
        if spec.prediction_type == "multiclass" and not bool((data[name].y.sum(1) == 1).all()):
            raise HearEvalError(f"{folder / name}: a multiclass task needs exactly one label per row")
    loaded = time.perf_counter() - t0

    conf_grid = task_grid(metadata)
    conf_grid.update(grid or {})
    confs = sample_grid(conf_grid, grid_points, seed)

    joined: dict[tuple[str, ...], Frames] = {}

    def parts(split: dict[str, list[str]], key: str) -> Frames:
        names = tuple(split[key])              # one object per set of folds: the grid's members share their rows
        if names not in joined:
            joined[names] = Frames.cat([data[s] for s in names])
        return joined[names]

    def train_all(confs_: list[dict[str, Any]], splits_: list[dict[str, list[str]]], seed_: int) -> Iterator[Fitted]:
        """Both trainers start from the same weights: all drawn, in order, right after seeding."""
        torch.manual_seed(seed_)
        pairs = [(parts(sp, "train"), parts(sp, "valid")) for sp in splits_]
        models = [new_model(spec, c, t.x.shape[1], dev) for c, (t, _) in zip(confs_, pairs)]
        if batched:
            yield from fit_batched(spec, confs_, [t for t, _ in pairs], [v for _, v in pairs], models=models,
                                   precision=precision)
        else:
            for conf, (t, v), model in zip(confs_, pairs, models):
                yield fit(spec, conf, t, v, model=model, precision=precision)

    results = []
    for i, fitted in enumerate(train_all(confs, [splits[0]] * len(confs), seed)):
        conf = fitted.conf
        results.append(fitted)
        if log is not None:
            log(f"{spec.name}: grid point {i + 1}/{len(confs)} {conf_text(conf)}: validation {spec.primary} "
                f"{fitted.validation_score:.4f} at epoch {fitted.epoch} ({fitted.epochs} epochs, "
                f"{fitted.seconds:.1f} s)")
    sign = 1 if spec.use_scoring else -1
    ranked = sorted(results, key=lambda r: -math.inf if math.isnan(r.validation_score) else sign * r.validation_score,
                    reverse=True)
    best = ranked[0]
    per_split = [best]
    for split, fitted in zip(splits[1:], train_all([best.conf] * (len(splits) - 1), splits[1:], seed + 1)):
        per_split.append(fitted)
        if log is not None:
            log(f"{spec.name}: split test={'|'.join(split['test'])}: validation {spec.primary} "
                f"{fitted.validation_score:.4f} at epoch {fitted.epoch} ({fitted.seconds:.1f} s)")
    split_records, table = [], {}
    for split, fitted in zip(splits, per_split):
        scores = test_scores(spec, fitted, parts(split, "test"), precision=precision)
        key = "|".join(split["test"])
        table[key] = scores
        split_records.append({**split, **fitted.summary(), "scores": {k: finite_or_none(v) for k, v in scores.items()}})
    summary = {}
    for metric in spec.evaluation:
        values = [table[k][metric] for k in table]
        with np.errstate(invalid="ignore"):  # d_prime is infinite where a label is separated perfectly
            mean, std = float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None
        summary[metric] = {"mean": finite_or_none(mean), "std": finite_or_none(std), "splits": {k: finite_or_none(table[k][metric]) for k in table}}
    seconds = time.perf_counter() - t0
    record = {
        "task_name": spec.name, "version": metadata.get("version"), "embedding_type": spec.embedding_type,
        "prediction_type": spec.prediction_type, "split_mode": metadata["split_mode"], "primary": spec.primary,
        "scores": summary, "grid_point": {**best.conf, "postprocessing": dict(best.postprocessing)},
        "validation_score": finite_or_none(best.validation_score), "grid": [r.summary() for r in results],
        "splits": split_records, "embedding_folder": str(folder), "device": str(dev), "seed": seed,
        "batched": batched, "precision": precision,
        "seconds": {"loading": round(loaded, 3), "downstream": round(seconds - loaded, 3), "total": round(seconds, 3)},
    }
    if log is not None:
        s = summary[spec.primary]
        log(f"{spec.name}: test {spec.primary} {mean_pm(s)} over {len(splits)} split(s) in {seconds:.1f} s")
    return record


# --- the command ---------------------------------------------------------------------------------------------------

def evaluate(module_or_run: str | None = None, tasks_dir: str | Path | None = None, *, model: str | None = None,
             out: str | Path = "results", embeddings: str | Path | None = None, tasks: list[str] | None = None,
             device: str | None = None, batch_size: int = 32, progress: str = "auto", seed: int = SEED,
             grid_points: int = GRID_POINTS, grid: dict[str, list] | None = None, batched: bool = True,
             precision: str = "fp32", log: Callable[[str], None] | None = print) -> dict[str, Any]:
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
        batched, precision: see :func:`evaluate_embeddings`.

    Returns:
        This run's entry of ``scores.json``: ``{"name", "module", "model", "device", "tasks": {task: record},
        "errors": {task: message}}``. A task that fails is reported in ``errors`` and the others go on.
    """
    out = Path(out)
    dev = pick_device(device)
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
            record = evaluate_embeddings(folder, device=dev, seed=seed, grid_points=grid_points, grid=grid,
                                         batched=batched, precision=precision, log=log)
        except (HearEvalError, ValueError, OSError) as e:
            entry["errors"][task_name] = f"{type(e).__name__}: {e}"
            if log is not None:
                log(f"{task_name}: ERROR {e}")
            write_reports(out, name, entry)
            continue
        record["seconds"]["embedding"] = None if embed_seconds is None else round(embed_seconds, 3)
        record["embedding_cached"] = embed_seconds == 0.0
        record["seconds"]["task"] = round(time.perf_counter() - t0, 3)
        record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
        entry["tasks"][record["task_name"]] = record
        write_reports(out, name, entry)  # after every task: a later failure loses nothing
    if log is not None:
        log(f"wrote {out / 'scores.json'} and {out / 'scores.md'}")
    return {"name": name, **entry}
