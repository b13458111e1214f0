"""Examples, splits, and the helpers that divide examples without leaking classes or groups.

Example:
    >>> train, val, test = group_split(examples, (0.8, 0.1, 0.1), seed=0)   # no speaker in two parts
    >>> train, val, test = holdout_split(examples, val_fraction=0.1, test_fraction=0.1, seed=0)
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from audiocnn.core.errors import ConfigError, DataError

__all__ = ["DataError", "Example", "Splits", "group_split", "holdout_fractions", "holdout_split", "stratified_split"]


@dataclass
class Example:
    """One audio clip.

    Attributes:
        path: the audio file.
        target: already encoded (see :meth:`audiocnn.tasks.Task.encode`): multiclass: class
            index ``int``; binary: ``0``/``1``; multilabel: multi-hot ``tuple[int, ...]`` of
            ``len(labels)``; regression: ``tuple[float, ...]``.
        group: who or what must not cross splits (speaker, actor, recording); ``""`` if none.
        meta: anything else from the file name or metadata (``label``, ``fold``, ``speaker``...).
    """

    path: str
    target: Any
    group: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class Splits:
    """A dataset divided into train/val/test. ``labels`` are class names (regression: target names)."""

    task: str
    labels: list[str]
    train: list[Example]
    val: list[Example]
    test: list[Example]
    checked: bool = field(default=False, compare=False, repr=False)
    """Every file was decoded and checked by :func:`~audiocnn.data.cache.prepare_splits` (so it is not done twice)."""
    extra: dict[str, list[Example]] = field(default_factory=dict)
    """Named extra test sets (``data.extra_tests``, e.g. ``test_inverted``), each evaluated after training."""
    skipped: list[tuple[str, str, str]] = field(default_factory=list, compare=False, repr=False)
    """``(split, path, reason)`` of the files ``data.on_error: skip`` left out; a run writes them to skipped.csv."""

    def parts(self) -> dict[str, list[Example]]:
        return {"train": self.train, "val": self.val, "test": self.test, **self.extra}


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or len(f) == 0 or (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise ConfigError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    return f


def holdout_fractions(*, val_fraction: float, test_fraction: float) -> tuple[float, float, float]:
    """(train, val, test) shares: ``test_fraction`` of all, then ``val_fraction`` of the rest.

    Raises:
        DataError: naming ``data.val_fraction``/``data.test_fraction`` when out of [0, 1).
    """
    for key, value in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise DataError(f"{key}={value} must be in [0, 1)")
    rest = 1.0 - test_fraction
    return rest * (1.0 - val_fraction), rest * val_fraction, test_fraction


def _default_key(ex: Example) -> Hashable:
    # class index (multiclass/binary); multilabel and regression targets are not strata
    return ex.target if isinstance(ex.target, (int, np.integer, str)) else None


def stratified_split(
    examples: Sequence[Example],
    fractions: Sequence[float],
    seed: int,
    *,
    key: Callable[[Example], Hashable] = _default_key,
) -> list[list[Example]]:
    """Split so every part has about ``fractions[j]`` of every class.

    Rounding is carried from class to class, so part sizes match ``fractions`` overall even with
    many small classes (10 classes of 3 still give a non-empty 10 % test part). Every class with at
    least one example keeps one in the first part (training).

    Args:
        examples: the examples, in any order.
        fractions: share per part, summing to 1 (e.g. ``(0.8, 0.1, 0.1)``).
        seed: shuffling seed; the same inputs and seed give the same parts.
        key: stratum of an example (default: its class for multiclass/binary targets).

    Returns:
        One list per fraction, each in the input order.
    """
    f = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    strata: dict[Hashable, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        strata[key(ex)].append(i)
    names = sorted(strata, key=repr)
    owed = np.zeros(len(f))
    assign = np.zeros(len(examples), dtype=int)
    for s in (names[j] for j in rng.permutation(len(names))):
        idx = np.asarray(strata[s])[rng.permutation(len(strata[s]))]
        n = len(idx)
        want = owed + f * n
        count = np.maximum(np.floor(want), 0).astype(int)
        extra = n - count.sum()
        order = np.argsort(-(want - count), kind="stable")
        if extra > 0:
            count[order[:extra]] += 1
        while count.sum() > n:
            j = max((j for j in range(len(f)) if count[j] > 0), key=lambda j: count[j] - want[j])
            count[j] -= 1
        if n and count[0] == 0 and f[0] > 0:
            count[int(np.argmax(count))] -= 1
            count[0] += 1
        owed = want - count
        start = 0
        for j, c in enumerate(count):
            assign[idx[start:start + c]] = j
            start += c
    return [[ex for i, ex in enumerate(examples) if assign[i] == j] for j in range(len(f))]


def group_split(examples: Sequence[Example], fractions: Sequence[float], seed: int) -> list[list[Example]]:
    """Split by ``Example.group`` so no group is in two parts; sizes approach ``fractions``.

    Groups are shuffled with ``seed`` (largest first, ties in random order) and each goes to the
    part furthest below its target size. Examples with an empty group are groups of one.

    Args:
        examples: the examples.
        fractions: share of examples per part, summing to 1.
        seed: shuffling seed.

    Returns:
        One list per fraction, each in the input order.
    """
    f = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[ex.group or f"\0{i}"].append(i)
    names = sorted(groups)
    names = [names[j] for j in rng.permutation(len(names))]
    names.sort(key=lambda g: -len(groups[g]))  # stable: random order among equal sizes
    target = f * len(examples)
    size = np.zeros(len(f))
    assign = np.zeros(len(examples), dtype=int)
    for g in names:
        deficit = np.where(f > 0, target - size, -np.inf)
        j = int(np.argmax(deficit))
        assign[groups[g]] = j
        size[j] += len(groups[g])
    return [[ex for i, ex in enumerate(examples) if assign[i] == j] for j in range(len(f))]


def holdout_split(
    examples: Sequence[Example],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    by_group: bool = False,
) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, val, test): ``test_fraction`` of all, ``val_fraction`` of the rest; stratified by
    class, or by group (no group in two parts) when ``by_group``."""
    fractions = holdout_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
    if by_group:
        train, val, test = group_split(examples, fractions, seed)
    else:
        train, val, test = stratified_split(examples, fractions, seed)
    return train, val, test
