"""Built-in datasets as HEAR task folders: ``audiocnn hear make-task NAME --out tasks/``.

Scene tasks reuse the dataset builders of :mod:`audiocnn.data.datasets` (the same files, labels and
splits as training); every file becomes ``<stem>.wav``.

==========  =====  ==============  ==================================================  ==========
task        type   split_mode      splits                                              duration
==========  =====  ==============  ==================================================  ==========
fsdd        scene  trainvaltest    official test = takes 0-4; valid = takes 5-9 (the   1.0 s
                                   package's choice); train = takes 10-49
esc10       scene  presplit_kfold  the five official folds -> fold00..fold04           5.0 s
ravdess     scene  trainvaltest    actor-independent as recipes/emotion.yaml: actors   4.0 s
                                   13-16 test, one in ten other actors valid (whole
                                   actors, ``split_seed`` 0)
yesno       event  trainvaltest    Kaldi's split (first 30 files by name train, the    none
                                   rest test); valid = ``val_fraction`` (0.2) of the
                                   train files, drawn with ``split_seed`` 0
synthetic   scene  trainvaltest    the generator's own split (70/15/15 % per class)    data.duration
==========  =====  ==============  ==================================================  ==========

Durations: FSDD clips are 0.14-2.28 s; only 4 of 2,000 are longer than 1 s, and after 1 s they
hold silence or a decay about 30 dB below their peak. ESC-10 clips are exactly 5 s. RAVDESS clips
are 2.9-5.0 s; of the 133 longer than 4 s, only 4 have anything within 30 dB of their peak after
4 s. The yesno files are 4.9-7.0 s and one word ends at 6.1 s, so a 6 s cut would cut a word:
they keep their own lengths.

YesNo events come from :func:`word_segments` (energy in the speech band, see there) and are
labelled from the file name in order. A file where the count of segments differs from the count of
labels in its name is left out of the task with a warning rather than labelled by guesswork. In
OpenSLR's copy, ``0_1_0_1_0_0_0_0.wav`` is the one such file. It holds only seven words, and their
spectra match the first seven labels.

Re-running into a folder that holds the task is refused unless ``overwrite`` (``--overwrite``),
which rebuilds it; an interrupted build with the same settings resumes (see
:func:`~audiocnn.hear.tasks.write_task`).

Example:
    >>> result = make_task("esc10", "tasks", root="data/esc10", sample_rates=[16000])
    >>> print(result.summary())
    esc10: fold00 80, fold01 80, fold02 80, fold03 80, fold04 80 (400 files) at 16000 Hz in 2.1 s -> tasks/esc10
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
import soundfile as sf

from audiocnn.config import data_config
from audiocnn.audio.io import load_audio
from audiocnn.data.datasets import build_splits, default_root
from audiocnn.data.splits import DataError, Example
from audiocnn.hear.tasks import METADATA_FILE, HearTask, HearTaskError, TaskMetadata, read_task, write_task
from audiocnn.core.registry import Registry

__all__ = ["CONVERTERS", "MakeTaskResult", "TaskSource", "make_task", "word_segments"]

VERSION = "audiocnn-1"
"""``version`` in the metadata of every task made here; bumped when a conversion changes."""
SCENE_METRICS = ["top1_acc", "mAP"]
EVENT_METRICS = ["event_onset_200ms_fms", "event_onset_50ms_fms"]


@dataclass
class TaskSource:
    """A dataset ready to be written by :func:`~audiocnn.hear.tasks.write_task`.

    Attributes:
        metadata: the task's metadata.
        labels: the label vocabulary.
        splits: split -> {filename: labels or events}.
        files: (split, filename) -> the source audio file.
        left_out: ``"file: reason"`` for every source file not in the task.
    """

    metadata: TaskMetadata
    labels: list[str]
    splits: dict[str, dict[str, list]]
    files: dict[tuple[str, str], Path]
    left_out: list[str] = field(default_factory=list)

    def audio(self, split: str, filename: str) -> tuple[np.ndarray, int]:
        """The source file of ``split/filename`` decoded at its own rate: ``((time,) float32, rate)``."""
        path = self.files[(split, filename)]
        return load_audio(path), sf.info(str(path)).samplerate


CONVERTERS: Registry[Callable[[Any], TaskSource]] = Registry("HEAR task")
"""name -> converter(cfg: DataConfig) -> TaskSource."""

_DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "ravdess": {"test_groups": ["13", "14", "15", "16"], "val_fraction": 0.1, "split_seed": 0},
    "yesno": {"val_fraction": 0.2, "split_seed": 0},
}
"""Data settings a conversion starts from (``data.*`` overrides still apply on top)."""


def _scene(task_name: str, labels: list[str], parts: dict[str, list[Example]], *, split_mode: str,
           sample_duration: float | None, where: str) -> TaskSource:
    """Scene multiclass task from examples already divided into HEAR splits."""
    splits: dict[str, dict[str, list]] = {}
    files: dict[tuple[str, str], Path] = {}
    origin: dict[str, Path] = {}
    for split, examples in parts.items():
        entries = splits.setdefault(split, {})
        for ex in examples:
            path = Path(ex.path)
            name = path.stem + ".wav"
            if name in origin:
                raise DataError(f"{where}: {path} and {origin[name]} would both be {name} in the task; "
                                "HEAR names files by name alone, so rename one")
            origin[name] = path
            entries[name] = [labels[ex.target]]
            files[(split, name)] = path
    nfolds = len(parts) if split_mode != "trainvaltest" else None
    metadata = TaskMetadata(task_name=task_name, version=VERSION, embedding_type="scene",
                            prediction_type="multiclass", split_mode=split_mode, evaluation=list(SCENE_METRICS),
                            sample_duration=sample_duration, nfolds=nfolds)
    return TaskSource(metadata, list(labels), splits, files)


def _where(cfg: Any) -> str:
    return f"dataset {cfg.name!r} at {cfg.root or default_root(cfg.name)}"


@CONVERTERS.register("fsdd")
def fsdd(cfg: Any) -> TaskSource:
    """FSDD: the package's split (test takes 0-4, valid 5-9, train 10-49); 1 s."""
    s = build_splits(cfg)
    return _scene("fsdd", s.labels, {"train": s.train, "valid": s.val, "test": s.test},
                  split_mode="trainvaltest", sample_duration=1.0, where=_where(cfg))


