"""``audiocnn cv RECIPE``: k-fold or leave-one-group-out cross-validation, each fold a normal run folder.

    audiocnn cv recipes/esc10.yaml                      # ESC's 5 official folds, each held out once
    audiocnn cv recipes/digits_speakers.yaml            # FSDD: each speaker held out once (train on the others)
    audiocnn cv recipes/emotion.yaml --folds 6          # RAVDESS: 6 folds of 4 actors each
    audiocnn cv recipes/esc10.yaml --only 1 2           # some folds (a table of those)

The folds come from the dataset, never from random clips: a dataset with official folds (ESC: ``data.test_fold``)
is cross-validated over them; a dataset with groups (FSDD speakers, RAVDESS actors: ``data.test_groups``) holds
out one group per fold, or with ``--folds K`` K folds of whole groups (sorted names, dealt in turn). Inside each
fold the dataset's own rule picks the validation data from the training side (ESC: the next fold; FSDD: takes 5-9
of the other speakers; RAVDESS: ``val_fraction`` of the other actors), so no test clip chooses a checkpoint.

Output, in ``--out`` (default ``trainer.output_dir/<name>-cv``): one run folder per fold
(``fold-<id>/<stamp>/``, as ``audiocnn train`` writes it), ``cv.json`` (every finished fold's test metrics, written
after each fold), ``cv.md`` (the table: per-fold scores, mean ± sample standard deviation, the command) and
``cv.png`` (per-fold bars). Run the same command again after an interruption: finished folds are kept and the
others trained; other settings in the same folder are refused.
"""
from __future__ import annotations

import json
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from audiocnn.config import Config, config_from_dict, config_to_dict
from audiocnn.core.errors import ConfigError
from audiocnn.core.io import atomic_write_text, write_json
from audiocnn.data import build_splits
from audiocnn.pipelines import train
from audiocnn.plots import fold_scores, save_figure

__all__ = ["Fold", "cross_validate", "plan_folds"]


@dataclass(frozen=True)
class Fold:
    """One fold: its id (``1``, ``theo``, ``g1``), what it holds out, and the data keys that do it."""

    id: str
    held_out: str
    overrides: dict


def plan_folds(cfg: Config, *, folds: int = 0) -> tuple[str, list[Fold]]:
    """The protocol (``"5-fold (official folds)"``, ...) and its folds, read from the dataset's examples.

    Raises:
        ConfigError: the dataset has neither folds nor groups, or ``folds`` does not fit them.
    """
    splits = build_splits(cfg.data)
    examples = [ex for part in (splits.train, splits.val, splits.test) for ex in part]
    fold_ids = sorted({str(ex.meta["fold"]) for ex in examples if "fold" in ex.meta}, key=_natural_key)
    if fold_ids:
        if folds and folds != len(fold_ids):
            raise ConfigError(f"--folds {folds}: data.name={cfg.data.name} has {len(fold_ids)} official folds "
                              f"({', '.join(fold_ids)}); cross-validation uses them: leave out --folds")
        return (f"{len(fold_ids)}-fold (the dataset's folds; validation: data.val_fold's rule)",
                [Fold(f, f"fold {f}", {"test_fold": int(f) if f.isdigit() else f, "val_fold": None})
                 for f in fold_ids])
    groups = sorted({ex.group for ex in examples if ex.group}, key=_natural_key)
    if len(groups) < 2:
        raise ConfigError(f"data.name={cfg.data.name}: its examples have no folds and {len(groups)} group(s) "
                          "(speakers, actors); cross-validation needs a dataset with official folds or groups")
    _check_holds_out_groups(cfg, groups[0])
    if not folds or folds == len(groups):
        return (f"leave-one-group-out over {len(groups)} groups",
                [Fold(g, g, {"test_groups": [g]}) for g in groups])
    if not 2 <= folds < len(groups):
        raise ConfigError(f"--folds {folds}: data.name={cfg.data.name} has {len(groups)} groups; give 2 to "
                          f"{len(groups)} folds")
    dealt = [groups[i::folds] for i in range(folds)]
    return (f"{folds}-fold over {len(groups)} groups (whole groups, dealt in sorted order)",
            [Fold(f"g{i + 1}", " ".join(chunk), {"test_groups": chunk}) for i, chunk in enumerate(dealt)])


def _check_holds_out_groups(cfg: Config, group: str) -> None:
    """The dataset honours ``data.test_groups``: holding out ``group`` makes its test split exactly that group."""
    data = config_to_dict(cfg)["data"]
    trial = build_splits(config_from_dict({"data": {**data, "test_groups": [group]}}).data)
    if not trial.test or {ex.group for ex in trial.test} != {group} or \
            any(ex.group == group for ex in (*trial.train, *trial.val)):
        raise ConfigError(f"data.name={cfg.data.name} has groups but does not hold them out with data.test_groups; "
                          "cross-validation by group needs a dataset that does (fsdd, ravdess)")


