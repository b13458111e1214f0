"""HEAR task folders: read them (checked), and write them from any labelled audio.

One task folder holds::

    task_metadata.json        task_name, version, embedding_type, prediction_type, split_mode,
                              nfolds (k-fold modes), sample_duration, evaluation, any other keys
    labelvocabulary.csv       idx,label - one row per label, idx 0..n-1
    {split}.json              train/valid/test, or fold00, fold01, ...:
                              scene: {filename: [label, ...]}
                              event: {filename: [{"label": ..., "start": ms, "end": ms}, ...]}
    {sample_rate}/{split}/{filename}    16-bit mono WAV, one folder per sample rate

Example:
    >>> task = read_task("tasks/esc10")
    >>> task.metadata.split_mode, task.split_names(), task.sample_rates()
    ('presplit_kfold', ['fold00', 'fold01', 'fold02', 'fold03', 'fold04'], [16000])
    >>> task.audio_path("fold00", "1-100032-A-0.wav", 16000)
    PosixPath('tasks/esc10/16000/fold00/1-100032-A-0.wav')
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import soundfile as sf

from audiocnn.core.errors import AudiocnnError
from audiocnn.audio import fix_length, resample
from audiocnn.core.io import atomic_write, atomic_write_text, make_dirs
from audiocnn.core.runtime import show_progress

__all__ = [
    "EMBEDDING_TYPES", "HEAR_SAMPLE_RATES", "PREDICTION_TYPES", "SPLIT_MODES", "AudioSource", "HearTask",
    "HearTaskError", "TaskMetadata", "find_tasks", "read_task", "write_task",
]

METADATA_FILE = "task_metadata.json"
LABELS_FILE = "labelvocabulary.csv"
EMBEDDING_TYPES = ("scene", "event")
PREDICTION_TYPES = ("multiclass", "multilabel")
SPLIT_MODES = ("trainvaltest", "presplit_kfold", "new_split_kfold")
TRAINVALTEST = ("train", "valid", "test")
HEAR_SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)
"""The rates the HEAR benchmark ships; :func:`write_task` accepts any positive rate."""
BUILD_MARKER = ".audiocnn-build.json"
"""Present while :func:`write_task` fills a folder; it records the build, so a re-run can resume it."""

AudioSource = Callable[[str, str], tuple[np.ndarray, int]]
"""``audio(split, filename) -> (wave, sample_rate)``: a float32 ``(time,)`` wave at its own rate."""


class HearTaskError(AudiocnnError, ValueError):
    """A task folder (or what is about to be written as one) is not valid; the message names the file
    and what to fix."""


@dataclass
class TaskMetadata:
    """The fields of ``task_metadata.json``.

    Attributes:
        task_name: the task's name (and the folder name :func:`write_task` uses).
        version: free text identifying the conversion (e.g. ``"audiocnn-1"``).
        embedding_type: ``scene`` (one label set per file) or ``event`` (timestamped labels).
        prediction_type: ``multiclass`` (exactly one label per file) or ``multilabel``.
        split_mode: ``trainvaltest``, ``presplit_kfold`` or ``new_split_kfold``.
        evaluation: metric names, the primary one first (``["top1_acc", "mAP"]``).
        sample_duration: seconds every audio file is trimmed or zero-padded to; ``None`` keeps lengths.
        nfolds: number of folds (k-fold split modes).
        extra: any other keys, written back unchanged.
    """

    task_name: str
    version: str
    embedding_type: str
    prediction_type: str
    split_mode: str
    evaluation: list[str]
    sample_duration: float | None = None
    nfolds: int | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The JSON object, HEAR's key order first, then ``extra``."""
        out: dict[str, Any] = {"task_name": self.task_name, "version": self.version,
                               "embedding_type": self.embedding_type, "prediction_type": self.prediction_type,
                               "split_mode": self.split_mode}
        if self.nfolds is not None:
            out["nfolds"] = self.nfolds
        out["sample_duration"] = self.sample_duration
        out["evaluation"] = list(self.evaluation)
        for key, value in self.extra.items():
            if key in out:
                raise HearTaskError(f"TaskMetadata.extra repeats the field {key!r}; set the field itself")
            out[key] = value
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = METADATA_FILE) -> TaskMetadata:
        """Check and convert a parsed ``task_metadata.json``; ``where`` names the file in errors."""
        if not isinstance(data, dict):
            raise HearTaskError(f"{where}: expected a JSON object with task_name, version, embedding_type, "
                                f"prediction_type, split_mode and evaluation, got {type(data).__name__}")
        required = ("task_name", "version", "embedding_type", "prediction_type", "split_mode", "evaluation")
        missing = [k for k in required if k not in data]
        if missing:
            raise HearTaskError(f"{where}: missing {', '.join(missing)}; a HEAR task needs {', '.join(required)}")
        for key in ("task_name", "version"):
            if not isinstance(data[key], str) or not data[key]:
                raise HearTaskError(f"{where}: {key} must be a non-empty string, got {data[key]!r}")
        for key, allowed in (("embedding_type", EMBEDDING_TYPES), ("prediction_type", PREDICTION_TYPES),
                             ("split_mode", SPLIT_MODES)):
            if data[key] not in allowed:
                raise HearTaskError(f"{where}: {key} is {data[key]!r}; use one of {', '.join(allowed)}")
        evaluation = data["evaluation"]
        if (not isinstance(evaluation, list) or not evaluation
                or not all(isinstance(m, str) and m for m in evaluation)):
            raise HearTaskError(f"{where}: evaluation must be a non-empty list of metric names, primary first "
                                f"(e.g. [\"top1_acc\", \"mAP\"]), got {evaluation!r}")
        duration = data.get("sample_duration")
        if duration is not None:
            if (isinstance(duration, bool) or not isinstance(duration, (int, float))
                    or not math.isfinite(duration) or duration <= 0):
                raise HearTaskError(f"{where}: sample_duration must be a positive number of seconds or null, "
                                    f"got {duration!r}")
            duration = float(duration)
        nfolds = data.get("nfolds")
        if data["split_mode"] != "trainvaltest" or nfolds is not None:
            if isinstance(nfolds, bool) or not isinstance(nfolds, int) or nfolds < 2:
                raise HearTaskError(f"{where}: split_mode {data['split_mode']} needs nfolds, an integer of at "
                                    f"least 2, got {nfolds!r}")
        known = set(required) | {"sample_duration", "nfolds"}
        return cls(task_name=data["task_name"], version=data["version"], embedding_type=data["embedding_type"],
                   prediction_type=data["prediction_type"], split_mode=data["split_mode"],
                   evaluation=list(evaluation), sample_duration=duration, nfolds=nfolds,
                   extra={k: v for k, v in data.items() if k not in known})


