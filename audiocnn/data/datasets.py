"""Named datasets: each builder reads a layout on disk (never downloads) and returns Splits.

Builders follow each dataset's official protocol where one exists:

==================  ==============================================================================
synthetic           generated once into ``root`` (default ``data/synthetic``); per class by index:
                    first 70 % train, next 15 % val, last 15 % test
folder              ``root/<class>/**/*.wav``; stratified ``test_fraction``, then ``val_fraction``
manifest            CSV ``data.manifest``: path, label column(s), optional split / fold / group
fsdd                ``recordings/{digit}_{speaker}_{index}.wav``: index 0-4 test (official),
                    5-9 val (ours: the same speakers, next five takes), 10-49 train; with
                    ``test_groups`` (speakers): theirs test, 5-9 of the others val, the rest train
esc10, esc50        ``meta/esc10.csv`` / ``meta/esc50.csv`` + ``audio/``: fold ``test_fold``
                    (default 1) test, ``val_fold`` (default the next fold) val, the rest train
ravdess             ``Actor_XX/03-01-EE-II-SS-RR-AA.wav``: actors in ``test_groups`` test,
                    ``val_fraction`` of the other actors val (no actor in two splits)
gtzan               ``genres/<genre>/<genre>.000NN.wav`` (or ``genres_original/``); stratified
speech_commands     ``<word>/<speaker>_nohash_<n>.wav`` + ``validation_list.txt``/``testing_list.txt``
==================  ==============================================================================

Example:
    >>> splits = build_splits(DataConfig(name="fsdd", root="data/fsdd"))
    >>> len(splits.train), len(splits.val), len(splits.test), splits.labels[:3]
    (1600, 200, 200, ['0', '1', '2'])
"""
from __future__ import annotations

import csv
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from audiocnn.audio.io import AUDIO_EXTENSIONS, AudioError, load_audio
from audiocnn.data import synthetic as synth
from audiocnn.data.splits import DataError, Example, Splits, group_split, holdout_fractions, holdout_split
from audiocnn.core.registry import Registry
from audiocnn.tasks import FALSE_STRINGS, TASKS, TRUE_STRINGS, get_task

__all__ = ["DATASETS", "RAVDESS_EMOTIONS", "build_splits", "dataset_modality", "default_root", "register_dataset"]

DATASETS: Registry[Callable[[Any], Any]] = Registry("dataset")
"""Every dataset, audio and image: name -> builder(cfg: DataConfig). Each builder's ``modality`` attribute
(``audio`` or ``image``) says which input pipeline reads it (:mod:`audiocnn.modalities`)."""


def register_dataset(name: str, *, modality: str = "audio", num_labels: int | None = None
                     ) -> Callable[[Callable], Callable]:
    """Register a dataset builder under ``name``, declaring its modality and, for a fixed label set, its size
    (so ``audiocnn summary`` needs no data on disk)."""

    def deco(fn: Callable) -> Callable:
        fn.modality = modality
        fn.num_labels = num_labels
        return DATASETS.register(name)(fn)

    return deco


def dataset_modality(name: str) -> str:
    """``audio`` or ``image``: the modality a registered dataset declares; an unknown name is a DataError."""
    try:
        return DATASETS.get(name).modality
    except KeyError as e:
        raise DataError(f"data.name: {e}") from None
"""name -> builder(cfg: DataConfig) -> Splits."""

_DOWNLOADABLE = ("fsdd", "esc10", "esc50", "ravdess", "gtzan", "speech_commands")


def default_root(name: str) -> Path:
    """``$AUDIOCNN_DATA/<name>`` (``data/<name>`` when unset): where a dataset lives without ``data.root``."""
    return Path(os.path.expanduser(os.environ.get("AUDIOCNN_DATA") or "data")) / name


def _root(cfg: Any, layout: str) -> Path:
    """``data.root`` (or the default), which must exist; the error says where to put the files."""
    root = Path(os.path.expanduser(cfg.root)) if cfg.root else default_root(cfg.name)
    if root.is_dir():
        return root
    how = (f"download it with `audiocnn data download {cfg.name}`, or put the files"
           if cfg.name in _DOWNLOADABLE else "put the files")
    raise DataError(f"dataset {cfg.name!r} not found at {root} (data.root={cfg.root!r}): {how} there "
                    f"(layout: {layout}), or set data.root to the folder that holds them")


def _audio_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file() and not p.name.startswith("."))