@CONVERTERS.register("esc10")
def esc10(cfg: Any) -> TaskSource:
    """ESC-10: its five official folds, ``presplit_kfold``; 5 s."""
    s = build_splits(cfg)
    by_fold: dict[str, list[Example]] = {}
    for ex in s.train + s.val + s.test:
        by_fold.setdefault(str(ex.meta["fold"]), []).append(ex)
    order = sorted(by_fold, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))
    parts = {f"fold{i:02d}": by_fold[f] for i, f in enumerate(order)}
    return _scene("esc10", s.labels, parts, split_mode="presplit_kfold", sample_duration=5.0, where=_where(cfg))


@CONVERTERS.register("ravdess")
def ravdess(cfg: Any) -> TaskSource:
    """RAVDESS speech emotion: the package's actor-independent split (``test_groups``, whole actors
    to valid); 4 s."""
    s = build_splits(cfg)
    return _scene("ravdess", s.labels, {"train": s.train, "valid": s.val, "test": s.test},
                  split_mode="trainvaltest", sample_duration=4.0, where=_where(cfg))


@CONVERTERS.register("synthetic")
def synthetic(cfg: Any) -> TaskSource:
    """The synthetic sweeps (generated into ``root`` when missing): their own split; ``data.duration``."""
    s = build_splits(cfg)
    return _scene("synthetic", s.labels, {"train": s.train, "valid": s.val, "test": s.test},
                  split_mode="trainvaltest", sample_duration=float(cfg.duration), where=_where(cfg))


# ---------------------------------------------------------------------------------------------
# YesNo: word events found in the audio


