"""Embeddings of HEAR tasks with any HEAR module, cached on disk in heareval's layout.

A HEAR module is a Python module with ``load_model(path)``, ``get_scene_embeddings(audio, model)`` and
``get_timestamp_embeddings(audio, model)`` (``audiocnn.hear``, ``hearbaseline``, ...). Every file of every split
is embedded once, at the model's ``sample_rate`` (the task must hold audio at that rate), in batches of sounds of
equal length, on the GPU when there is one: scene tasks get one vector per file, event tasks one per timestamp.

The cache folder of one (module, model, task) is what ``python -m heareval.predictions.runner`` reads, so both
evaluators can score the very same numbers::

    task_metadata.json, labelvocabulary.csv, {split}.json     copies of the task's (metadata gains "splits")
    {split}.embedding-dimensions.json                        [rows, dim]
    {split}.embeddings.npy                                   rows x dim float32, raw (heareval memmaps it)
    {split}.target-labels.pkl                                per row, its list of labels
    {split}.filename-timestamps.json                         event tasks: per row [file, timestamp ms]
    embedding-done.json                                      written last: what made the embeddings

Rows follow heareval's embedding step: within a split the files come in the order a ``random.Random(0)``
shuffles them (one generator over the splits in order), and an event file's frames in timestamp order. A frame
at time ``t`` carries the labels of the events with ``start <= t < end + 0.0001`` ms. heareval's own embedding
folders read the same way (:func:`read_split`); the labels pickle is loaded without executing anything.

    >>> hm = load_hear_module("audiocnn.hear", "runs/digits/20260101-120000")
    >>> folder = embed_task(hm, read_task("tasks/fsdd"), "results/embeddings")
    >>> split = read_split(folder, "fold00"); split.x.shape        # (files, dim)
"""
from __future__ import annotations

import hashlib
import importlib
import json
import pickle
import random
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import soundfile as sf
import torch

from audiocnn.core.errors import AudiocnnError
from audiocnn.audio import AudioError, load_audio
from audiocnn.core.io import atomic_write, atomic_write_text
from audiocnn.core.runtime import pick_device, show_progress

__all__ = ["DONE_FILE", "EmbeddedSplit", "HearEvalError", "HearModule", "embed_task", "frame_labels",
           "heareval_order", "is_embedding_folder", "load_hear_module", "read_split"]

DONE_FILE = "embedding-done.json"
FORMAT = "heareval-2021.1.3"


class HearEvalError(AudiocnnError, ValueError):
    """The evaluator cannot go on (module, model, task or embedding folder); the message says what to do."""


@dataclass
class HearModule:
    """A loaded HEAR module and model.

    Attributes:
        name: the module's import name.
        module: the module.
        model: what ``load_model`` returned (moved to ``device`` when it is a ``torch.nn.Module``).
        model_path: the path given to ``load_model``, or None.
        sample_rate: ``model.sample_rate``.
        device: where audio is sent.
    """

    name: str
    module: ModuleType
    model: Any
    model_path: str | None
    sample_rate: int
    device: torch.device

    @property
    def label(self) -> str:
        """Short name for tables and folders: ``module`` or ``module--<model name>-<hash of its path>``."""
        if self.model_path is None:
            return self.name
        p = Path(self.model_path).resolve()
        stem = f"{p.parent.name}-{p.name}" if p.is_dir() else p.stem
        digest = hashlib.sha1(str(p).encode()).hexdigest()[:8]
        return f"{self.name}--{stem}-{digest}"

    def identity(self) -> dict[str, Any]:
        """What determines the embeddings besides the audio: module, its version, the model's files."""
        ident: dict[str, Any] = {"module": self.name, "version": str(getattr(self.module, "__version__", "")),
                                 "sample_rate": self.sample_rate}
        if self.model_path is not None:
            path = Path(self.model_path)
            ident["model"] = {"path": str(path.resolve()), "files": _stat_digest(path)}
        return ident


def _stat_digest(path: Path) -> str:
    """Digest of the names, sizes and modification times of a file, or of the files under a folder."""
    h = hashlib.sha1()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _is_run(path: Path) -> bool:
    return path.is_dir() and (path / "checkpoints").is_dir()


