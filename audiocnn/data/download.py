"""Download, verify and unpack the built-in datasets: ``audiocnn data download NAME``.

Every archive is streamed to ``<root>/downloads/<archive>.part``, resumed with an HTTP ``Range``
request after an interruption, and only renamed to ``<root>/downloads/<archive>`` once it passes
its checks: the published size and checksum where there are some (RAVDESS, GTZAN, Speech
Commands); otherwise (FSDD, ESC-50/ESC-10, GTZAN's fallback copy) the length the server announced
and a full read of every member (zip CRC-32s; tar members and the gzip stream's own CRC). Unpacking
happens in a temporary sibling folder that is renamed into ``<root>/<folder>`` once it holds the
layout the dataset builders expect, so an interrupted run never leaves half a dataset behind. An
archive refused as unsafe (members outside the folder, links out, devices) is moved to
``<root>/downloads/quarantine/`` so that no later run uses it.

Example:
    >>> from audiocnn.data.download import download
    >>> download("esc50", "data")  # doctest: +SKIP
    PosixPath('data/esc50')        # data/esc50/meta/esc50.csv, data/esc50/audio/*.wav
"""
from __future__ import annotations

import contextlib
import datetime
import difflib
import enum
import errno
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import socket
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from audiocnn.core.io import atomic_write_text, check_writable
from audiocnn.core.errors import ConfigError, DownloadError, EnvironmentFailure
from audiocnn.core.runtime import show_progress

__all__ = ["DownloadError", "Remote", "Source", "SOURCES", "download", "fetch", "safe_extract"]

MARKER = ".audiocnn-download.json"
MIRROR_ENV = "AUDIOCNN_MIRROR"
# A machine without network usually fails at once (DNS error, unreachable network); a firewall
# that silently drops packets would otherwise hold the user for the whole read timeout.
CONNECT_TIMEOUT = 10.0
# Mid-transfer failures are retried with a Range request; connection failures are not.
_TRANSFER_ATTEMPTS = 4
_RETRY_DELAY = 1.0  # seconds, times the attempt number
_CHUNK = 1 << 20
_USER_AGENT = "audiocnn-download/0.1 (python-urllib)"


@dataclass(frozen=True)
class Remote:
    """One place an archive can be fetched from.

    Args:
        url: Where the archive is served.
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"``; ``None`` where nobody publishes a stable
            digest (then every member of the archive is read, checking its CRCs, before the
            download is accepted).
        size: Size in bytes, if published; checked before and after the transfer. ``None`` where
            nobody publishes one (the length the server announces is checked instead).
    """

    url: str
    checksum: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Source:
    """A built-in dataset: where its archive lives and what it must look like once unpacked.

    Args:
        name: The name given to ``audiocnn data download``.
        archive: File name of the archive under ``<root>/downloads/`` (also the name fetched from
            a mirror: ``{mirror}/{archive}``).
        remotes: Official locations, tried in order; the first one's checksum also applies to a
            user mirror.
        folder: Dataset folder under ``root``.
        layout: Glob patterns relative to the dataset folder; each must match something for the
            dataset to count as present.
        strip_top: The archive wraps everything in one top-level folder (``repo-<ref>/``) whose
            contents become the dataset folder.
    """

    name: str
    archive: str
    remotes: tuple[Remote, ...]
    folder: str
    layout: tuple[str, ...]
    strip_top: bool = False


_ESC50 = dict(
    archive="ESC-50-master.zip",
    # GitHub branch archive, generated on request: no stable published checksum or size exists (the
    # bytes change with every commit to master); about 645 MB. Verified: the length the server
    # announces (codeload often announces none) and every member's CRC-32, before it is kept.
    remotes=(Remote("https://github.com/karolpiczak/ESC-50/archive/refs/heads/master.zip"),),
    folder="esc50",
    layout=("meta/esc50.csv", "audio/*.wav"),
    strip_top=True,
)