def _split_names(metadata: TaskMetadata) -> list[str]:
    if metadata.split_mode == "trainvaltest":
        return list(TRAINVALTEST)
    return [f"fold{i:02d}" for i in range(metadata.nfolds or 0)]


@dataclass
class HearTask:
    """A task folder as read by :func:`read_task`.

    Attributes:
        root: the task folder.
        metadata: ``task_metadata.json``.
        labels: the label vocabulary in ``idx`` order.
        splits: split name -> {filename: [label, ...]} (scene) or
            {filename: [{"label", "start", "end"}, ...]} (event; milliseconds).
    """

    root: Path
    metadata: TaskMetadata
    labels: list[str]
    splits: dict[str, dict[str, list]]

    def split_names(self) -> list[str]:
        """``train, valid, test`` (trainvaltest) or ``fold00 .. fold{nfolds-1}``, in that order."""
        return _split_names(self.metadata)

    def sample_rates(self) -> list[int]:
        """The sample-rate folders present, ascending."""
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.is_dir() and p.name.isdigit())

    def audio_path(self, split: str, filename: str, sample_rate: int) -> Path:
        """``root/{sample_rate}/{split}/{filename}`` (not checked for existence)."""
        if split not in self.splits:
            raise HearTaskError(f"{self.root}: no split {split!r}; the task has {', '.join(self.splits)}")
        return self.root / str(int(sample_rate)) / split / filename


# ----------------------------------------------------------------------------------------------
# Checks shared by reading and writing