def _check_task(cfg: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if cfg.task not in allowed:
        raise DataError(f"data.task={cfg.task!r} is not available for dataset {cfg.name!r}; use "
                        f"{' or '.join(map(repr, allowed))}")


def _natural(values: Iterable[str]) -> list[str]:
    """Sorted, numerically when every value is a number ('2' before '10')."""
    values = sorted(set(values))
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


def build_splits(cfg: Any) -> Splits:
    """Build the train/val/test splits of the dataset ``cfg.name`` from files on disk.

    Args:
        cfg: a ``DataConfig``.

    Raises:
        DataError: unknown dataset, missing folder (saying where to put it and naming
            ``audiocnn data download NAME``), a layout that does not match, an empty training split.
    """
    if dataset_modality(cfg.name) != "audio":
        raise DataError(f"data.name={cfg.name!r} is an image dataset; set frontend.kind: image")
    builder = DATASETS.get(cfg.name)
    if cfg.task not in TASKS:
        raise DataError(f"data.task={cfg.task!r} must be one of {', '.join(TASKS.names())}")
    splits = builder(cfg)
    if splits.task != cfg.task:
        raise DataError(f"dataset {cfg.name!r} is a {splits.task} task but data.task={cfg.task!r}; "
                        f"set data.task={splits.task}")
    if not splits.train:
        raise DataError(f"dataset {cfg.name!r} at {cfg.root or default_root(cfg.name)} has no training examples; "
                        "check data.root and the split settings")
    return splits


# ---------------------------------------------------------------------------------------------
# synthetic, folder


@register_dataset("synthetic")
def synthetic(cfg: Any) -> Splits:
    """Sweeps with the same average spectrum (see ``audiocnn.data.synthetic``), generated once."""
    _check_task(cfg, ["multiclass"])
    root = Path(os.path.expanduser(cfg.root)) if cfg.root else default_root("synthetic")
    try:
        synth.generate(root, num_classes=cfg.num_classes, num_per_class=cfg.num_per_class,
                       duration=cfg.duration, sample_rate=cfg.sample_rate)
    except ValueError as e:
        raise DataError(f"synthetic dataset at {root}: {e}") from None
    labels = synth.class_names(cfg.num_classes)
    n = cfg.num_per_class
    n_train = max(1, round(synth.SPLIT_FRACTIONS[0] * n))
    n_val = min(n - n_train, round(synth.SPLIT_FRACTIONS[1] * n))
    parts: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for c, name in enumerate(labels):
        for i in range(n):
            part = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            parts[part].append(Example(str(root / name / f"{name}_{i:04d}.wav"), c, "", {"label": name, "index": i}))
    return Splits("multiclass", labels, **parts)


@register_dataset("folder")
def folder(cfg: Any) -> Splits:
    """``root/<class>/...audio`` (any depth below the class folder); stratified split."""
    _check_task(cfg, ["multiclass", "binary"])
    root = _root(cfg, "<root>/<class name>/<file>.wav, one folder per class")
    classes = {d.name: _audio_files(d, recursive=True) for d in sorted(root.iterdir())
               if d.is_dir() and not d.name.startswith((".", "_"))}
    classes = {k: v for k, v in classes.items() if v}
    if len(classes) < 2:
        raise DataError(f"{root}: found {len(classes)} class folder(s) with audio ({', '.join(classes) or 'none'}); "
                        "a folder dataset needs one subfolder per class with at least two classes")
    labels = sorted(classes)
    if cfg.task == "binary" and len(labels) != 2:
        raise DataError(f"{root}: data.task=binary needs exactly 2 class folders, found {labels}")
    examples = [Example(str(p), labels.index(c), "", {"label": c}) for c in labels for p in classes[c]]
    train, val, test = holdout_split(examples, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                                     seed=cfg.split_seed)
    return Splits(cfg.task, labels, train, val, test)


# ---------------------------------------------------------------------------------------------
# manifest

_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test", "eval": "test"}


def _fold_split(examples: list[Example], *, test_fold: Any, val_fold: Any, where: str):
    """(train, val, test) by ``meta['fold']``: ``test_fold`` (default: the first fold) and
    ``val_fold`` (default: the fold after it, wrapping around) are held out, the rest is train."""
    order = _natural(str(ex.meta["fold"]) for ex in examples)
    test = str(test_fold) if test_fold is not None else order[0]
    if test not in order:
        raise DataError(f"{where}: data.test_fold={test_fold} is not one of the folds {order}")
    if val_fold is not None:
        val = str(val_fold)
        if val not in order:
            raise DataError(f"{where}: data.val_fold={val_fold} is not one of the folds {order}")
    else:
        val = order[(order.index(test) + 1) % len(order)]
    if val == test:
        raise DataError(f"{where}: data.val_fold and data.test_fold are both {test}; choose different folds")
    parts: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for ex in examples:
        fold = str(ex.meta["fold"])
        parts["test" if fold == test else "val" if fold == val else "train"].append(ex)
    return parts["train"], parts["val"], parts["test"]


def _fold_str(value: str) -> str:
    try:
        f = float(value)
        return str(int(f)) if f.is_integer() else value.strip()
    except ValueError:
        return value.strip()


@register_dataset("manifest")
def manifest(cfg: Any) -> Splits:
    """A CSV with ``path`` (relative to the CSV's folder), label columns and optional
    ``split``/``fold``/``group``.

    Splitting: a ``split`` column wins (val taken from train by ``val_fraction`` when it names no
    val rows); else a ``fold`` column (``test_fold``, default the first fold; ``val_fold``, default
    the next); else a ``group`` column (group-aware ``test_fraction``/``val_fraction``); else
    stratified by class.
    """
    if cfg.manifest:
        path = Path(os.path.expanduser(cfg.manifest))
    elif cfg.root:
        path = Path(os.path.expanduser(cfg.root)) / "manifest.csv"
    else:
        raise DataError("data.name=manifest needs data.manifest=<file.csv> "
                        "(columns path, label, optional split/fold/group)")
    if not path.is_file():
        raise DataError(f"manifest {path} not found (data.manifest={cfg.manifest!r}); point data.manifest at the CSV")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if "path" not in columns:
        raise DataError(f"{path}: no 'path' column (columns: {', '.join(columns) or 'none'}); name the column "
                        "with the audio files 'path'")
    label_cols = list(cfg.label_columns)
    missing = [c for c in label_cols if c not in columns]
    if not label_cols or missing:
        raise DataError(f"{path}: data.label_columns={label_cols} but the CSV has columns {columns}; "
                        "set data.label_columns to the label column(s)")
    if not rows:
        raise DataError(f"{path}: no rows")
    task = cfg.task

    # labels and raw targets per task
    if task in ("multiclass", "binary"):
        if len(label_cols) != 1:
            raise DataError(f"{path}: data.task={task} takes one label column, got data.label_columns={label_cols}")
        col = label_cols[0]
        empty = [i + 2 for i, r in enumerate(rows) if r[col] == ""]
        if empty:
            raise DataError(f"{path}: column {col!r} is empty on line(s) {empty[:10]}; every row needs a label")
        labels = _natural(r[col] for r in rows)
        if task == "binary":
            if len(labels) > 2:
                raise DataError(f"{path}: data.task=binary but column {col!r} has {len(labels)} values {labels[:10]}")
            low = [v.lower() for v in labels]
            if set(low) <= TRUE_STRINGS | FALSE_STRINGS:
                neg = next((v for v in labels if v.lower() in FALSE_STRINGS), "0")
                pos = next((v for v in labels if v.lower() in TRUE_STRINGS), "1")
                labels = [neg, pos]
            elif len(labels) != 2:
                raise DataError(f"{path}: data.task=binary needs two values in column {col!r}, found {labels}")
        raws: list[Any] = [r[col] for r in rows]
    elif task == "multilabel":
        if len(label_cols) == 1:
            col = label_cols[0]
            raws = [[t.strip() for t in r[col].split(";") if t.strip()] for r in rows]
            labels = sorted({t for names in raws for t in names})
        else:
            labels = label_cols
            raws = []
            for i, r in enumerate(rows):
                bad = [c for c in label_cols if r[c].lower() not in TRUE_STRINGS | FALSE_STRINGS]
                if bad:
                    raise DataError(f"{path}, line {i + 2}: multilabel column {bad[0]!r} holds {r[bad[0]]!r}; "
                                    "use 0/1 (or one column with ';'-separated labels)")
                raws.append([c for c in label_cols if r[c].lower() in TRUE_STRINGS])
    else:
        labels = label_cols
        raws = [[r[c] for c in label_cols] for r in rows]

    base = path.parent
    split_col = "split" in columns
    fold_col = "fold" in columns
    group_col = "group" in columns
    examples: list[Example] = []
    split_of: list[str] = []
    for i, (r, raw) in enumerate(zip(rows, raws)):
        if not r["path"]:
            raise DataError(f"{path}, line {i + 2}: empty 'path'")
        try:
            target = get_task(task).encode(labels, raw)
        except ValueError as e:
            raise DataError(f"{path}, line {i + 2}: {e}") from None
        meta = {k: v for k, v in r.items() if k not in ("path", "group")}
        if task in ("multiclass", "binary"):
            meta["label"] = labels[target]
        if fold_col:
            meta["fold"] = _fold_str(r["fold"])
        p = Path(os.path.expanduser(r["path"]))
        examples.append(Example(str(p if p.is_absolute() else base / p), target, r["group"] if group_col else "", meta))
        if split_col:
            s = _SPLIT_NAMES.get(r["split"].lower())
            if s is None:
                raise DataError(f"{path}, line {i + 2}: split {r['split']!r} is not train, val or test")
            split_of.append(s)

    by_group = group_col and any(ex.group for ex in examples)
    if split_col:
        parts = {s: [ex for ex, k in zip(examples, split_of) if k == s] for s in ("train", "val", "test")}
        train, val, test = parts["train"], parts["val"], parts["test"]
        if not val and cfg.val_fraction > 0:
            train, val, _ = holdout_split(train, val_fraction=cfg.val_fraction, test_fraction=0.0,
                                          seed=cfg.split_seed, by_group=by_group)
    elif fold_col:
        train, val, test = _fold_split(examples, test_fold=cfg.test_fold, val_fold=cfg.val_fold, where=str(path))
    else:
        train, val, test = holdout_split(examples, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                                         seed=cfg.split_seed, by_group=by_group)
    return Splits(task, list(labels), train, val, test)


# ---------------------------------------------------------------------------------------------
# FSDD

_FSDD = re.compile(r"^(\d)_(.+)_(\d+)$")


@register_dataset("fsdd", num_labels=10)
def fsdd(cfg: Any) -> Splits:
    """Free Spoken Digit Dataset.

    Official test: takes 0-4 of every speaker. Validation (our choice, the dataset has none):
    takes 5-9 of the same speakers; training: takes 10-49.

    With ``test_groups`` (speaker names, e.g. ``["theo"]``): every take of those speakers is the test set, unheard
    voices; validation is takes 5-9 of the other speakers and training the rest of theirs (takes 0-4 and 10-49).
    """
    _check_task(cfg, ["multiclass"])
    layout = "recordings/{digit}_{speaker}_{index}.wav"
    root = _root(cfg, layout)
    rec = root / "recordings"
    if not rec.is_dir():
        raise DataError(f"{root}: no recordings/ folder; expected {layout} (data.root={cfg.root!r})")
    labels = [str(d) for d in range(10)]
    held_out = {str(g) for g in cfg.test_groups}
    parts: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for p in _audio_files(rec):
        m = _FSDD.match(p.stem)
        if not m:
            raise DataError(f"{p}: not an FSDD name; expected {layout} (e.g. 7_jackson_32.wav)")
        digit, speaker, index = m.group(1), m.group(2), int(m.group(3))
        if held_out:
            part = "test" if speaker in held_out else "val" if 5 <= index <= 9 else "train"
        else:
            part = "test" if index <= 4 else "val" if index <= 9 else "train"
        parts[part].append(Example(str(p), int(digit), speaker, {"label": digit, "speaker": speaker, "index": index}))
    if not any(parts.values()):
        raise DataError(f"{rec}: no audio files; expected {layout}")
    speakers = sorted({ex.group for exs in parts.values() for ex in exs})
    unknown = sorted(held_out - set(speakers))
    if unknown:
        raise DataError(f"data.test_groups: speaker(s) {unknown} not found under {rec}; speakers present: {speakers}")
    if held_out and not parts["train"]:
        raise DataError(f"data.test_groups={sorted(held_out)} holds out every speaker; leave at least one to train on")
    return Splits("multiclass", labels, **parts)


# ---------------------------------------------------------------------------------------------
# ESC-10 / ESC-50


def _esc(cfg: Any, subset: str) -> Splits:
    _check_task(cfg, ["multiclass"])
    layout = f"meta/{subset}.csv and audio/<fold>-<clip>-<take>-<target>.wav"
    root = _root(cfg, layout)
    meta = root / "meta" / f"{subset}.csv"
    only_esc10 = False
    if not meta.is_file() and subset == "esc10" and (root / "meta" / "esc50.csv").is_file():
        meta, only_esc10 = root / "meta" / "esc50.csv", True  # the full ESC-50 layout, esc10 rows only
    if not meta.is_file():
        raise DataError(f"{root}: {meta.relative_to(root)} not found; expected {layout}")
    with open(meta, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    need = {"filename", "fold", "target", "category"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"{meta}: expected columns {sorted(need)}, found {sorted(rows[0]) if rows else 'no rows'}")
    if only_esc10:
        rows = [r for r in rows if r.get("esc10", "").strip().lower() == "true"]
    audio = root / "audio"
    # the CSV names .wav files; converted copies (e.g. our FLAC one) keep the stem
    by_stem: dict[str, Path] = {}
    if audio.is_dir():
        for p in _audio_files(audio):
            by_stem.setdefault(p.stem, p)
    names: dict[int, str] = {}
    examples = []
    for r in rows:
        stem = Path(r["filename"]).stem
        p = by_stem.get(stem, audio / r["filename"])  # a missing file is reported by prepare()
        target = int(r["target"])
        if names.setdefault(target, r["category"]) != r["category"]:
            raise DataError(f"{meta}: target {target} is both {names[target]!r} and {r['category']!r}")
        src = r.get("src_file", "")
        examples.append(Example(str(p), target, src, {"label": r["category"], "fold": _fold_str(r["fold"]),
                                                      "esc_target": target, "take": r.get("take", "")}))
    if not by_stem:
        raise DataError(f"{audio}: no audio files found for the {len(rows)} rows of {meta}; expected {layout}")
    order = sorted(names)  # labels: category names ordered by ESC target number
    labels = [names[t] for t in order]
    for ex in examples:
        ex.target = order.index(ex.target)
    if cfg.test_fold is not None and not 1 <= cfg.test_fold <= 5:
        raise DataError(f"data.test_fold={cfg.test_fold}: ESC folds are 1 to 5")
    test_fold = cfg.test_fold if cfg.test_fold is not None else 1
    val_fold = cfg.val_fold if cfg.val_fold is not None else test_fold % 5 + 1
    train, val, test = _fold_split(examples, test_fold=test_fold, val_fold=val_fold, where=str(meta))
    return Splits("multiclass", labels, train, val, test)


@register_dataset("esc10", num_labels=10)
def esc10(cfg: Any) -> Splits:
    """ESC-10 (400 clips, 10 classes, 5 folds): fold ``test_fold`` (default 1) test, ``val_fold``
    (default ``test_fold % 5 + 1``) val, the other three train."""
    return _esc(cfg, "esc10")


@register_dataset("esc50", num_labels=50)
def esc50(cfg: Any) -> Splits:
    """ESC-50 (2000 clips, 50 classes, 5 folds); folds as for esc10."""
    return _esc(cfg, "esc50")


# ---------------------------------------------------------------------------------------------
# RAVDESS

RAVDESS_EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def _actor(value: Any) -> str:
    """'13', 13, 'Actor_13' or 'actor13' -> 'Actor_13'."""
    m = re.fullmatch(r"(?:actor_?)?0*(\d+)", str(value).strip(), flags=re.IGNORECASE)
    if not m:
        raise DataError(f"data.test_groups: {value!r} is not an actor (write 13 or Actor_13)")
    return f"Actor_{int(m.group(1)):02d}"


@register_dataset("ravdess", num_labels=8)
def ravdess(cfg: Any) -> Splits:
    """RAVDESS emotional speech: 8 emotions from the EE field; group = actor.

    Test: actors in ``test_groups`` (or a group-aware ``test_fraction`` when empty); val:
    ``val_fraction`` of the other actors, chosen whole.
    """
    _check_task(cfg, ["multiclass"])
    layout = "Actor_XX/MM-VV-EE-II-SS-RR-AA.wav (or .flac)"
    root = _root(cfg, layout)
    actor_dirs = sorted(d for d in root.glob("**/Actor_*") if d.is_dir())
    if not actor_dirs:
        raise DataError(f"{root}: no Actor_XX folders; expected {layout}")
    examples = []
    for d in actor_dirs:
        for p in _audio_files(d):
            m = _RAVDESS.match(p.stem)
            if not m:
                raise DataError(f"{p}: not a RAVDESS name; expected MM-VV-EE-II-SS-RR-AA "
                                "(e.g. 03-01-05-02-01-01-13.wav)")
            modality, channel, emotion, intensity, statement, repetition, actor = (int(g) for g in m.groups())
            if not 1 <= emotion <= 8:
                raise DataError(f"{p}: emotion code {emotion:02d} is not 01-08")
            group = f"Actor_{actor:02d}"
            examples.append(Example(str(p), emotion - 1, group, {
                "label": RAVDESS_EMOTIONS[emotion - 1], "modality": modality, "vocal_channel": channel,
                "intensity": intensity, "statement": statement, "repetition": repetition, "actor": actor,
                "gender": "male" if actor % 2 else "female"}))
    if not examples:
        raise DataError(f"{root}: the Actor_XX folders hold no audio; expected {layout}")
    actors = sorted({ex.group for ex in examples})
    if cfg.test_groups:
        test_actors = {_actor(g) for g in cfg.test_groups}
        unknown = sorted(test_actors - set(actors))
        if unknown:
            raise DataError(f"data.test_groups: {unknown} not found under {root}; actors present: {actors}")
        test = [ex for ex in examples if ex.group in test_actors]
        rest = [ex for ex in examples if ex.group not in test_actors]
        fractions = holdout_fractions(val_fraction=cfg.val_fraction, test_fraction=0.0)[:2]
        train, val = group_split(rest, fractions, cfg.split_seed)
    else:
        train, val, test = holdout_split(examples, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                                         seed=cfg.split_seed, by_group=True)
    return Splits("multiclass", list(RAVDESS_EMOTIONS), train, val, test)


# ---------------------------------------------------------------------------------------------
# GTZAN

GTZAN_BROKEN = "jazz.00054"
"""The GTZAN clip that no decoder reads; reported and skipped."""


@register_dataset("gtzan", num_labels=10)
def gtzan(cfg: Any) -> Splits:
    """GTZAN genres (10 x 100 clips of 30 s); stratified ``test_fraction``/``val_fraction``.

    ``jazz.00054`` is unreadable in the common distributions: when it does not decode it is skipped
    with a warning. Note GTZAN repeats tracks and artists across genres folders (Sturm 2013), so
    random splits are optimistic.
    """
    _check_task(cfg, ["multiclass"])
    layout = "genres/<genre>/<genre>.000NN.wav (or genres_original/)"
    root = _root(cfg, layout)
    base = next((root / s for s in ("genres", "genres_original", "Data/genres_original") if (root / s).is_dir()), None)
    if base is None:
        raise DataError(f"{root}: no genres/ or genres_original/ folder; expected {layout}")
    genres = {d.name: _audio_files(d) for d in sorted(base.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    genres = {g: files for g, files in genres.items() if files}
    if not genres:
        raise DataError(f"{base}: no genre folders with audio; expected {layout}")
    labels = sorted(genres)
    examples = []
    for g in labels:
        for p in genres[g]:
            if p.stem == GTZAN_BROKEN:
                try:
                    load_audio(p)
                except AudioError as e:
                    warnings.warn(f"skipping the known unreadable GTZAN clip {e}", stacklevel=2)
                    continue
            examples.append(Example(str(p), labels.index(g), "", {"label": g}))
    train, val, test = holdout_split(examples, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                                     seed=cfg.split_seed)
    return Splits("multiclass", labels, train, val, test)


# ---------------------------------------------------------------------------------------------
# Speech Commands


@register_dataset("speech_commands", num_labels=35)
def speech_commands(cfg: Any) -> Splits:
    """Google Speech Commands (v1 or v2): every word folder is a class; the official
    ``validation_list.txt``/``testing_list.txt`` give val/test; ``_background_noise_`` is left
    out; group = speaker hash (the name before ``_nohash_``)."""
    _check_task(cfg, ["multiclass"])
    layout = "<word>/<speaker>_nohash_<n>.wav with validation_list.txt and testing_list.txt"
    root = _root(cfg, layout)
    lists = {}
    for part, fname in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        f = root / fname
        if not f.is_file():
            raise DataError(f"{root}: {fname} not found; expected {layout}")
        lists[part] = {line.strip().replace("\\", "/") for line in f.read_text().splitlines() if line.strip()}
    words = {d.name: _audio_files(d) for d in sorted(root.iterdir())
             if d.is_dir() and not d.name.startswith(("_", "."))}
    words = {w: files for w, files in words.items() if files}
    if not words:
        raise DataError(f"{root}: no word folders with audio; expected {layout}")
    labels = sorted(words)
    parts: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for w in labels:
        for p in words[w]:
            rel = f"{w}/{p.name}"
            part = "val" if rel in lists["val"] else "test" if rel in lists["test"] else "train"
            speaker = p.stem.split("_nohash_")[0]
            parts[part].append(Example(str(p), labels.index(w), speaker, {"label": w, "speaker": speaker}))
    return Splits("multiclass", labels, **parts)