SOURCES: dict[str, Source] = {
    "fsdd": Source(
        name="fsdd",
        archive="free-spoken-digit-dataset-1.0.10.zip",
        # Tag v1.0.10 (3,000 recordings, 6 speakers). GitHub generates tag archives on request
        # and publishes no checksum for them; TFDS pins only the older v1.0.9 tarball
        # (tensorflow_datasets/audio/spoken_digit/checksums.tsv: 11975353 bytes, sha256
        # 8bc44cde129d505cbbb6b365c09f80c663f2aa77578afc634e6141a2f87100c0, 2,500 recordings).
        # No size is published either. Verified: the announced length and every member's CRC-32.
        remotes=(Remote("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip"),),
        folder="fsdd",
        layout=("recordings/*.wav",),
        strip_top=True,
    ),
    "esc50": Source(name="esc50", **_ESC50),
    # ESC-10 is the rows of meta/esc50.csv with esc10 == True: same archive, unpacked into esc10/
    # because that is the folder recipes/esc10.yaml reads (the esc10 builder accepts this layout).
    "esc10": Source(name="esc10", **{**_ESC50, "folder": "esc10"}),
    "ravdess": Source(
        name="ravdess",
        archive="Audio_Speech_Actors_01-24.zip",
        # md5 as published on the Zenodo record 1188976 (Zenodo lists an md5 per file).
        remotes=(
            Remote(
                "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip",
                checksum="md5:bc696df654c87fed845eb13823edef8a",
                size=208_468_073,
            ),
        ),
        folder="ravdess",
        layout=("Actor_*/*.wav",),
    ),
    "gtzan": Source(
        name="gtzan",
        archive="genres.tar.gz",
        remotes=(
            # sha256 and size from torchaudio (src/torchaudio/datasets/gtzan.py, _CHECKSUMS) and
            # TFDS (tensorflow_datasets/audio/gtzan/checksums.tsv). This host has been down since
            # 2022 (torchaudio's docstring says so), hence the fallback below.
            Remote(
                "http://opihi.cs.uvic.ca/sound/genres.tar.gz",
                checksum="sha256:24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6",
                size=1_225_571_541,
            ),
            # The marsyas organisation's copy on the Hugging Face hub. No checksum is published
            # for it here and it is not known to be byte-identical to the original, so only the
            # archive's integrity is checked.
            Remote("https://huggingface.co/datasets/marsyas/gtzan/resolve/main/data/genres.tar.gz"),
        ),
        folder="gtzan",
        # Copies differ in audio format (.au in the original release, .wav in later ones).
        layout=("genres/blues/blues.*", "genres/rock/rock.*"),
    ),
    "speech_commands": Source(
        name="speech_commands",
        archive="speech_commands_v0.02.tar.gz",
        # sha256 from torchaudio (torchaudio/datasets/speechcommands.py, _CHECKSUMS); size and the
        # same sha256 from TFDS (tensorflow_datasets/url_checksums/speech_commands.txt).
        remotes=(
            Remote(
                "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
                checksum="sha256:af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
                size=2_428_923_189,
            ),
        ),
        folder="speech_commands",
        # The tarball has no top-level folder: <word>/*.wav, _background_noise_/, the split lists.
        layout=("validation_list.txt", "testing_list.txt", "yes/*.wav"),
    ),
}


# --------------------------------------------------------------------------------------------
# download(): the whole flow
# --------------------------------------------------------------------------------------------


