"""heareval 2021.1.3's protocol as data: the predictor's hyperparameter grid and how it is sampled, the rotation of
folds into splits, and what a task's metadata asks of the evaluator (:class:`TaskSpec`). The protocol is described
in :mod:`audiocnn.hear.evaluate`."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiocnn.hear.embeddings import HearEvalError
from audiocnn.hear.scores import EVENT_SCORES, SCENE_SCORES

__all__ = ["GRID", "GRID_POINTS", "POSTPROCESSING_GRID", "SEED", "TASK_GRIDS", "TaskSpec", "fold_splits",
           "parameter_grid", "sample_grid", "task_grid"]

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


# --- task metadata -------------------------------------------------------------------------------------------------

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


def task_spec(folder: Path, metadata: dict[str, Any], labels: list[str]) -> TaskSpec:
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


def read_labels(folder: Path) -> list[str]:
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
