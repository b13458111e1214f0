"""Run folders and logs: ``runs/<recipe>/<timestamp>/`` with log.txt, metrics.csv, env.txt and (optionally)
tensorboard/."""
from __future__ import annotations

import csv
import datetime as dt
import io
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy
import soundfile
import soxr
import torch

import audiocnn
from audiocnn.core.errors import ConfigError
from audiocnn.core.io import append_text, atomic_write_text

__all__ = ["ProgressLine", "RunLogger", "check_loggers", "git_commit", "write_env"]


def git_commit(directory: Path) -> str:
    """``git rev-parse HEAD`` of the checkout whose tracked files ``directory`` holds; ``none`` without git,
    outside a checkout, or in an untracked folder of one (a package installed into a virtual environment kept
    inside some other project), never an error."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=10)

    try:
        if git("ls-files", "--error-unmatch", "--", ".").returncode != 0:
            return "none"
        head = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "none"
    commit = head.stdout.strip()
    return commit if head.returncode == 0 and commit else "none"


def write_env(run_dir: Path) -> None:
    """Versions and hardware, so a run can be reproduced (as SpeechBrain's env.log): audiocnn's version and the
    git commit of its checkout, Python, torch and the audio libraries."""
    from importlib.metadata import version  # librosa itself takes seconds to import

    lines = [f"date: {dt.datetime.now().isoformat(timespec='seconds')}", f"audiocnn: {audiocnn.__version__}",
             f"git: {git_commit(Path(audiocnn.__file__).parent)}", f"python: {sys.version.split()[0]}",
             f"platform: {platform.platform()}", f"torch: {torch.__version__}", f"numpy: {numpy.__version__}",
             f"librosa: {version('librosa')}", f"soundfile: {soundfile.__version__}", f"soxr: {soxr.__version__}",
             f"cpu threads: {torch.get_num_threads()}",
             f"cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}",
             f"command: {' '.join(sys.argv)}"]
    try:
        import nnAudio
        lines.append(f"nnAudio: {getattr(nnAudio, '__version__', 'installed')}")
    except ImportError:
        pass
    atomic_write_text(run_dir / "env.txt", "\n".join(lines) + "\n")


def check_loggers(loggers: Sequence[str]) -> None:
    """Before any work: a ConfigError when ``trainer.loggers`` asks for a package that is not installed."""
    if "tensorboard" in loggers:
        _summary_writer()


def _summary_writer():
    try:  # an optional extra, imported only when trainer.loggers asks for it
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("trainer.loggers includes tensorboard, but the tensorboard package is not installed: "
                          "pip install audiocnn[tensorboard] (or drop it from trainer.loggers)") from None
    return SummaryWriter


class ProgressLine:
    """``epoch 3: step 120/400 (30%), 12.3 s, loss 0.812`` through ``emit`` every ``every_s`` seconds of an
    epoch (``trainer.log_every_s``; 0, or no ``emit``, says nothing), where no progress bar shows; the loss is
    the epoch's mean so far."""

    def __init__(self, emit: Callable[[str], None] | None, *, epoch: int, steps: int, every_s: float):
        self.emit, self.epoch, self.steps = emit, epoch, steps
        self.every_s = every_s if emit is not None else 0.0
        self.started = self.last = time.perf_counter()

    def update(self, step: int, loss: float) -> None:
        """After ``step`` steps (counting from 1)."""
        if self.every_s <= 0:
            return
        now = time.perf_counter()
        if now - self.last < self.every_s:
            return
        self.last = now
        self.emit(f"epoch {self.epoch}: step {step}/{self.steps} ({100 * step // max(self.steps, 1)}%), "
                  f"{now - self.started:.1f} s, loss {loss:.3f}")


class RunLogger:
    """One plain line per epoch on stdout and in log.txt; one row per epoch for each of ``loggers``: ``csv``
    (metrics.csv) and ``tensorboard`` (its numeric columns as scalars, step = epoch, in ``RUN/tensorboard/``).

    ``enabled=False`` (every process but rank 0 of a distributed run) makes every method a no-op.
    """

    def __init__(self, run_dir: Path, *, quiet: bool = False, enabled: bool = True,
                 loggers: Sequence[str] = ("csv",)):
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.enabled = enabled
        self.loggers = tuple(loggers)
        self.csv_path = self.run_dir / "metrics.csv"
        self._tensorboard = None  # opened at the first epoch logged

    def info(self, msg: str) -> None:
        if not self.enabled:
            return
        if not self.quiet:
            print(msg, flush=True)
        append_text(self.run_dir / "log.txt", msg + "\n")

    def rows(self) -> list[dict[str, str]]:
        if not self.csv_path.exists():
            return []
        with open(self.csv_path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate(self, epochs_done: int) -> None:
        """Drop rows for epochs a killed run logged but never checkpointed (before resuming)."""
        if not self.enabled:
            return
        rows = [r for r in self.rows() if int(r["epoch"]) <= epochs_done]
        self._write(rows)

    def log_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if "csv" in self.loggers:
            self._write(self.rows() + [{k: _fmt(v) for k, v in row.items()}])
        if "tensorboard" in self.loggers:
            if self._tensorboard is None:  # purge_step: a resumed run hides what a killed run logged past last.pt
                self._tensorboard = _summary_writer()(str(self.run_dir / "tensorboard"), purge_step=row["epoch"])
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tensorboard.add_scalar(key, value, global_step=row["epoch"])
            self._tensorboard.flush()  # on disk each epoch: a killed run keeps its curves

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def _write(self, rows: list[dict[str, Any]]) -> None:
        fields: list[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.csv_path, buf.getvalue())


def _fmt(v: Any) -> Any:
    return f"{v:.8g}" if isinstance(v, float) else v
