"""Decode audio files to float32 mono waves, and resample them.

Every way a file can be unusable (missing, empty, truncated, corrupt, not audio, NaN samples,
odd shapes) raises :class:`AudioError` naming the file and the reason, so callers can list all
bad files before training instead of crashing in the middle of an epoch.

Example:
    >>> wave = load_audio("recordings/7_jackson_32.wav", sample_rate=16000)
    >>> wave.shape, wave.dtype
    ((7040,), dtype('float32'))
"""
from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from audiocnn.core.errors import AudiocnnError

__all__ = ["AUDIO_EXTENSIONS", "MAX_CHANNELS", "MIN_DURATION", "AudioError", "check_length", "check_samples",
           "decode_audio", "find_inputs", "load_audio", "open_audio", "resample"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")
"""The one list of audio file extensions: dataset folders, ``predict``, ``embed`` and ``hear`` read these."""
"""File name endings the dataset builders treat as audio."""

MAX_CHANNELS = 64
"""More channels than this is almost always a ``(channels, time)`` array saved as ``(time, channels)``."""

# MP3 frame counts come from the Xing/LAME header (or an estimate) and may be a little off.
MP3_LENGTH_TOLERANCE = 0.05
MIN_DURATION = 0.01
"""Seconds: a shorter file carries no sound and breaks framing; every command rejects it."""

READ_BLOCK = 1 << 18
"""Frames decoded at a time (mixing many channels down block by block bounds the memory)."""


class AudioError(AudiocnnError):
    """An audio file cannot be used. ``str(e) == f"{path}: {reason}"``.

    Attributes:
        path: the file, as given.
        reason: what is wrong with it and, where useful, what to do.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep (path, reason) when sent back from a DataLoader worker
        return (type(self), (self.path, self.reason))


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling with soxr (``HQ``), the same quality librosa uses by default.

    Args:
        wave: ``(time,)`` or ``(time, channels)`` samples.
        orig_sr: sample rate of ``wave`` in Hz.
        target_sr: wanted sample rate in Hz.

    Returns:
        float32 array ``(round(time * target_sr / orig_sr),)`` (channels kept if given).
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got orig_sr={orig_sr}, target_sr={target_sr}")
    wave = np.asarray(wave, dtype=np.float32)
    if orig_sr == target_sr:
        return wave
    return np.asarray(soxr.resample(wave, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def _describe_unreadable(raw: Callable[[], BinaryIO], err: Exception, *, opened: bool) -> str:
    """A reason for bytes (``raw()`` opens them) libsndfile refuses to open (``opened=False``) or to decode."""
    with raw() as f:
        head = f.read(512)
    text = str(err)
    msg = text.split(": ", 1)[1].strip() if ": " in text else text.strip()
    # libmpg123 claims any unrecognised bytes; its "does not exist" message only misleads
    detail = f" (libsndfile: {msg})" if msg and "does not exist" not in msg else ""
    if opened:
        return f"corrupt or truncated audio data{detail}; re-encode or re-download the file"
    fmt = head.find(b"fmt ") if head[:4] == b"RIFF" and head[8:12] == b"WAVE" else -1
    if 0 <= fmt <= len(head) - 16 and struct.unpack_from("<I", head, fmt + 12)[0] == 0:
        return f"invalid sample rate 0 in the WAV header{detail}; re-encode the file"
    if head.startswith((b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"ID3", b"FORM")):
        return f"corrupt or truncated audio header{detail}; re-encode or re-download the file"
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    if printable >= 0.95 * len(head):
        return f"not an audio file: the bytes look like text{detail}"
    return f"not a readable audio file{detail}; supported: {', '.join(AUDIO_EXTENSIONS)}"


def _wav_truncation(raw: Callable[[], BinaryIO]) -> str | None:
    """The reason RIFF/WAVE bytes (``raw()`` opens them) hold fewer data bytes than their header declares, else None.

    libsndfile silently shortens such files, so a half-downloaded WAV would train as a short clip.
    """
    with raw() as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                # 0 and 0xFFFFFFFF are what streaming writers leave when they cannot seek back
                if csize in (0, 0xFFFFFFFF):
                    return None
                have = size - (pos + 8)
                if have < csize:
                    return (f"truncated: the WAV header declares {csize} data bytes but the file holds "
                            f"only {have}; re-download or re-export it")
                return None
            pos += 8 + csize + (csize & 1)
    return None


def find_inputs(inputs: Iterable[str | os.PathLike], extensions: tuple[str, ...] = AUDIO_EXTENSIONS
                ) -> list[tuple[Path, Path]]:
    """``(file, path relative to the input it came from)`` for files and folders given on a command line.

    Folders are searched recursively for ``extensions`` (sorted); a folder holding none is kept as an input
    of its own, so reading it fails with a message naming it (a folder called ``x.wav`` included).
    """
    out: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = [(f, f.relative_to(p)) for f in sorted(p.rglob("*")) if f.suffix.lower() in extensions and f.is_file()]
            out += found or [(p, Path(p.name))]
        else:
            out.append((p, Path(p.name)))
    return out


def check_samples(path: str | os.PathLike, data: np.ndarray, sample_rate: int, *, start: int = 0) -> None:
    """NaN or Inf samples in ``data`` (``(frames, channels)``, the first at frame ``start`` of the file) are an
    :class:`AudioError` naming the time of the first one."""
    bad = ~np.isfinite(data)
    if bad.any():
        first = start + int(np.argmax(bad.any(axis=1)))
        raise AudioError(path, f"{int(bad.sum())} NaN or Inf sample(s), the first at {first / sample_rate:.3f} s "
                               f"(frame {first}); fix or remove the file")


def check_length(path: str | os.PathLike, got: int, frames: int, sample_rate: int, fmt: str, *,
                 min_duration: float = MIN_DURATION) -> None:
    """Fewer decoded frames than the header declares (beyond MP3's tolerance), none, or fewer than
    ``min_duration`` seconds: an :class:`AudioError`."""
    tolerance = MP3_LENGTH_TOLERANCE * frames if fmt == "MP3" else 0
    if got < frames - tolerance:
        raise AudioError(path, f"truncated or corrupt: the header declares {frames} frames but only {got} "
                               "could be decoded; re-download or re-export it")
    if got == 0:
        raise AudioError(path, "no audio samples could be decoded")
    if got < min_duration * sample_rate:
        raise AudioError(path, f"too short: {got} sample(s) at {sample_rate} Hz, less than {min_duration} s")


@contextlib.contextmanager
def open_audio(path: str | os.PathLike, *, min_duration: float = MIN_DURATION) -> Iterator[sf.SoundFile]:
    """Open an audio file with the checks every reader shares; errors name the file and the reason.

    Checks before reading: missing, a directory, empty (0 bytes), more than ``MAX_CHANNELS`` channels,
    a bad sample rate, 0 frames, fewer than ``min_duration`` seconds, a WAV whose header declares more data
    than the file holds. Decoding
    errors raised while the caller reads inside the ``with`` block become :class:`AudioError` too.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(path, "file not found")
    if p.is_dir():
        raise AudioError(path, f"is a folder, not an audio file, and holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    if p.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    with _open_checked(path, p, lambda: open(p, "rb"), min_duration=min_duration) as f:
        yield f


@contextlib.contextmanager
def _open_checked(name: str | os.PathLike, source: Path | BinaryIO, raw: Callable[[], BinaryIO], *,
                  min_duration: float) -> Iterator[sf.SoundFile]:
    """:func:`open_audio`'s header checks on ``source`` (what libsndfile opens); ``raw()`` opens the same bytes."""
    opened = False
    try:
        with sf.SoundFile(source) as f:
            opened = True
            if f.channels > MAX_CHANNELS:
                raise AudioError(name, f"{f.channels} channels (more than {MAX_CHANNELS}): probably a "
                                       "(channels, time) array written as (time, channels); transpose it")
            if f.samplerate <= 0:
                raise AudioError(name, f"invalid sample rate {f.samplerate} in the header")
            if f.frames == 0:
                raise AudioError(name, "no audio samples (valid header, 0 frames)")
            if f.format != "MP3" and f.frames < min_duration * f.samplerate:
                raise AudioError(name, f"too short: {f.frames} sample(s) at {f.samplerate} Hz, less than "
                                       f"{min_duration} s")
            if f.format == "WAV" and (reason := _wav_truncation(raw)):
                raise AudioError(name, reason)
            yield f
    except AudioError:
        raise
    except PermissionError as e:
        raise AudioError(name, f"cannot read the file ({e.strerror}); check its permissions") from None
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, EOFError) as e:
        raise AudioError(name, _describe_unreadable(raw, e, opened=opened)) from None


def load_audio(path: str | os.PathLike, sample_rate: int | None = None, *, min_duration: float = MIN_DURATION
               ) -> np.ndarray:
    """Decode a file (wav/flac/ogg/mp3, anything libsndfile reads) to a float32 mono wave.

    Channels are mixed down by their mean; the wave is resampled with soxr when ``sample_rate``
    differs from the file's.

    Args:
        path: the audio file.
        sample_rate: output rate in Hz; ``None`` keeps the file's rate.
        min_duration: files shorter than this many seconds are rejected (a 1-sample file carries
            no sound and breaks framing).

    Returns:
        ``(time,)`` float32 samples, nominally in [-1, 1].

    Raises:
        AudioError: naming the file and the reason: missing, empty (0 bytes or 0 samples), too
            short, truncated or corrupt, not audio, NaN/Inf samples, more than ``MAX_CHANNELS``
            channels.
    """
    with open_audio(path, min_duration=min_duration) as f:
        return _read_mono(path, f, sample_rate, min_duration=min_duration)


def decode_audio(data: bytes, sample_rate: int | None = None, *, name: str = "audio", min_duration: float = MIN_DURATION,
                 max_duration: float | None = None) -> np.ndarray:
    """:func:`load_audio` of a file's bytes held in memory (an upload): the same checks, mixing and resampling.

    Args:
        data: the bytes of a file in a format libsndfile reads (WAV, FLAC, OGG, MP3 ...).
        sample_rate: output rate in Hz; ``None`` keeps the file's rate.
        name: what error messages call the bytes (``str(e) == f"{name}: {reason}"``).
        min_duration: shorter audio is rejected.
        max_duration: longer audio (by its header, before decoding) is rejected; ``None``: no limit.

    Returns:
        ``(time,)`` float32 samples.

    Raises:
        AudioError: as :func:`load_audio`, and audio longer than ``max_duration``.
    """
    if not data:
        raise AudioError(name, "empty (0 bytes)")
    with _open_checked(name, io.BytesIO(data), lambda: io.BytesIO(data), min_duration=min_duration) as f:
        if max_duration is not None and f.frames > max_duration * f.samplerate:
            raise AudioError(name, f"{f.frames / f.samplerate:.1f} s of audio, more than the limit of {max_duration:g} s; "
                                   "send a shorter clip")
        return _read_mono(name, f, sample_rate, min_duration=min_duration)


def _read_mono(name: str | os.PathLike, f: sf.SoundFile, sample_rate: int | None, *, min_duration: float) -> np.ndarray:
    """The checked samples of an open file, mixed down to mono and resampled: ``(time,)`` float32.

    Read in blocks and mixed down block by block, so many channels never sit in memory at once.
    """
    frames, sr, fmt = f.frames, f.samplerate, f.format
    parts, got = [], 0
    while True:
        data = f.read(READ_BLOCK, dtype="float32", always_2d=True)
        if not len(data):
            break
        check_samples(name, data, sr, start=got)
        got += len(data)
        parts.append(data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0])
    check_length(name, got, frames, sr, fmt, min_duration=min_duration)

    wave = np.concatenate(parts)
    if sample_rate is not None and sample_rate != sr:
        wave = resample(wave, sr, sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)