def _bad_filename(name: Any) -> bool:
    return (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_split(split: str, entries: Any, metadata: TaskMetadata, vocab: set[str], where: str, *,
                 strict: bool) -> None:
    """Every entry of one split: file names, labels in the vocabulary, events with 0 <= start <= end
    starting inside ``sample_duration`` (``strict``, for writing: also ending inside it)."""
    if not isinstance(entries, dict):
        raise HearTaskError(f"{where}: expected a JSON object {{filename: [...]}}, got {type(entries).__name__}")
    event = metadata.embedding_type == "event"
    duration_ms = None if metadata.sample_duration is None else 1000.0 * metadata.sample_duration
    for name, items in entries.items():
        if _bad_filename(name):
            raise HearTaskError(f"{where}: {name!r} is not a file name (no folders, no '/'); "
                                "name the audio file relative to its split folder")
        if not isinstance(items, list):
            raise HearTaskError(f"{where}: {name}: expected a list of "
                                f"{'events' if event else 'labels'}, got {items!r}")
        if event:
            for i, ev in enumerate(items):
                if not isinstance(ev, dict) or not {"label", "start", "end"} <= set(ev):
                    raise HearTaskError(f"{where}: {name}, event {i}: expected "
                                        f"{{\"label\": ..., \"start\": ms, \"end\": ms}}, got {ev!r}")
                if ev["label"] not in vocab:
                    raise HearTaskError(f"{where}: {name}, event {i}: label {ev['label']!r} is not in "
                                        f"{LABELS_FILE}; add it there or fix the label")
                start, end = ev["start"], ev["end"]
                if not _number(start) or not _number(end):
                    raise HearTaskError(f"{where}: {name}, event {i}: start and end must be numbers "
                                        f"(milliseconds), got start={start!r}, end={end!r}")
                if start < 0 or end < start:
                    raise HearTaskError(f"{where}: {name}, event {i} ({ev['label']}): start={start} ms, "
                                        f"end={end} ms; events need 0 <= start <= end")
                if duration_ms is not None and start >= duration_ms:
                    raise HearTaskError(f"{where}: {name}, event {i} ({ev['label']}) starts at {start} ms, "
                                        f"after sample_duration {metadata.sample_duration} s; use a longer "
                                        "sample_duration (or none) or drop the event")
                if strict and duration_ms is not None and end > duration_ms:
                    raise HearTaskError(f"{where}: {name}, event {i} ({ev['label']}) ends at {end} ms, after "
                                        f"sample_duration {metadata.sample_duration} s, so the audio would cut "
                                        "it; use a longer sample_duration (or none)")
        else:
            for label in items:
                if label not in vocab:
                    raise HearTaskError(f"{where}: {name}: label {label!r} is not in {LABELS_FILE}; add it "
                                        "there or fix the label")
            if len(set(items)) != len(items):
                raise HearTaskError(f"{where}: {name}: a label is listed twice in {items}; list each once")
            if metadata.prediction_type == "multiclass" and len(items) != 1:
                raise HearTaskError(f"{where}: {name}: a multiclass task needs exactly one label per file, got "
                                    f"{items}; use prediction_type multilabel or fix the labels")


def _check_task(metadata: TaskMetadata, labels: list[str], splits: Mapping[str, Any], where: Path, *,
                strict: bool = False) -> None:
    """The whole task: vocabulary, the splits the split mode needs, every entry, no file in two splits."""
    if not labels:
        raise HearTaskError(f"{where / LABELS_FILE}: no labels; list one label per row under the header idx,label")
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise HearTaskError(f"{where / LABELS_FILE}: labels {dup} appear twice; every label once")
    if any(not isinstance(lab, str) or not lab for lab in labels):
        raise HearTaskError(f"{where / LABELS_FILE}: labels must be non-empty strings")
    need = _split_names(metadata)
    missing = [s for s in need if s not in splits]
    if missing:
        files = ", ".join(f"{s}.json" for s in missing)
        raise HearTaskError(f"{where}: split_mode {metadata.split_mode} needs {', '.join(need)}; missing {files}; "
                            "write the missing split files or fix split_mode/nfolds in " + METADATA_FILE)
    extra = [s for s in splits if s not in need]
    if extra:
        raise HearTaskError(f"{where}: splits {extra} are not among the splits of split_mode "
                            f"{metadata.split_mode} ({', '.join(need)}); fix nfolds/split_mode or remove them")
    vocab = set(labels)
    seen: dict[str, str] = {}
    for split in need:
        _check_split(split, splits[split], metadata, vocab, str(where / f"{split}.json"), strict=strict)
        for name in splits[split]:
            if name in seen:
                raise HearTaskError(f"{where / f'{split}.json'}: {name} is also in {seen[name]}.json; a file "
                                    "belongs to one split only")
            seen[name] = split


# ----------------------------------------------------------------------------------------------
# Reading


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise HearTaskError(f"{path}: not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HearTaskError(f"{path}: not valid JSON ({e}); rewrite the file") from None


def read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise HearTaskError(f"{path}: not found; write the label vocabulary as CSV with the header idx,label")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "idx" not in columns or "label" not in columns:
            raise HearTaskError(f"{path}: header is {columns or 'missing'}; the first line must be idx,label")
        rows = [{(k or "").strip(): v for k, v in r.items()} for r in reader]
    labels = []
    for line, row in enumerate(rows, start=2):
        try:
            idx = int((row["idx"] or "").strip())
        except ValueError:
            raise HearTaskError(f"{path}, line {line}: idx {row['idx']!r} is not an integer") from None
        if idx != len(labels):
            raise HearTaskError(f"{path}, line {line}: idx {idx}, expected {len(labels)}; number the labels "
                                "0, 1, 2, ... in order")
        labels.append(row["label"] or "")
    return labels


def read_task(task_dir: str | os.PathLike, *, check_audio: bool = True) -> HearTask:
    """Read and check a task folder.

    Checks: metadata fields and values; a label vocabulary numbered 0..n-1 without repeats; every split
    the split mode needs (and no other); file names; every label in the vocabulary; multiclass files
    with exactly one label; events with ``0 <= start <= end`` (ms) and, with a ``sample_duration``,
    starting inside it; no file in two splits; with ``check_audio``, at least one sample-rate folder and
    every listed file present in each.

    Args:
        task_dir: the folder holding ``task_metadata.json``.
        check_audio: also check the audio files exist (not their contents).

    Raises:
        HearTaskError: naming the file and what to fix.
    """
    root = Path(task_dir)
    if not root.is_dir():
        raise HearTaskError(f"{root}: no such task folder")
    if not (root / METADATA_FILE).is_file():
        partial = " (a build was interrupted here; run the conversion again)" if (root / BUILD_MARKER).exists() else ""
        raise HearTaskError(f"{root}: no {METADATA_FILE}{partial}; a HEAR task folder starts with it")
    metadata = TaskMetadata.from_json(_read_json(root / METADATA_FILE), str(root / METADATA_FILE))
    labels = read_labels(root / LABELS_FILE)
    splits: dict[str, dict[str, list]] = {}
    for name in _split_names(metadata):
        path = root / f"{name}.json"
        if path.is_file():
            splits[name] = _read_json(path)
    if metadata.split_mode != "trainvaltest":  # fold files beyond nfolds mean a wrong nfolds
        for path in sorted(root.glob("fold*.json")):
            if path.stem not in splits and path.stem[4:].isdigit():
                splits[path.stem] = {}
    _check_task(metadata, labels, splits, root)
    task = HearTask(root=root, metadata=metadata, labels=labels, splits=splits)
    if check_audio:
        rates = task.sample_rates()
        if not rates:
            raise HearTaskError(f"{root}: no audio: no sample-rate folder such as 16000/; write the audio to "
                                "{sample_rate}/{split}/{filename} or pass check_audio=False")
        for rate in rates:
            for split in task.split_names():
                folder = root / str(rate) / split
                present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
                missing = sorted(set(task.splits[split]) - present)
                if missing:
                    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                    raise HearTaskError(f"{folder}: {len(missing)} file(s) listed in {split}.json are missing: "
                                        f"{', '.join(missing[:3])}{more}; write them or rebuild the task")
    return task


def find_tasks(tasks_dir: str | os.PathLike) -> list[Path]:
    """Task folders in ``tasks_dir``: its subfolders holding ``task_metadata.json``, sorted; hidden
    folders (``.name``) are skipped. A task folder itself gives ``[tasks_dir]``.

    Raises:
        HearTaskError: ``tasks_dir`` is not a folder.
    """
    root = Path(tasks_dir)
    if not root.is_dir():
        raise HearTaskError(f"{root}: no such folder; pass a folder of HEAR tasks or one task folder")
    if (root / METADATA_FILE).is_file():
        return [root]
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / METADATA_FILE).is_file())