def load_hear_module(module_or_run: str | None, model: str | None = None, *,
                     device: str | torch.device | None = None) -> HearModule:
    """Import a HEAR module and load its model.

    Args:
        module_or_run: an import name (``audiocnn.hear``, ``hearbaseline``), or an audiocnn run folder, which
            means ``audiocnn.hear`` with that run; None means ``audiocnn.hear`` (then ``model`` is needed).
        model: the path passed to ``load_model`` (weights file, run folder); None calls ``load_model()``.
        device: default: CUDA when available, else CPU.

    Raises:
        HearEvalError: the module cannot be imported, lacks the HEAR functions, or the arguments conflict.
    """
    dev = pick_device(device)
    name = module_or_run or "audiocnn.hear"
    if module_or_run is not None and Path(module_or_run).is_dir():
        if not _is_run(Path(module_or_run)):
            raise HearEvalError(f"{module_or_run} is a folder but not an audiocnn run (no checkpoints/ in it); pass "
                                "a run folder made by `audiocnn train` or a HEAR module's import name")
        if model is not None:
            raise HearEvalError(f"{module_or_run} is a run folder, which brings its own model; drop --model, or "
                                "pass `audiocnn.hear --model PATH`")
        name, model = "audiocnn.hear", module_or_run
    elif module_or_run is None and model is None:
        raise HearEvalError("give a HEAR module (e.g. hearbaseline) or an audiocnn run folder, or --model PATH for "
                            "audiocnn.hear")
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise HearEvalError(f"cannot import the HEAR module {name!r} ({e}); install it (pip install ...) or pass an "
                            "audiocnn run folder") from None
    missing = [f for f in ("load_model", "get_scene_embeddings", "get_timestamp_embeddings")
               if not callable(getattr(module, f, None))]
    if missing:
        raise HearEvalError(f"{name} is not a HEAR module: it has no {', '.join(missing)}")
    loaded = module.load_model(model) if model is not None else module.load_model()
    rate = getattr(loaded, "sample_rate", None)
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise HearEvalError(f"{name}.load_model(...) returned a model without an integer sample_rate ({rate!r}); "
                            "a HEAR model must declare the rate its audio comes at")
    if isinstance(loaded, torch.nn.Module):
        loaded = loaded.to(dev).eval()
    return HearModule(name=name, module=module, model=loaded, model_path=None if model is None else str(model),
                      sample_rate=int(rate), device=dev)


# --- embedding a task ----------------------------------------------------------------------------------------------

def heareval_order(split_names: list[str], files: dict[str, list[str]]) -> dict[str, list[str]]:
    """Row order of each split's files in heareval's embedding folders: one ``random.Random(0)`` shuffles the
    files of each split in turn, in the order of ``split_names``."""
    prng = random.Random(0)
    out = {}
    for split in split_names:
        names = list(files[split])
        prng.shuffle(names)
        out[split] = names
    return out


def frame_labels(events: list[dict[str, Any]], timestamps: np.ndarray) -> list[list[str]]:
    """Per timestamp (ms), the labels of the events with ``start <= t < end + 0.0001`` (heareval's rule)."""
    out: list[list[str]] = [[] for _ in range(len(timestamps))]
    t = np.asarray(timestamps, dtype=np.float64)
    for e in events:
        for i in np.flatnonzero((e["start"] <= t) & (t < e["end"] + 0.0001)):
            out[i].append(str(e["label"]))
    return out


def _task_identity(task: Any, sample_rate: int) -> dict[str, Any]:
    h = hashlib.sha1()
    for name in ["task_metadata.json", "labelvocabulary.csv"] + [f"{s}.json" for s in task.split_names()]:
        h.update(name.encode() + b"\0" + (task.root / name).read_bytes())
    audio = hashlib.sha1()
    for split in task.split_names():
        for filename in sorted(task.splits[split]):
            p = task.audio_path(split, filename, sample_rate)
            st = p.stat() if p.is_file() else None
            audio.update(f"{split}/{filename}\0{st and st.st_size}\0{st and st.st_mtime_ns}\n".encode())
    return {"task_name": task.metadata.task_name, "version": task.metadata.version, "files": h.hexdigest(),
            "audio": audio.hexdigest()}


def _read_wave(path: Path) -> np.ndarray:
    """``(time,)`` float32 mono at the file's rate (checked against the folder's by the caller)."""
    try:
        return load_audio(path)
    except AudioError as e:
        raise HearEvalError(f"{e}; rebuild the task (audiocnn hear make-task)") from None