def _natural_key(text: str):
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def cross_validate(cfg: Config, *, recipe: str, overrides: Sequence[str] = (), folds: int = 0,
                   only: Sequence[str] = (), out: str | Path | None = None, quiet: bool = False) -> Path:
    """Train and test every fold (:func:`plan_folds`), then write the table; returns the cross-validation folder.

    ``recipe`` and ``overrides`` are what the user typed; they go into the table's reproducing command.
    """
    protocol, plan = plan_folds(cfg, folds=folds)
    if only:
        unknown = [o for o in only if o not in {f.id for f in plan}]
        if unknown:
            raise ConfigError(f"--only {' '.join(unknown)}: not a fold of this protocol; folds: "
                              f"{', '.join(f.id for f in plan)}")
        plan = [f for f in plan if f.id in only]
    name = cfg.name or "run"
    cv_dir = Path(out) if out is not None else Path(cfg.trainer.output_dir) / f"{name}-cv"
    cv_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["audiocnn", "cv", shlex.quote(recipe), *map(shlex.quote, overrides),
                        *(["--folds", str(folds)] if folds else []), *(["--only", *only] if only else [])])
    state_path = cv_dir / "cv.json"
    base = config_to_dict(cfg)
    state = {"recipe": base, "protocol": protocol, "command": command, "folds": {}}
    if state_path.is_file():
        before = json.loads(state_path.read_text())
        if before.get("recipe") != base:
            raise ConfigError(f"{cv_dir} holds a cross-validation of other settings ({before.get('command')}); "
                              "give another --out, or remove the folder")
        state["folds"] = before.get("folds", {})
    for i, fold in enumerate(plan, 1):
        if fold.id in state["folds"]:
            _say(quiet, f"fold {fold.id} ({i}/{len(plan)}): done before, "
                        f"{state['folds'][fold.id]['run']}")
            continue
        _say(quiet, f"fold {fold.id} ({i}/{len(plan)}): holding out {fold.held_out}")
        fold_cfg = config_from_dict({**base, "name": f"fold-{fold.id}",
                                     "data": {**base["data"], **fold.overrides},
                                     "trainer": {**base["trainer"], "output_dir": str(cv_dir)}})
        run_dir = train(fold_cfg, quiet=quiet)
        written = json.loads((run_dir / "eval" / "test_metrics.json").read_text())
        metrics = {k: v for k, v in written.items() if k not in ("split", "checkpoint", "n", "skipped")}
        state["folds"][fold.id] = {"held_out": fold.held_out, "run": str(run_dir.relative_to(cv_dir)),
                                   "n": written.get("n"), "metrics": metrics}
        write_json(state_path, state)  # after every fold: an interrupted cross-validation keeps what it finished
        _say(quiet, f"fold {fold.id}: " + " | ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                                      if isinstance(v, float)))
    write_json(state_path, state)
    done = [f for f in plan if f.id in state["folds"]]
    table = _table(name, protocol, command, done, state["folds"])
    atomic_write_text(cv_dir / "cv.md", table)
    _plot(name, protocol, done, state["folds"], cv_dir / "cv.png")
    _say(quiet, table)
    return cv_dir


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stdout, flush=True)


def _columns(results: dict) -> list[str]:
    first = next(iter(results.values()))["metrics"]
    return [k for k, v in first.items() if isinstance(v, (int, float)) and k != "loss"] + ["loss"]


def _mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else ""
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _table(name: str, protocol: str, command: str, plan: list[Fold], results: dict) -> str:
    cols = _columns({f.id: results[f.id] for f in plan})
    lines = [f"# {name}: {protocol}", "", f"Reproduce: `{command}`", "",
             "| fold | held out | test clips | " + " | ".join(cols) + " | run |",
             "|---|---|---|" + "---|" * len(cols) + "---|"]
    for f in plan:
        r = results[f.id]
        cells = [f"{r['metrics'][c]:.4f}" if isinstance(r["metrics"].get(c), (int, float)) else "" for c in cols]
        lines.append(f"| {f.id} | {r['held_out']} | {r['n']} | " + " | ".join(cells) + f" | {r['run']} |")
    means = [_mean_std([float(results[f.id]["metrics"][c]) for f in plan
                        if isinstance(results[f.id]["metrics"].get(c), (int, float))]) for c in cols]
    lines.append(f"| mean ± std ({len(plan)} folds) | | | " + " | ".join(means) + " | |")
    lines += ["", "std: sample standard deviation over the folds (n - 1)."]
    return "\n".join(lines) + "\n"


def _plot(name: str, protocol: str, plan: list[Fold], results: dict, path: Path) -> None:
    metric = _columns({f.id: results[f.id] for f in plan})[0]
    fig = fold_scores([f.id for f in plan], [float(results[f.id]["metrics"][metric]) for f in plan],
                      metric=metric, title=f"{name}: {protocol}")
    save_figure(fig, path)
