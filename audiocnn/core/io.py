"""Files written atomically (a temporary sibling, then ``os.replace``), so readers never see half a file, and
the machine's refusals (disk full, over quota, read-only or not ours) as one :class:`WriteFailure`.

A write is serialised in memory first: its size is known (and named when the disk is full), and a serialiser
never meets a failing disk (``torch.save`` writing into a full disk ends in ``RuntimeError: ... unexpected pos``,
not an ``OSError``). Only finished bytes go to the temporary file, which is removed on any failure.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from audiocnn.core.errors import EnvironmentFailure

__all__ = ["WriteFailure", "append_text", "atomic_file", "atomic_write", "atomic_write_text", "check_writable",
           "make_dirs", "write_json"]

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES})


class WriteFailure(EnvironmentFailure):
    """``path`` cannot be written because of the machine: its disk is full or over quota, or its folder is
    read-only or not writable by this user. The message names the path and what to do.

    Attributes:
        path: the file or folder that could not be written.
        errno: the ``OSError``'s errno (``ENOSPC``, ``EDQUOT``, ``EROFS`` or ``EACCES``).
        disk_full: the disk (or the user's quota) has no room left.
    """

    def __init__(self, path: str | os.PathLike, error: OSError, *, setting: str | None = None,
                 size: int | None = None):
        self.path, self.errno = Path(path), error.errno
        self.disk_full = error.errno in DISK_FULL
        reason = f"[Errno {error.errno}] {error.strerror}"
        if self.disk_full:
            needs = f"; {_megabytes(size)} needed" if size is not None else ""
            where = f", or set {setting} to a folder on a disk with room" if setting else ""
            what = f"the disk is full ({reason}{needs}); free some space{where}"
        else:
            folder = _existing_ancestor(self.path)
            kind = "read-only" if error.errno == errno.EROFS else "not writable by this user"
            where = f"set {setting} to a writable folder" if setting else "choose a writable folder"
            what = f"{folder} is {kind} ({reason}); {where}"
        super().__init__(f"cannot write {self.path}: {what}")


@contextlib.contextmanager
def _refusals(path: Path, setting: str | None, size: int | None = None) -> Iterator[None]:
    """Turn the machine's refusals into a :class:`WriteFailure`; any other ``OSError`` is a bug and stays."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL and e.errno not in NOT_WRITABLE:
            raise
        raise WriteFailure(path, e, setting=setting, size=size) from e


def _megabytes(size: int) -> str:
    return f"{max(size / 1e6, 0.01):.2f} MB"


def _existing_ancestor(path: Path) -> Path:
    """``path`` if it is a folder, else the nearest one above it that exists: where a new file is refused."""
    for parent in (path, *path.parents):
        if parent.is_dir():
            return parent
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb", *,
                 setting: str | None = None) -> None:
    """Write a file via a temporary sibling and ``os.replace`` so readers never see half a file.

    ``write`` receives an in-memory file (bytes for ``"wb"``, text for ``"w"``, written as UTF-8); what it
    wrote goes to disk afterwards.

    Args:
        path: the file to write; missing parent folders are made.
        write: called with the file object to fill.
        mode: ``"wb"`` or ``"w"``.
        setting: the recipe key or flag that chooses this folder (``trainer.output_dir``, ``--out``), named in
            a :class:`WriteFailure` as what to change.

    Raises:
        WriteFailure: the disk is full or over quota, or the folder is read-only or not writable; no
            temporary file is left behind and ``path``, if it existed, is unchanged.
    """
    buf = io.StringIO() if "b" not in mode else io.BytesIO()
    write(buf)
    data = buf.getvalue().encode() if isinstance(buf, io.StringIO) else buf.getbuffer()
    with atomic_file(path, setting=setting, size=len(data)) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, setting: str | None = None, size: int | None = None
                ) -> Iterator[Any]:
    """A binary file written straight to a temporary sibling and renamed onto ``path`` when the block ends
    without an error: :func:`atomic_write` for files too big to hold in memory (a 256 MB shard).

    The writer meets the disk directly, so it must raise ``OSError`` on a failing disk (``tarfile``,
    ``file.write`` do); on any exception the temporary file is removed and ``path`` is unchanged.

    ``size``, when known, goes into a full-disk message.

    Raises:
        WriteFailure: the disk is full or over quota, or the folder is read-only or not writable.
    """
    path = Path(path)
    tmp = None
    with _refusals(path, setting, size):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are meant to be shared
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str, *, setting: str | None = None) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w", setting=setting)


def write_json(path: str | os.PathLike, data: Any, *, setting: str | None = None) -> None:
    """Indented JSON with a final newline, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", setting=setting)


def append_text(path: str | os.PathLike, text: str, *, setting: str | None = None) -> None:
    """Append ``text`` to a log file; a full disk or read-only folder is a :class:`WriteFailure`."""
    path = Path(path)
    with _refusals(path, setting), open(path, "a") as f:
        f.write(text)


def make_dirs(path: str | os.PathLike, *, setting: str | None = None) -> Path:
    """``mkdir -p``; a read-only or full disk is a :class:`WriteFailure` naming ``setting``."""
    path = Path(path)
    with _refusals(path, setting):
        path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(folder: str | os.PathLike, *, setting: str | None = None) -> None:
    """Fail early, before any work, when ``folder`` (or, while it does not exist, the folder it would be made
    in) refuses new files; nothing is left behind.

    Raises:
        WriteFailure: the folder is read-only or not writable by this user (or its disk has no inodes left).
    """
    folder = Path(os.path.expanduser(str(folder)))
    with _refusals(folder, setting):
        fd, tmp = tempfile.mkstemp(prefix=".audiocnn-write-check.", dir=_existing_ancestor(folder))
    os.close(fd)
    os.unlink(tmp)
