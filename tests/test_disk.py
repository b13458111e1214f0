"""The machine says no (issue 15): a full disk or a read-only folder ends a command in one line and exit status
3, with no traceback and no half-written file; a training run keeps a checkpoint to resume from.

How the faults are made. Where this machine lets the tests mount file systems (root, with the right to mount),
the faults are real: a small tmpfs (``mount -t tmpfs -o size=N``) whose space runs out, and a read-only tmpfs
(``-o ro``; ``chmod`` does not stop root). A user who is not root gets a real read-only folder from ``chmod
0o555`` instead. Every test also runs with the fault injected at one place, so it runs where nothing can be
mounted too: a full disk is ``os.replace`` into the folder raising ENOSPC once the files there take more than
its size (the temporary file is then complete, and must be removed); a read-only folder is ``os.open`` (which
``tempfile.mkstemp`` uses) and ``os.mkdir`` (which ``Path.mkdir`` uses) raising EROFS for paths inside it.
"""
from __future__ import annotations

import csv
import errno
import functools
import json
import os
import subprocess
import warnings
from pathlib import Path

import pytest

from audiocnn.cli import main
from audiocnn.config import load_config
from audiocnn.core.checkpoint import load_checkpoint
from audiocnn.core.errors import EnvironmentFailure
from audiocnn.core.io import WriteFailure, atomic_write, atomic_write_text
from audiocnn.data.cache import AudioCache, prepare
from audiocnn.data.splits import Example
from audiocnn.pipelines import train
from audiocnn.plots import TIMING_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "quickstart.yaml")
TINY = [
    "data.num_classes=4", "data.num_per_class=12", "data.duration=0.5", "data.sample_rate=8000",
    "data.batch_size=8", "model.name=cnn_tiny", "model.args.width=8", "trainer.progress=never",
    "trainer.report=false", "trainer.epochs=3",
    "trainer.threads=1",  # runs compared bit for bit: the automatic count follows the load (core/threads.py)
]


# --- faults ----------------------------------------------------------------------------------------------------

@functools.cache
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, outside a locked-down container)."""
    if os.geteuid() != 0:
        return False
    probe = Path(f"/tmp/audiocnn-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                          capture_output=True).returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=True)
        return True
    except OSError:  # no mount program
        return False
    finally:
        probe.rmdir()


def _mount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)


def _inside(path: str | os.PathLike, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(folder)


class Disk:
    """A folder on a disk of ``size`` bytes: a real tmpfs (``how="tmpfs"``) or its emulation at ``os.replace``."""

    def __init__(self, path: Path, size: int, how: str, monkeypatch: pytest.MonkeyPatch):
        self.path, self.size, self.how = path, size, how
        path.mkdir(parents=True)
        if how == "tmpfs":
            _mount(path, f"size={size}")
            return
        replace = os.replace

        def full_replace(src, dst, **kwargs):
            if _inside(dst, path) and self.used() > self.size:  # the temporary file did not fit
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
            return replace(src, dst, **kwargs)

        monkeypatch.setattr(os, "replace", full_replace)

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def resize(self, size: int) -> None:
        """More room: the user freed some space."""
        self.size = size
        if self.how == "tmpfs":
            subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def fill(self) -> None:
        """No room left at all."""
        if self.how != "tmpfs":
            self.size = self.used()
            return
        try:
            with open(self.path / ".filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC

    def close(self) -> None:
        if self.how == "tmpfs":
            subprocess.run(["umount", "-l", str(self.path)], check=True)


@pytest.fixture(params=["tmpfs", "injected"])
def make_disk(request, tmp_path, monkeypatch):
    if request.param == "tmpfs" and not can_mount():
        pytest.skip("this machine does not let the tests mount a tmpfs; the injected fault covers it")
    disks: list[Disk] = []

    def make(size: int) -> Disk:
        disks.append(Disk(tmp_path / f"disk{len(disks)}", size, request.param, monkeypatch))
        return disks[-1]

    yield make
    for disk in disks:
        disk.close()


@pytest.fixture(params=["real", "injected"])
def read_only(request, tmp_path, monkeypatch):
    """A folder that refuses new files and folders: EROFS (a read-only tmpfs, or injected) or EACCES (chmod)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if request.param == "injected":
        open_, mkdir = os.open, os.mkdir
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

        def ro_open(path, flags, *args, **kwargs):
            if flags & writing and _inside(path, folder):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return open_(path, flags, *args, **kwargs)

        def ro_mkdir(path, *args, **kwargs):
            if _inside(path, folder):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", ro_open)
        monkeypatch.setattr(os, "mkdir", ro_mkdir)
        yield folder
    elif can_mount():
        _mount(folder, "ro,size=64k")
        yield folder
        subprocess.run(["umount", "-l", str(folder)], check=True)
    elif os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:
        pytest.skip("root, and no mount allowed: no real read-only folder here; the injected fault covers it")