def _batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of equal-length sounds, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    return [g[k:k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]


def _embed_split(hm: HearModule, task: Any, split: str, *, event: bool, batch_size: int,
                 bar: Any) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """{filename: (embeddings, timestamps or None)} for one split."""
    names = list(task.splits[split])
    paths = [task.audio_path(split, n, hm.sample_rate) for n in names]
    lengths = []
    for p in paths:
        try:
            info = sf.info(str(p))
        except (OSError, RuntimeError, sf.LibsndfileError) as e:
            raise HearEvalError(f"{p}: cannot read it ({e}); rebuild the task (audiocnn hear make-task)") from None
        if info.samplerate != hm.sample_rate:
            raise HearEvalError(f"{p}: {info.samplerate} Hz in the {hm.sample_rate} Hz folder; rebuild the task")
        lengths.append(info.frames)
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    with torch.no_grad():
        for batch in _batches(lengths, batch_size):
            audio = torch.from_numpy(np.stack([_read_wave(paths[i]) for i in batch]))
            audio = audio.to(hm.device)
            if event:
                emb, ts = hm.module.get_timestamp_embeddings(audio, hm.model)
                emb, ts = emb.detach().float().cpu().numpy(), ts.detach().double().cpu().numpy()
                if emb.ndim != 3 or ts.shape != emb.shape[:2]:
                    raise HearEvalError(f"{hm.name}.get_timestamp_embeddings returned {emb.shape} embeddings and "
                                        f"{ts.shape} timestamps; HEAR needs (sounds, frames, dim) and (sounds, frames)")
                for k, i in enumerate(batch):
                    out[names[i]] = (emb[k], ts[k])
            else:
                emb = hm.module.get_scene_embeddings(audio, hm.model).detach().float().cpu().numpy()
                if emb.ndim != 2 or len(emb) != len(batch):
                    raise HearEvalError(f"{hm.name}.get_scene_embeddings returned shape {emb.shape} for "
                                        f"{len(batch)} sounds; HEAR needs (sounds, dim)")
                for k, i in enumerate(batch):
                    out[names[i]] = (emb[k], None)
            if bar is not None:
                bar.update(len(batch))
    return out


def is_embedding_folder(path: str | Path) -> bool:
    """A folder with ``task_metadata.json`` and at least one ``*.embedding-dimensions.json``."""
    p = Path(path)
    return (p / "task_metadata.json").is_file() and any(p.glob("*.embedding-dimensions.json"))


def embed_task(hm: HearModule, task: Any, out_dir: str | Path, *, batch_size: int = 32, progress: str = "auto",
               log: Callable[[str], None] | None = print) -> tuple[Path, float]:
    """Embed every file of ``task`` into ``out_dir/<task_name>/`` (layout in the module docstring).

    A folder whose ``embedding-done.json`` records the same module, model files, task files and audio is reused.

    Args:
        hm: from :func:`load_hear_module`.
        task: a :class:`audiocnn.hear.tasks.HearTask`.
        out_dir: the model's embeddings folder (``OUT/embeddings/<model label>``).
        batch_size: sounds per call of the module.

    Returns:
        ``(task embedding folder, seconds spent embedding)`` (0 when reused).

    Raises:
        HearEvalError: the task has no audio at the model's rate, or a file cannot be read.
    """
    meta = task.metadata
    dest = Path(out_dir) / meta.task_name
    if hm.sample_rate not in task.sample_rates():
        have = ", ".join(str(r) for r in task.sample_rates()) or "none"
        raise HearEvalError(f"{task.root}: no audio at {hm.sample_rate} Hz, the rate {hm.name} needs (the task has "
                            f"{have} Hz); rebuild it with that rate (audiocnn hear make-task ... --sample-rates "
                            f"{hm.sample_rate})")
    record = {"format": FORMAT, "embedder": hm.identity(), "task": _task_identity(task, hm.sample_rate)}
    done = dest / DONE_FILE
    if done.is_file():
        try:
            before = json.loads(done.read_text())
        except (OSError, ValueError):
            before = None
        if isinstance(before, dict) and {k: before.get(k) for k in record} == record:
            return dest, 0.0
        done.unlink()
    splits = task.split_names()
    event = meta.embedding_type == "event"
    t0 = time.perf_counter()
    bar = None
    if show_progress(progress):
        from tqdm import tqdm
        bar = tqdm(total=sum(len(task.splits[s]) for s in splits), unit="file", desc=f"embed {meta.task_name}",
                   dynamic_ncols=True, leave=False)
    try:
        embedded = {s: _embed_split(hm, task, s, event=event, batch_size=batch_size, bar=bar) for s in splits}
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0

    metadata = json.loads((task.root / "task_metadata.json").read_text())
    metadata.setdefault("splits", splits)  # heareval's runner lists the splits from here
    atomic_write_text(dest / "task_metadata.json", json.dumps(metadata, indent=2) + "\n")
    atomic_write(dest / "labelvocabulary.csv", lambda f: f.write((task.root / "labelvocabulary.csv").read_bytes()))
    order = heareval_order(splits, {s: list(task.splits[s]) for s in splits})
    dims = set()
    for split in splits:
        atomic_write(dest / f"{split}.json", lambda f, s=split: f.write((task.root / f"{s}.json").read_bytes()))
        rows, labels, stamps = [], [], []
        for name in order[split]:
            emb, ts = embedded[split][name]
            if event:
                rows.append(emb)
                labels += frame_labels(task.splits[split][name], ts)
                stamps += [[f"{split}/{name}", float(t)] for t in ts]
            else:
                rows.append(emb[None])
                labels.append([str(lab) for lab in task.splits[split][name]])
        x = np.ascontiguousarray(np.concatenate(rows).astype(np.float32, copy=False))
        dims.add(x.shape[1])
        atomic_write(dest / f"{split}.embeddings.npy", lambda f, a=x: f.write(a.tobytes()))
        atomic_write(dest / f"{split}.target-labels.pkl", lambda f, v=labels: pickle.dump(v, f))
        if event:
            atomic_write_text(dest / f"{split}.filename-timestamps.json", json.dumps(stamps) + "\n")
        atomic_write_text(dest / f"{split}.embedding-dimensions.json", json.dumps(list(x.shape)) + "\n")
    if len(dims) != 1:
        raise HearEvalError(f"{hm.name} gave embeddings of different widths {sorted(dims)} across the splits of "
                            f"{meta.task_name}")
    atomic_write_text(done, json.dumps({**record, "seconds": seconds}, indent=2) + "\n")
    if log is not None:
        log(f"{meta.task_name}: embedded {sum(len(task.splits[s]) for s in splits)} files in {seconds:.1f} s "
            f"on {hm.device}")
    return dest, seconds


# --- reading -------------------------------------------------------------------------------------------------------

class _PlainUnpickler(pickle.Unpickler):
    """Lists, strings and numbers only: refuses every class, so nothing in the file is executed."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a target-labels.pkl holds plain lists of labels")


@dataclass
class EmbeddedSplit:
    """One split of an embedding folder.

    Attributes:
        x: ``(rows, dim)`` float32.
        labels: per row, its labels (strings).
        files / timestamps: event folders: per row, its file name and timestamp (ms); None for scene folders.
    """

    x: np.ndarray
    labels: list[list[str]]
    files: list[str] | None = None
    timestamps: np.ndarray | None = None


def read_split(folder: str | Path, split: str) -> EmbeddedSplit:
    """Read one split of a heareval embedding folder (written by :func:`embed_task` or by heareval).

    Raises:
        HearEvalError: missing, truncated or inconsistent files.
    """
    folder = Path(folder)
    dims_path = folder / f"{split}.embedding-dimensions.json"
    try:
        n, dim = (int(v) for v in json.loads(dims_path.read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise HearEvalError(f"{dims_path}: cannot read [rows, dim] ({e}); embed the task again") from None
    data = folder / f"{split}.embeddings.npy"
    size = data.stat().st_size if data.is_file() else -1
    if size != n * dim * 4:
        raise HearEvalError(f"{data}: {size} bytes where {n} x {dim} float32 need {n * dim * 4}; embed the task again")
    x = np.fromfile(data, dtype=np.float32).reshape(n, dim)
    labels_path = folder / f"{split}.target-labels.pkl"
    try:
        with open(labels_path, "rb") as f:
            labels = _PlainUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise HearEvalError(f"{labels_path}: cannot read it ({e}); embed the task again") from None
    if not isinstance(labels, list) or len(labels) != n or not all(isinstance(v, list) for v in labels):
        raise HearEvalError(f"{labels_path}: expected {n} lists of labels; embed the task again")
    labels = [[str(v) for v in row] for row in labels]
    out = EmbeddedSplit(x=x, labels=labels)
    stamps_path = folder / f"{split}.filename-timestamps.json"
    if stamps_path.is_file():
        try:
            pairs = json.loads(stamps_path.read_text())
            files = [Path(str(p[0])).name for p in pairs]
            ts = np.asarray([float(p[1]) for p in pairs], dtype=np.float64)
        except (OSError, ValueError, TypeError, IndexError) as e:
            raise HearEvalError(f"{stamps_path}: cannot read [file, timestamp] pairs ({e})") from None
        if len(files) != n:
            raise HearEvalError(f"{stamps_path}: {len(files)} timestamps for {n} rows; embed the task again")
        out.files, out.timestamps = files, ts
    return out