# ----------------------------------------------------------------------------------------------
# Writing


def _csv_text(labels: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["idx", "label"])
    for i, label in enumerate(labels):
        w.writerow([i, label])
    return buf.getvalue()


def _split_json(entries: Mapping[str, list]) -> str:
    """One file per line, sorted by name: small diffs, easy to grep."""
    lines = [f"  {json.dumps(name, ensure_ascii=False)}: {json.dumps(entries[name], ensure_ascii=False)}"
             for name in sorted(entries)]
    return "{\n" + ",\n".join(lines) + ("\n" if lines else "") + "}\n"


def _build_record(metadata: TaskMetadata, labels: list[str], splits: Mapping[str, Mapping[str, list]],
                  sample_rates: list[int]) -> dict:
    """What a build writes; a re-run resumes an interrupted build only when this is the same."""
    digest = hashlib.sha256(json.dumps({s: splits[s] for s in sorted(splits)}, sort_keys=True).encode()).hexdigest()
    return {"metadata": metadata.to_json(), "labels": labels, "sample_rates": sample_rates, "splits_sha256": digest}


def _prepare_folder(task_dir: Path, record: dict, overwrite: bool) -> None:
    """Refuse a finished task unless ``overwrite``; resume an interrupted build of the same task;
    never remove a folder this writer did not make."""
    marker = task_dir / BUILD_MARKER
    finished = (task_dir / METADATA_FILE).is_file()
    ours = finished or marker.is_file()
    if task_dir.exists() and not task_dir.is_dir():
        raise HearTaskError(f"{task_dir}: exists and is not a folder; remove it or choose another output folder")
    if task_dir.is_dir() and any(task_dir.iterdir()) and not ours:
        raise HearTaskError(f"{task_dir}: exists and is not a HEAR task folder; remove it or choose another "
                            "output folder")
    if finished and not overwrite:
        raise HearTaskError(f"{task_dir}: the task already exists; pass --overwrite (overwrite=True) to rebuild "
                            "it, or choose another output folder")
    if ours and not overwrite:
        try:
            old = json.loads(marker.read_text())
        except (OSError, ValueError):
            old = None
        if old != record:
            raise HearTaskError(f"{task_dir}: holds an interrupted build with other settings (labels, splits, "
                                "rates or metadata differ); pass --overwrite (overwrite=True) to start it again")
        return  # resume: WAVs are written atomically, so every one present is whole
    if ours:
        shutil.rmtree(task_dir)
    make_dirs(task_dir, setting="--out")
    atomic_write_text(marker, json.dumps(record, indent=2) + "\n", setting="--out")


