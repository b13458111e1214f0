"""Run folders and logs: ``runs/<recipe>/<timestamp>/`` with log.txt, metrics.csv and env.txt."""
from __future__ import annotations

import csv
import datetime as dt
import io
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from audiocnn.core.io import append_text, atomic_write_text

__all__ = ["RunLogger", "make_run_dir", "write_env"]


def make_run_dir(output_dir: str, name: str) -> Path:
    """A new, unique ``output_dir/name/YYYYmmdd-HHMMSS`` folder."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(output_dir) / name / stamp
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{stamp}-{i}"), i + 1
    (path / "checkpoints").mkdir(parents=True)
    return path


def write_env(run_dir: Path) -> None:
    """Versions and hardware, so a run can be reproduced (as SpeechBrain's env.log)."""
    import librosa
    import numpy
    lines = [f"date: {dt.datetime.now().isoformat(timespec='seconds')}", f"python: {sys.version.split()[0]}",
             f"platform: {platform.platform()}", f"torch: {torch.__version__}", f"numpy: {numpy.__version__}",
             f"librosa: {librosa.__version__}", f"cpu threads: {torch.get_num_threads()}",
             f"cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}",
             f"command: {' '.join(sys.argv)}"]
    try:
        import nnAudio
        lines.append(f"nnAudio: {getattr(nnAudio, '__version__', 'installed')}")
    except ImportError:
        pass
    atomic_write_text(run_dir / "env.txt", "\n".join(lines) + "\n")


class RunLogger:
    """One plain line per epoch on stdout and in log.txt; one row per epoch in metrics.csv.

    ``enabled=False`` (every process but rank 0 of a distributed run) makes every method a no-op.
    """

    def __init__(self, run_dir: Path, *, quiet: bool = False, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.enabled = enabled
        self.csv_path = self.run_dir / "metrics.csv"

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
        rows = self.rows() + [{k: _fmt(v) for k, v in row.items()}]
        self._write(rows)

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