def one_error_line(err: str) -> str:
    """The command's whole stderr is one ``error:`` line (no traceback); returns it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def files_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != ".filler")


# --- a finished tiny run, shared (trained once per module) -----------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("work")


def overrides(work: Path, output_dir: Path) -> list[str]:
    return [f"data.root={work / 'synthetic'}", f"data.cache_dir={work / 'cache'}",
            f"trainer.output_dir={output_dir}", *TINY]


@pytest.fixture(scope="module")
def tiny_run(work) -> Path:
    return train(load_config(RECIPE, overrides(work, work / "runs")), quiet=True)


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


# --- 1. a full disk during training -------------------------------------------------------------------------

def test_full_disk_during_training_keeps_last_checkpoint_and_resume_matches(tiny_run, work, make_disk, capsys):
    ckpt = (tiny_run / "checkpoints" / "last.pt").stat().st_size
    # room for the small files and epoch 1's best.pt and last.pt, not for epoch 2's third checkpoint (the new
    # file is written beside the old one)
    disk = make_disk(2 * ckpt + ckpt // 2 + (64 << 10))
    capsys.readouterr()
    assert main(["train", RECIPE, *overrides(work, disk.path)]) == 3
    line = one_error_line(capsys.readouterr().err)
    (run,) = (disk.path / "quickstart").iterdir()
    assert "the disk is full" in line and "MB needed" in line and str(run / "checkpoints") in line
    assert f"audiocnn train --resume {run}" in line and "once space is freed" in line
    assert not [f for f in files_in(disk.path) if f.endswith(".tmp")], files_in(disk.path)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == 1

    disk.resize(64 << 20)
    assert main(["train", "--resume", str(run)]) == 0
    assert "resumed at epoch 1" in capsys.readouterr().out
    assert read_metrics(run) == read_metrics(tiny_run)
    assert (json.loads((run / "eval" / "test_metrics.json").read_text())
            == json.loads((tiny_run / "eval" / "test_metrics.json").read_text()))


# --- 2. atomic_write, and the commands that write through it, on a full disk ------------------------------------

def test_atomic_write_on_full_disk_is_an_environment_failure_and_keeps_the_old_file(make_disk):
    disk = make_disk(256 << 10)
    path = disk.path / "out" / "table.csv"
    atomic_write_text(path, "old\n")
    disk.fill()
    with pytest.raises(EnvironmentFailure) as info:
        atomic_write(path, lambda f: f.write(b"x" * 300_000))
    e = info.value
    assert isinstance(e, WriteFailure) and e.exit_code == 3 and e.disk_full and e.path == path
    assert isinstance(e.__cause__, OSError) and e.__cause__.errno == errno.ENOSPC
    assert str(e).startswith(f"cannot write {path}: the disk is full")
    assert "0.30 MB needed" in str(e) and str(e).endswith("free some space")
    assert path.read_text() == "old\n" and files_in(disk.path) == ["out/table.csv"]


def test_embed_csv_on_full_disk_exits_3_without_a_traceback(tiny_run, work, make_disk, capsys):
    disk = make_disk(256 << 10)
    disk.fill()
    wavs = sorted(str(p) for p in (work / "synthetic").rglob("*.wav"))[:3]
    out = disk.path / "emb"
    assert main(["embed", str(tiny_run), *wavs, "--out", str(out), "--format", "csv", "--progress", "never"]) == 3
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot write {out}" in line and "the disk is full" in line and "--out" in line
    assert files_in(disk.path) == []  # nothing that looks like a result


def test_report_on_full_disk_exits_3_without_a_traceback(tiny_run, make_disk, capsys):
    disk = make_disk(256 << 10)
    disk.fill()
    out = disk.path / "report.html"
    assert main(["report", str(tiny_run), "--out", str(out)]) == 3
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot write {out}: the disk is full" in line and "MB needed" in line
    assert files_in(disk.path) == []


def test_hear_make_task_on_full_disk_exits_3_without_a_traceback(work, make_disk, capsys):
    disk = make_disk(256 << 10)
    disk.fill()
    args = ["hear", "make-task", "synthetic", "data.num_classes=2", "data.num_per_class=3", "data.sample_rate=8000",
            "data.duration=0.5", "--root", str(work / "hear-synthetic"), "--out", str(disk.path / "tasks"),
            "--progress", "never"]
    assert main(args) == 3
    assert "the disk is full" in one_error_line(capsys.readouterr().err)
    assert files_in(disk.path) == []


# --- 3. read-only folders -------------------------------------------------------------------------------------

def test_atomic_write_in_read_only_folder_names_the_folder(read_only):
    path = read_only / "sub" / "x.json"
    with pytest.raises(EnvironmentFailure) as info:
        atomic_write_text(path, "{}")
    e = info.value
    assert isinstance(e, WriteFailure) and e.exit_code == 3 and not e.disk_full
    assert e.__cause__.errno in (errno.EROFS, errno.EACCES)
    assert str(e).startswith(f"cannot write {path}: {read_only} is ") and str(e).endswith("choose a writable folder")


def test_read_only_output_dir_fails_before_any_training(work, tmp_path, read_only, capsys):
    fresh_data = tmp_path / "not-generated"
    args = [*overrides(work, read_only / "runs"), f"data.root={fresh_data}"]
    assert main(["train", RECIPE, *args]) == 3
    line = one_error_line(capsys.readouterr().err)
    assert f"{read_only} is " in line and "set trainer.output_dir to a writable folder" in line
    assert not fresh_data.exists()  # the data was not even generated


def test_read_only_data_root_exits_3(work, read_only, capsys):
    args = [*overrides(work, work / "runs"), f"data.root={read_only / 'synthetic'}"]
    assert main(["train", RECIPE, *args]) == 3
    line = one_error_line(capsys.readouterr().err)
    assert f"{read_only} is " in line and "set data.root to a writable folder" in line


def test_read_only_cache_dir_falls_back_to_memory_with_one_warning(tiny_run, work, read_only):
    wavs = sorted((work / "synthetic").rglob("*.wav"))
    examples = [Example(path=p, target=0) for p in wavs]
    cache = AudioCache(read_only, sample_rate=8000, dataset="synthetic")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(prepare(examples, cache, num_threads=4)) == len(examples)
        waves = [cache.load(p) for p in wavs]  # from memory: not decoded again
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    folder = read_only / "synthetic" / "sr8000"
    assert messages[0].startswith(f"the audio cache {folder} cannot be written, so decoded audio is kept in memory")
    assert cache.decodes == len(wavs) and all(len(w) == 4000 for w in waves)
    assert not list(read_only.rglob("*"))