def _write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    # soundfile clips samples beyond full scale (resampling overshoot) rather than wrapping them
    atomic_write(path, lambda f: sf.write(f, wave, sample_rate, format="WAV", subtype="PCM_16"))


def write_task(
    out_dir: str | os.PathLike,
    metadata: TaskMetadata,
    labels: Iterable[str],
    splits: Mapping[str, Mapping[str, list]],
    audio: AudioSource,
    *,
    sample_rates: Iterable[int],
    overwrite: bool = False,
    progress: str = "auto",
) -> Path:
    """Write the task folder ``out_dir/<metadata.task_name>``, streaming the audio one file at a time.

    The task is checked as :func:`read_task` checks it before anything is written. Each file is read
    once with ``audio(split, filename)``, resampled with soxr (``HQ``) to each rate, trimmed or
    zero-padded at the end to ``round(sample_duration * rate)`` samples when ``sample_duration`` is set,
    and written as 16-bit mono WAV (clipped at full scale). Every file is written atomically and
    ``task_metadata.json`` last, so a folder without it is an unfinished build (:func:`find_tasks`
    ignores it). Re-running: a finished task is refused unless ``overwrite``; an interrupted build of
    the same task resumes, keeping the WAVs already written.

    Args:
        out_dir: folder receiving the task folder.
        metadata: the task's metadata; ``task_name`` names the folder.
        labels: the label vocabulary, in ``idx`` order.
        splits: split name -> {filename: labels or events}; file names should end in ``.wav``.
        audio: ``audio(split, filename) -> (wave, sample_rate)``: float32 ``(time,)`` at its own rate.
        sample_rates: the rates to write (HEAR uses 16000, 22050, 32000, 44100, 48000).
        overwrite: replace an existing task (or an interrupted build with other settings).
        progress: ``auto`` (a bar on a terminal), ``always`` or ``never``.

    Returns:
        The task folder.

    Raises:
        HearTaskError: an invalid task, an event past the end of its audio, an existing task
            without ``overwrite``, a folder that is not a task.
    """
    labels = list(labels)
    rates = sorted({int(r) for r in sample_rates})
    if not rates or any(r <= 0 for r in rates):
        raise HearTaskError(f"sample_rates={list(sample_rates)}: give at least one positive rate, e.g. 16000")
    if _bad_filename(metadata.task_name):
        raise HearTaskError(f"task_name {metadata.task_name!r} cannot name a folder; use a plain name")
    task_dir = Path(out_dir) / metadata.task_name
    # a round trip through JSON checks what is written exactly as read_task will read it
    metadata = TaskMetadata.from_json(json.loads(json.dumps(metadata.to_json())), f"{task_dir / METADATA_FILE}")
    try:
        plain = json.loads(json.dumps({s: dict(v) for s, v in splits.items()}))
    except (TypeError, ValueError) as e:
        raise HearTaskError(f"{task_dir}: the splits must hold plain JSON values (str labels, int/float "
                            f"times): {e}") from None
    _check_task(metadata, labels, plain, task_dir, strict=True)
    names = _split_names(metadata)
    record = _build_record(metadata, labels, plain, rates)
    _prepare_folder(task_dir, record, overwrite)

    jobs = [(split, name) for split in names for name in sorted(plain[split])]
    bar = None
    if show_progress(progress):
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"{metadata.task_name}", unit="file", leave=False)
    try:
        for split, name in jobs:
            targets = [task_dir / str(r) / split / name for r in rates]
            if all(p.is_file() for p in targets):
                if bar is not None:
                    bar.update()
                continue
            wave, sr = audio(split, name)
            wave = np.asarray(wave, dtype=np.float32)
            if wave.ndim != 1 or not int(sr) > 0:
                raise HearTaskError(f"{split}/{name}: the audio source gave shape {wave.shape} at {sr} Hz; it must "
                                    "return a mono (time,) wave and a positive sample rate")
            if metadata.embedding_type == "event" and metadata.sample_duration is None:
                length_ms = 1000.0 * len(wave) / sr
                late = [ev for ev in plain[split][name] if ev["end"] > length_ms + 1.0]
                if late:
                    raise HearTaskError(f"{task_dir / f'{split}.json'}: {name}: an event ends at {late[0]['end']} "
                                        f"ms, after the end of its audio ({length_ms:.0f} ms); fix the event times")
            for rate, path in zip(rates, targets):
                out = resample(wave, int(sr), rate)
                if metadata.sample_duration is not None:
                    out = fix_length(out, int(round(metadata.sample_duration * rate)), mode="start")
                _write_wav(path, out, rate)
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()

    atomic_write_text(task_dir / LABELS_FILE, _csv_text(labels))
    for split in names:
        atomic_write_text(task_dir / f"{split}.json", _split_json(plain[split]))
    atomic_write_text(task_dir / METADATA_FILE, json.dumps(metadata.to_json(), indent=2) + "\n")
    (task_dir / BUILD_MARKER).unlink(missing_ok=True)
    return task_dir