def word_segments(
    wave: np.ndarray,
    sample_rate: int,
    *,
    band: tuple[float, float] = (300.0, 3400.0),
    win_length: float = 0.025,
    hop_length: float = 0.01,
    core_db: float = 10.0,
    edge_db: float = 25.0,
    min_gap: float = 0.05,
    min_core: float = 0.06,
    ref_percentile: float = 99.0,
) -> list[tuple[float, float]]:
    """Words separated by pauses, from the frame energy in the speech band.

    Frames (Hann, ``win_length``, every ``hop_length``, centred) give the energy between ``band[0]``
    and ``band[1]`` Hz in dB. The reference level is the file's ``ref_percentile`` frame, so the
    thresholds follow the recording level, and the near-digital silence some files start with
    does not pull them down the way a noise-floor estimate would be pulled. Cores are runs of
    frames within ``core_db`` of the reference; cores less than ``min_gap`` apart are merged and
    cores shorter than ``min_core`` dropped. Each core then grows while frames stay within
    ``edge_db`` of the reference, but never into its neighbour. With the defaults, every file of
    OpenSLR yesno gives exactly eight segments, except ``0_1_0_1_0_0_0_0.wav``, which holds seven
    words. There the quietest word peaks 6.6 dB below the reference (``core_db`` 10) and the
    shallowest pause between words dips to 26.7 dB below it (``edge_db`` 25). Words more than
    ``core_db`` below the loudest are missed, which the word count then reports.

    Args:
        wave: ``(time,)`` samples.
        sample_rate: Hz.
        band: frequency range whose energy counts, Hz.
        win_length: frame length, seconds.
        hop_length: frame hop, seconds; the resolution of the times returned.
        core_db: a word's core is within this many dB of the reference level.
        edge_db: a word extends while within this many dB of the reference level.
        min_gap: cores closer than this (seconds) are one word.
        min_core: cores shorter than this (seconds) are dropped (clicks, breaths).
        ref_percentile: percentile of the frame levels taken as the reference.

    Returns:
        ``[(start, end), ...]`` in seconds, in time order, not overlapping: the centres of the first
        and last frame of each word.
    """
    x = np.asarray(wave, dtype=np.float64)
    hop = max(1, int(round(hop_length * sample_rate)))
    win = max(2, int(round(win_length * sample_rate)))
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"word_segments needs a non-empty (time,) wave, got shape {x.shape}")
    padded = np.pad(x, (win // 2, win - win // 2))
    n_frames = 1 + (len(x) - 1) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[: n_frames * hop : hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(win), axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / sample_rate)
    in_band = (freqs >= band[0]) & (freqs <= band[1])
    level = 10.0 * np.log10(power[:, in_band].sum(axis=1) / win + 1e-20)
    ref = np.percentile(level, ref_percentile)
    if ref < -150.0:  # digital silence: nothing to find
        return []

    def runs(mask: np.ndarray) -> list[list[int]]:
        edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
        return [[int(a), int(b)] for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]

    cores: list[list[int]] = []
    for start, end in runs(level > ref - core_db):
        if cores and (start - cores[-1][1]) * hop < min_gap * sample_rate:
            cores[-1][1] = end
        else:
            cores.append([start, end])
    cores = [c for c in cores if (c[1] - c[0]) * hop >= min_core * sample_rate]
    loud = level > ref - edge_db
    words: list[tuple[int, int]] = []
    for k, (start, end) in enumerate(cores):
        left = words[-1][1] if words else 0
        right = cores[k + 1][0] if k + 1 < len(cores) else n_frames
        while start > left and loud[start - 1]:
            start -= 1
        while end < right and loud[end]:
            end += 1
        words.append((start, end))
    return [(s * hop / sample_rate, (e - 1) * hop / sample_rate) for s, e in words]


_YESNO = re.compile(r"^[01](?:_[01])*$")
YESNO_LABELS = ["no", "yes"]
"""Index = the digit in the file names (0 = "lo", no; 1 = "ken", yes)."""


@CONVERTERS.register("yesno")
def yesno(cfg: Any) -> TaskSource:
    """OpenSLR yesno as an event task: word onsets and offsets from :func:`word_segments`.

    Split: Kaldi's (the first half of the files by name train, the rest test); ``val_fraction`` of the
    train files, drawn with ``split_seed``, become valid. The split is made on all the files before any
    is left out, so it does not move when the segmentation changes.
    """
    layout = "waves_yesno/{b1}_{b2}_..._{b8}.wav (b = 0 no, 1 yes)"
    root = Path(os.path.expanduser(cfg.root)) if cfg.root else default_root("yesno")
    if not root.is_dir():
        raise DataError(f"dataset 'yesno' not found at {root} (--root {cfg.root or 'unset'}): put OpenSLR SLR1 "
                        f"(waves_yesno.tar.gz, unpacked) there (layout: {layout}), or pass --root")
    folder = root / "waves_yesno" if (root / "waves_yesno").is_dir() else root
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith("."))
    if not paths:
        raise DataError(f"{folder}: no .wav files; expected {layout}")
    bad = [p.name for p in paths if not _YESNO.match(p.stem)]
    if bad:
        raise DataError(f"{folder}: {bad[:3]} are not yesno names; expected {layout}; move other files away")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DataError(f"data.val_fraction={cfg.val_fraction} must be in [0, 1)")

    half = len(paths) // 2
    train_pool = paths[:half]
    n_valid = int(round(cfg.val_fraction * len(train_pool)))
    rng = np.random.default_rng(cfg.split_seed)
    valid = {train_pool[i] for i in rng.choice(len(train_pool), size=n_valid, replace=False)}
    split_of = {p: "test" if i >= half else "valid" if p in valid else "train" for i, p in enumerate(paths)}

    splits: dict[str, dict[str, list]] = {"train": {}, "valid": {}, "test": {}}
    files: dict[tuple[str, str], Path] = {}
    left_out: list[str] = []
    for p in paths:
        words = [YESNO_LABELS[int(b)] for b in p.stem.split("_")]
        wave = load_audio(p)
        found = word_segments(wave, sf.info(str(p)).samplerate)
        if len(found) != len(words):
            left_out.append(f"{p}: {len(found)} words found, {len(words)} in the name; left out rather than "
                            "labelled by guesswork")
            continue
        split = split_of[p]
        splits[split][p.name] = [{"label": w, "start": round(1000.0 * a, 3), "end": round(1000.0 * b, 3)}
                                 for w, (a, b) in zip(words, found)]
        files[(split, p.name)] = p
    metadata = TaskMetadata(task_name="yesno", version=VERSION, embedding_type="event",
                            prediction_type="multilabel", split_mode="trainvaltest",
                            evaluation=list(EVENT_METRICS), sample_duration=None)
    return TaskSource(metadata, list(YESNO_LABELS), splits, files, left_out)


# ---------------------------------------------------------------------------------------------


@dataclass
class MakeTaskResult:
    """What :func:`make_task` wrote: the task as read back, the time taken, the files left out."""

    task: HearTask
    seconds: float
    left_out: list[str]

    def summary(self) -> str:
        """One line: task, split sizes, rates, time, folder."""
        t = self.task
        counts = ", ".join(f"{s} {len(t.splits[s])}" for s in t.split_names())
        total = sum(len(v) for v in t.splits.values())
        out = f", {len(self.left_out)} left out" if self.left_out else ""
        rates = ", ".join(str(r) for r in t.sample_rates())
        return (f"{t.metadata.task_name}: {counts} ({total} files{out}) at {rates} Hz in {self.seconds:.1f} s "
                f"-> {t.root}")


def make_task(
    dataset: str,
    out_dir: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    sample_rates: Iterable[int] = (16000,),
    sample_duration: float | None | Literal["default"] = "default",
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    progress: str = "auto",
) -> MakeTaskResult:
    """Convert a built-in dataset into the HEAR task folder ``out_dir/<dataset>``.

    Args:
        dataset: a name in :data:`CONVERTERS`: ``fsdd``, ``esc10``, ``ravdess``, ``yesno``, ``synthetic``.
        out_dir: folder receiving the task folder.
        root: the dataset's folder (default ``${AUDIOCNN_DATA:-data}/<dataset>``).
        sample_rates: rates to write.
        sample_duration: seconds to trim or pad every file to, ``None`` to keep lengths, or
            ``"default"`` for the dataset's (see the module table).
        overrides: ``data.*`` settings, e.g. ``["data.test_groups=[1,2]"]``.
        overwrite: rebuild an existing task.
        progress: ``auto``, ``always`` or ``never`` (a bar on a terminal by default).

    Raises:
        DataError: unknown dataset or missing files, naming the folder and what to do.
        HearTaskError: an existing task without ``overwrite``, or an invalid task.
    """
    try:
        convert = CONVERTERS.get(dataset)
    except KeyError as e:
        raise DataError(f"make-task: {e.args[0]}") from None
    existing = Path(out_dir) / dataset / METADATA_FILE
    if existing.is_file() and not overwrite:  # before converting, which may take a while
        raise HearTaskError(f"{existing.parent}: the task already exists; pass --overwrite (overwrite=True) to "
                            "rebuild it, or choose another output folder")
    start = time.perf_counter()
    cfg = data_config(dataset, None if root is None else str(root), overrides, command="make-task",
                      defaults=_DATA_DEFAULTS.get(dataset))
    source = convert(cfg)
    if sample_duration != "default":
        source.metadata.sample_duration = None if sample_duration is None else float(sample_duration)
    task_dir = write_task(out_dir, source.metadata, source.labels, source.splits, source.audio,
                          sample_rates=sample_rates, overwrite=overwrite, progress=progress)
    return MakeTaskResult(read_task(task_dir), time.perf_counter() - start, source.left_out)