def download(
    name: str,
    root: str | os.PathLike,
    *,
    mirror: str | None = None,
    force: bool = False,
    progress: bool | None = None,
    timeout: float = 30.0,
) -> Path:
    """Make ``<root>/<folder>`` hold the dataset ``name`` and return that folder.

    Does nothing (and touches no network) when the layout is already there, unless ``force``.
    An archive already at ``<root>/downloads/<archive>`` (put there by hand, say) is verified
    and unpacked without downloading.

    Args:
        name: One of ``SOURCES`` (``fsdd``, ``esc50``, ``esc10``, ``ravdess``, ``gtzan``,
            ``speech_commands``).
        root: Data folder; archives go to ``root/downloads``.
        mirror: Base URL replacing the official location: the archive is fetched as
            ``{mirror}/{archive}``. Defaults to the ``AUDIOCNN_MIRROR`` environment variable.
        force: Download and unpack again, replacing the cached archive and the dataset folder.
        progress: Progress bar; ``None`` shows one only when stderr is a terminal.
        timeout: Seconds a stalled transfer may wait for data.

    Returns:
        The dataset folder, e.g. ``root/esc50``.

    Raises:
        DownloadError: offline, server error, interrupted transfer, checksum mismatch, damaged or
            unsafe archive (an unsafe one is moved to ``root/downloads/quarantine/``).
        EnvironmentFailure: the disk is full, or ``root`` is read-only or not writable.
    """
    source = _source(name)
    root = Path(root)
    target = root / source.folder
    if not force and not _missing(target, source.layout):
        return target
    check_writable(root, setting="--root (data.root)")  # a read-only folder fails before any download

    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    archive = root / "downloads" / source.archive
    if force:
        for path in (archive, archive.with_name(archive.name + ".part")):
            path.unlink(missing_ok=True)
    if target.exists() and not force and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(
            f"{target} exists but does not look like a complete {name} dataset (nothing matches "
            f"{', '.join(_missing(target, source.layout))}); move it away, or pass force=True "
            f"(--force) to replace it"
        )

    if archive.exists():
        _say(f"using {archive}, already on disk")
        remote = _verify_existing(archive, _remotes(source, mirror))
        used_url = f"file://{archive.resolve()}"
    else:
        used_url, remote = _fetch_any(source, mirror, archive, root, progress=progress, timeout=timeout)

    _say(f"unpacking {archive} -> {target}")
    marker = {
        "dataset": source.folder,
        "requested": name,
        "archive": source.archive,
        "url": used_url,
        "checksum": remote.checksum or "sha256:" + _digest(archive, "sha256"),
        "checksum_published": remote.checksum is not None,
        "unpacked_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        with _local_writes(root):
            _unpack(source, archive, target, marker)
    except _Unsafe as exc:
        with _local_writes(archive.parent):
            kept = _quarantine(archive)
        raise DownloadError(
            f"{exc}. It was moved to {kept} and will not be used again: fetch a trusted copy with "
            f"--mirror URL, or delete it"
        ) from exc
    return target


def _quarantine(archive: Path) -> Path:
    """Move a refused archive to ``downloads/quarantine/``, where no run looks for archives."""
    kept = archive.parent / "quarantine" / archive.name
    kept.parent.mkdir(exist_ok=True)
    os.replace(archive, kept)
    return kept


def _source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        close = difflib.get_close_matches(name, SOURCES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(SOURCES)}{hint}") from None


def _missing(folder: Path, layout: tuple[str, ...]) -> list[str]:
    """Layout patterns with no match under ``folder`` (all of them if it does not exist)."""
    if not folder.is_dir():
        return list(layout)
    return [pattern for pattern in layout if next(folder.glob(pattern), None) is None]


def _remotes(source: Source, mirror: str | None) -> tuple[Remote, ...]:
    if mirror:
        first = source.remotes[0]
        return (Remote(f"{mirror.rstrip('/')}/{source.archive}", first.checksum, first.size),)
    return source.remotes


def _manual_hint(source: Source, archive: Path, root: Path) -> str:
    urls = " or ".join(r.url for r in source.remotes)
    example = root / source.folder / source.layout[0]
    return (
        f"download {urls} yourself and put it at {archive}, then rerun; "
        f"or unpack it so that {example} exists"
    )


def _fetch_any(
    source: Source, mirror: str | None, archive: Path, root: Path, *, progress: bool | None, timeout: float
) -> tuple[str, Remote]:
    """Try each remote in turn; give up with the by-hand instructions if none can be reached."""
    failures: list[str] = []
    offline = True
    for remote in _remotes(source, mirror):
        try:
            fetch(
                remote.url, archive, checksum=remote.checksum, size=remote.size,
                check_archive=remote.checksum is None, progress=progress, timeout=timeout,
            )
            return remote.url, remote
        except _Unreachable as exc:
            failures.append(str(exc))
        except _NotServed as exc:
            offline = False
            failures.append(str(exc))
    why = "; ".join(failures)
    if offline:
        raise DownloadError(
            f"could not reach the server for {source.name} ({why}): this machine seems to be offline. "
            f"To install it by hand, {_manual_hint(source, archive, root)}"
        )
    raise DownloadError(
        f"no server would hand out {source.archive} ({why}). Try another location with "
        f"--mirror URL (fetches URL/{source.archive}), or {_manual_hint(source, archive, root)}"
    )


def _verify_existing(archive: Path, remotes: tuple[Remote, ...]) -> Remote:
    """Check an archive that is already in place against the remotes' published checksums.

    It is never deleted: it may be a download made by hand. An archive matching no published
    checksum is accepted only where some remote publishes none (its CRCs are checked on unpacking).
    """
    actual_size = archive.stat().st_size
    digests: dict[str, str] = {}
    for remote in remotes:
        if remote.checksum is None:
            continue
        algo, expected = _parse_checksum(remote.checksum)
        if algo not in digests:
            digests[algo] = _digest(archive, algo)
        if digests[algo] == expected and remote.size in (None, actual_size):
            return remote
    unpublished = [r for r in remotes if r.checksum is None]
    if unpublished:
        return unpublished[0]
    published = ", ".join(f"{r.checksum} ({r.size} bytes)" if r.size else str(r.checksum) for r in remotes)
    found = ", ".join(f"{a}:{d}" for a, d in digests.items())
    raise DownloadError(
        f"{archive} ({actual_size} bytes, {found}) does not match the published archive ({published}); "
        f"it is incomplete, damaged or a different file: delete it and rerun"
    )


def _unpack(source: Source, archive: Path, target: Path, marker: dict) -> None:
    parent = target.parent
    for stale in parent.glob(f".{target.name}.unpack-*"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpack-", dir=parent))
    try:
        _extract_checked(archive, staging)
        content = staging
        if source.strip_top:
            entries = list(staging.iterdir())
            if len(entries) != 1 or not entries[0].is_dir():
                names = ", ".join(sorted(e.name for e in entries)) or "nothing"
                raise DownloadError(
                    f"{archive} should hold a single top-level folder but holds {names}; "
                    f"it is not the {source.name} archive: delete it and rerun"
                )
            content = entries[0]
        missing = _missing(content, source.layout)
        if missing:
            raise DownloadError(
                f"{archive} unpacked, but nothing in it matches {', '.join(missing)}; it is not the "
                f"{source.name} archive: delete it and rerun"
            )
        atomic_write_text(content / MARKER, json.dumps(marker, indent=2) + "\n")
        _replace_dir(content, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; an existing ``target`` is moved aside first, then deleted."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / target.name)
    os.rename(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# fetch(): one URL to one file, resumable and verified
# --------------------------------------------------------------------------------------------


class _Unreachable(DownloadError):
    """No connection could be made (DNS failure, refused, unreachable, connect timeout)."""


class _NotServed(DownloadError):
    """The location answered but would not hand out the file (HTTP error, TLS failure, ...)."""


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    checksum: str | None,
    size: int | None = None,
    check_archive: bool = False,
    progress: bool | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a part left by an earlier run.

    A ``.part`` file is continued with ``Range: bytes=N-``; a server that answers ``200`` instead
    of ``206`` is read from the start again. A transfer cut midway is resumed the same way a few
    times before giving up (the part file is kept for the next run). A server that announces no
    length cannot show where the file ends, so a part that then fails its checks counts as cut
    midway too. ``dest`` appears only once the size and checksum (or archive) checks pass.

    Args:
        url: What to fetch (``http``, ``https`` or ``file``).
        dest: Final file path.
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"``; ``None`` skips the check.
        size: Expected size in bytes, if known.
        check_archive: Where there is no checksum, read every member of the zip or tar archive
            (checking CRCs) before accepting it.
        progress: Progress bar; ``None`` shows one only when stderr is a terminal.
        timeout: Seconds a stalled transfer may wait for data (connecting gives up sooner).

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: unreachable server, HTTP error, repeated interruption, size, checksum or
            archive check failed on a complete transfer (the part file is then deleted).
        EnvironmentFailure: the disk is full, or the folder is read-only or not writable.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if checksum:
        _parse_checksum(checksum)  # a malformed checksum fails before any transfer
    show = show_progress("auto") if progress is None else progress
    with _local_writes(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)

    _say(f"downloading {url} -> {dest}")
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        try:
            if size is not None and offset == size:
                ended = _Ended.COMPLETE  # a previous run got every byte; only the checks are left
            else:
                ended = _transfer(url, part, offset, size, show=show, timeout=timeout)
            if ended is _Ended.AGAIN:
                continue
            problem = _problem(part, size=size, checksum=checksum, check_archive=check_archive)
            if problem is None:
                break
            if ended is _Ended.UNANNOUNCED:
                raise _Interrupted(
                    f"the server announced no length, and what it sent before closing fails its check: {problem}"
                )
            part.unlink()
            raise DownloadError(
                f"what {url} sent fails its check ({problem}); the download was deleted. Rerun; if it happens "
                f"again the file has changed upstream or the server sends something else: fetch it with "
                f"--mirror URL from a trusted copy"
            )
        except _Interrupted as exc:
            failures += 1
            have = part.stat().st_size if part.exists() else 0
            if failures >= _TRANSFER_ATTEMPTS:
                if not have:
                    part.unlink(missing_ok=True)  # an empty part would only look like progress
                raise DownloadError(_gave_up(url, dest, part, have, failures, exc)) from exc
            _say(f"transfer of {url} interrupted at {have} bytes ({exc}); resuming")
            time.sleep(_RETRY_DELAY * failures)

    with _local_writes(dest):
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(part, dest)
    return dest


def _gave_up(url: str, dest: Path, part: Path, have: int, failures: int, exc: Exception) -> str:
    kept = f"{have} bytes are kept in {part}: rerun to resume" if have else "nothing was received: rerun later"
    return (
        f"the transfer of {url} broke off {failures} times ({exc}); {kept}. If it keeps failing, "
        f"fetch it with --mirror URL from another copy, or put the file at {dest} yourself"
    )


def _problem(part: Path, *, size: int | None, checksum: str | None, check_archive: bool) -> str | None:
    """What is wrong with the transferred bytes, or ``None`` when they pass every check there is."""
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        return f"{actual_size} bytes, expected {size}"
    if checksum:
        algo, expected = _parse_checksum(checksum)
        actual = _digest(part, algo)
        if actual != expected:
            return f"checksum mismatch: expected {algo} {expected}, got {actual}"
    elif check_archive:
        damage = _archive_damage(part)
        if damage is not None:
            return f"a damaged or incomplete archive ({damage})"
    return None


class _Interrupted(Exception):
    """The connection broke after the transfer began; resuming may help."""


class _Ended(enum.Enum):
    """How one request left the part file."""

    AGAIN = "again"  # the part was discarded or is stale: ask again
    COMPLETE = "complete"  # it holds every byte the server announced
    UNANNOUNCED = "unannounced"  # the server announced no length; a cut connection looks the same as the end


def _transfer(url: str, part: Path, offset: int, size: int | None, *, show: bool, timeout: float) -> _Ended:
    """One request, appending to (or rewriting) the part file."""
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        # Built per request so proxy settings in the environment are read now (ProxyHandler is
        # among the defaults build_opener adds).
        opener = urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            _, total = _content_range(exc.headers.get("Content-Range", ""))
            if total == offset:
                return _Ended.COMPLETE  # the part already holds the whole file
            part.unlink()  # the part is longer than the file: start over
            return _Ended.AGAIN
        raise _NotServed(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _unreachable(url, exc.reason) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Interrupted(_describe(exc)) from exc

    with response:
        status = getattr(response, "status", None) or 200
        length = response.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
        if offset and status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink()  # not the continuation that was asked for: start over
                return _Ended.AGAIN
            mode = "ab"
        else:
            if offset:
                _say(f"{url} ignored the Range request; downloading from the start")
            offset, mode = 0, "wb"
        if size is not None and total is not None and total != size:
            raise DownloadError(
                f"{url} announces {total} bytes but the published archive has {size}; the file has "
                f"changed upstream or the server sent something else (an error page?)"
            )
        bar = _bar(show, total or size, offset, part.name[: -len(".part")])
        received = offset
        try:
            with _local_writes(part), open(part, mode) as f:
                while True:
                    try:
                        # read1: whatever has arrived, so bytes before a reset are kept for resuming
                        chunk = response.read1(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Interrupted(_describe(exc)) from exc
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if total is None:
        return _Ended.UNANNOUNCED
    if received < total:
        raise _Interrupted(f"connection closed after {received} of {total} bytes")
    return _Ended.COMPLETE


def _bar(show: bool, total: int | None, initial: int, desc: str):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, dynamic_ncols=True,
    )


def _content_range(value: str) -> tuple[int | None, int | None]:
    """``"bytes 100-199/200"`` -> ``(100, 200)``; ``"bytes */200"`` -> ``(None, 200)``."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value)
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _unreachable(url: str, reason: object) -> DownloadError:
    """Sort a connection failure: 'seems offline' (DNS, refused, unreachable, timeout) or not."""
    if isinstance(reason, socket.gaierror):
        return _Unreachable(f"cannot resolve the host of {url}: {reason}")
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return _Unreachable(f"no connection to {url} within {CONNECT_TIMEOUT:g} s")
    if isinstance(reason, ConnectionError) or (
        isinstance(reason, OSError)
        and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN)
    ):
        return _Unreachable(f"cannot connect to {url}: {getattr(reason, 'strerror', None) or reason}")
    # TLS failures, missing file:// paths, unknown schemes: the network is not the problem.
    return _NotServed(f"cannot open {url}: {reason}")


class _ConnectTimeout:
    """Connect (and TLS handshake) with a short timeout, then read with the caller's timeout."""

    def connect(self) -> None:
        read_timeout = self.timeout
        if read_timeout is not None and read_timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
            self.timeout = min(CONNECT_TIMEOUT, read_timeout)
        else:
            self.timeout = CONNECT_TIMEOUT
        try:
            super().connect()
        finally:
            self.timeout = read_timeout
        if isinstance(read_timeout, (int, float)):
            self.sock.settimeout(read_timeout)


class _HTTPConnection(_ConnectTimeout, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ConnectTimeout, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_HTTPConnection, req, **kwargs)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_HTTPSConnection, req, **kwargs)




def _parse_checksum(checksum: str) -> tuple[str, str]:
    algo, _, value = checksum.partition(":")
    algo, value = algo.strip().lower(), value.strip().lower()
    if algo not in ("sha256", "md5") or not re.fullmatch(r"[0-9a-f]+", value) or len(value) != (
        64 if algo == "sha256" else 32
    ):
        raise ValueError(f"checksum {checksum!r} is not of the form 'sha256:<64 hex>' or 'md5:<32 hex>'")
    return algo, value


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _describe(exc: BaseException) -> str:
    """``"Type: message"`` on one line (a server's garbage can carry newlines into the message)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _environment_failure(exc: OSError, path: Path) -> EnvironmentFailure | None:
    """The machine's fault (disk full, read-only, no permission) as an error naming the path."""
    if exc.errno in _DISK_FULL:
        what = "free some space there, or download to another folder (--root)"
    elif exc.errno in _NOT_WRITABLE:
        what = "make it writable, or download to another folder (--root)"
    else:
        return None
    return EnvironmentFailure(f"cannot write {exc.filename or path}: {exc.strerror or exc}; {what}")


@contextlib.contextmanager
def _local_writes(path: Path):
    """Writing under ``path``: disk full or not writable becomes an ``EnvironmentFailure``."""
    try:
        yield
    except OSError as exc:
        failure = _environment_failure(exc, path)
        if failure is None:
            raise
        raise failure from exc


# --------------------------------------------------------------------------------------------
# safe_extract(): unpack without ever writing outside the destination
# --------------------------------------------------------------------------------------------


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into ``dest``, refusing anything unsafe.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    links that point outside ``dest`` (or members reached through a link), device files and
    FIFOs are rejected with a ``DownloadError`` naming the member. Tar archives are also
    extracted with the standard ``"data"`` filter where Python has it (3.11.4+, 3.12+).
    Unpacking happens in a temporary sibling folder that is renamed to ``dest`` at the end.

    Args:
        archive: The archive file.
        dest: Folder to create; it must not exist yet (an empty folder is allowed).

    Returns:
        ``dest`` as a ``Path``.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"cannot unpack {archive} into {dest}: it already exists and is not empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        _extract_checked(archive, staging)
        if dest.exists():
            dest.rmdir()
        os.rename(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


class _Unsafe(DownloadError):
    """The archive holds a member that would land outside the folder (or a device file)."""


_UNREADABLE = (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError)


def _archive_damage(archive: Path) -> str | None:
    """Read every member of a zip or tar archive; what is wrong with it, or ``None``."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()  # reads every member, checking its CRC-32
            return None if bad is None else f"member {bad!r} fails its CRC-32 check"
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                for member in tf:
                    if member.isfile():
                        with tf.extractfile(member) as f:
                            while f.read(_CHUNK):
                                pass
                # A compressed stream's own check (gzip's CRC-32 and length) comes after the last
                # member, and truncation inside the final padding shows only there.
                while tf.fileobj.read(_CHUNK):
                    pass
            return None
    except _UNREADABLE as exc:
        return _describe(exc)
    return "not a readable zip or tar archive"


def _extract_checked(archive: Path, dest: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, dest)
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive: delete it and rerun")
    except DownloadError:
        raise
    except _UNREADABLE as exc:
        failure = _environment_failure(exc, dest.parent) if isinstance(exc, OSError) else None
        if failure is not None:
            raise failure from exc
        raise DownloadError(
            f"{archive} is damaged ({_describe(exc)}): delete it and rerun to download it again"
        ) from exc


def _member_path(archive: Path, name: str) -> str:
    """The member's normalised relative path; raises for anything that could leave the folder."""
    unix = name.replace("\\", "/")
    if unix.startswith("/") or re.match(r"^[A-Za-z]:", unix):
        raise _Unsafe(f"{archive}: member {name!r} has an absolute path; refusing to unpack this archive")
    if ".." in unix.split("/"):
        raise _Unsafe(f"{archive}: member {name!r} climbs out with '..'; refusing to unpack this archive")
    return posixpath.normpath(unix)


def _inside_link(archive: Path, name: str, path: str, links: set[str]) -> None:
    parts = path.split("/")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            raise _Unsafe(
                f"{archive}: member {name!r} lies behind the link {'/'.join(parts[:i])!r}; "
                f"refusing to unpack this archive"
            )


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _member_path(archive, info.filename)
            kind_bits = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix file type recorded
            if kind_bits not in (0, stat.S_IFREG, stat.S_IFDIR):
                kind = "a symlink" if kind_bits == stat.S_IFLNK else "a special file"
                raise _Unsafe(f"{archive}: member {info.filename!r} is {kind}; refusing to unpack this archive")
        zf.extractall(dest)  # reading each member checks its CRC-32


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        links: set[str] = set()
        for m in members:
            path = _member_path(archive, m.name)
            _inside_link(archive, m.name, path, links)
            if m.issym() or m.islnk():
                link = m.linkname.replace("\\", "/")
                # Symlinks are relative to the member's folder, hard links to the archive root.
                base = posixpath.dirname(path) if m.issym() else ""
                resolved = posixpath.normpath(posixpath.join(base, link))
                if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
                    raise _Unsafe(
                        f"{archive}: member {m.name!r} links to {m.linkname!r}, outside the folder; "
                        f"refusing to unpack this archive"
                    )
                links.add(path)
            elif not (m.isfile() or m.isdir()):
                raise _Unsafe(
                    f"{archive}: member {m.name!r} is a device file or FIFO; refusing to unpack this archive"
                )
        if hasattr(tarfile, "data_filter"):
            try:
                tf.extractall(dest, members=members, filter="data")
            except tarfile.FilterError as exc:
                member = getattr(getattr(exc, "tarinfo", None), "name", "?")
                raise _Unsafe(
                    f"{archive}: member {member!r} rejected ({exc}); refusing to unpack this archive"
                ) from exc
        else:
            for m in members:
                if m.isfile() or m.isdir():
                    m.mode &= 0o755  # no setuid/setgid/world-writable bits, as the data filter does
            tf.extractall(dest, members=members)
