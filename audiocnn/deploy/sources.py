"""Sound for ``audiocnn stream``: a file, a WAV or raw PCM byte stream (standard input), or the microphone.

Every source yields consecutive ``(n,)`` float32 mono blocks at its own rate; :func:`resampled` brings them to the
run's rate with a soxr stream (the same numbers as resampling the whole sound at once). Byte streams are read as
they arrive (``read1``), so a live pipe such as ``arecord -f S16_LE -r 8000 -t wav - | audiocnn stream RUN -`` is
labelled while it plays. Problems are :class:`~audiocnn.audio.io.AudioError` naming the source (``stdin``).

WAV on a stream: RIFF/WAVE with a ``fmt `` chunk of integer PCM (8, 16, 24 or 32 bits) or IEEE float (32 or 64
bits), also as WAVE_FORMAT_EXTENSIBLE; channels are mixed down by their mean. A ``data`` size of 0 or 0xFFFFFFFF
(what writers that cannot seek back leave) means "until the end of the stream".

Raw PCM: headerless mono samples, ``s16le`` (16-bit signed little-endian integers, scaled by 1/32768) or
``f32le`` (32-bit little-endian floats), at a sample rate the caller states.
"""
from __future__ import annotations

import queue
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import soxr

from audiocnn.audio.io import AudioError, check_samples
from audiocnn.core.errors import ConfigError

__all__ = ["RAW_DTYPES", "PcmFormat", "mic_blocks", "pcm_blocks", "raw_format", "read_wav_header", "resampled"]

READ_BYTES = 1 << 16
"""Bytes asked of a stream at a time; ``read1`` returns what has arrived, up to this."""
RAW_DTYPES = {"s16le": "<i2", "f32le": "<f4"}
"""``--dtype`` names of raw PCM and their numpy types."""
_PCM_TAG, _FLOAT_TAG, _EXTENSIBLE_TAG = 1, 3, 0xFFFE
_USAGE = "pipe a WAV file, or raw mono samples with --raw --sample-rate N --dtype s16le|f32le"


@dataclass(frozen=True)
class PcmFormat:
    """How interleaved sample bytes decode: numpy ``dtype`` (``'u1'`` and ``'<i3'`` included), channels and rate."""

    dtype: str
    channels: int
    sample_rate: int

    @property
    def frame_bytes(self) -> int:
        return self.channels * (3 if self.dtype == "<i3" else np.dtype(self.dtype).itemsize)

    def decode(self, data: bytes) -> np.ndarray:
        """Whole frames of ``data`` -> ``(frames, channels)`` float32 in [-1, 1] (integers as libsndfile scales them)."""
        if self.dtype == "<i3":  # 24-bit: put each sample in the top three bytes of an int32
            b = np.frombuffer(data, np.uint8).reshape(-1, 3)
            wide = np.zeros((len(b), 4), np.uint8)
            wide[:, 1:] = b
            x = wide.view("<i4").reshape(-1).astype(np.float32) / 2.0 ** 31
        elif self.dtype == "u1":
            x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
        else:
            x = np.frombuffer(data, self.dtype).astype(np.float32)
            if np.dtype(self.dtype).kind == "i":
                x /= float(2 ** (8 * np.dtype(self.dtype).itemsize - 1))
        return x.reshape(-1, self.channels)


def raw_format(dtype: str, sample_rate: int) -> PcmFormat:
    """The format of headerless mono PCM given as ``--dtype`` and ``--sample-rate``."""
    if dtype not in RAW_DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: raw PCM is one of {', '.join(RAW_DTYPES)}")
    if sample_rate < 1:
        raise ConfigError(f"--sample-rate {sample_rate}: give the raw samples' rate in Hz (a positive integer)")
    return PcmFormat(RAW_DTYPES[dtype], 1, int(sample_rate))


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = f.read(n - len(out))
        if not got:
            break
        out += got
    return out


def _wav_dtype(tag: int, bits: int, name: str) -> str:
    if tag == _PCM_TAG and bits in (8, 16, 24, 32):
        return {8: "u1", 16: "<i2", 24: "<i3", 32: "<i4"}[bits]
    if tag == _FLOAT_TAG and bits in (32, 64):
        return {32: "<f4", 64: "<f8"}[bits]
    kind = {_PCM_TAG: "integer PCM", _FLOAT_TAG: "float"}.get(tag, f"format tag {tag:#x}")
    raise AudioError(name, f"unsupported WAV encoding ({kind}, {bits} bits); stream takes 8/16/24/32-bit integer or "
                           "32/64-bit float WAV: convert it (e.g. sox in.wav -b 16 out.wav)")


def read_wav_header(f: BinaryIO, *, name: str = "stdin") -> tuple[PcmFormat, int | None]:
    """Read a WAV header from a byte stream up to the start of its samples: ``(format, data bytes or None)``.

    ``None``: the header gives no length (0 or 0xFFFFFFFF), read to the end of the stream.

    Raises:
        AudioError: no bytes at all, bytes that are not WAV, a truncated or unsupported header.
    """
    head = _read_exactly(f, 12)
    if not head:
        raise AudioError(name, f"no data (0 bytes); {_USAGE}")
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioError(name, f"not a WAV stream (it starts with {head[:12]!r}); {_USAGE}")
    fmt = None
    while True:
        chunk = _read_exactly(f, 8)
        if len(chunk) < 8:
            what = "a data chunk" if fmt else "a fmt chunk"
            raise AudioError(name, f"truncated WAV header: the stream ended before {what}")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"data":
            if fmt is None:
                raise AudioError(name, "WAV data chunk before any fmt chunk; the header is damaged")
            return fmt, None if size in (0, 0xFFFFFFFF) else size
        body = _read_exactly(f, size + (size & 1))
        if len(body) < size:
            raise AudioError(name, f"truncated WAV header: the {cid!r} chunk declares {size} bytes")
        if cid == b"fmt ":
            if size < 16:
                raise AudioError(name, f"WAV fmt chunk of {size} bytes (16 at least); the header is damaged")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE_TAG and size >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the plain tag
            if channels < 1 or rate < 1:
                raise AudioError(name, f"WAV header with {channels} channels at {rate} Hz; the header is damaged")
            fmt = PcmFormat(_wav_dtype(tag, bits, name), channels, rate)


def pcm_blocks(f: BinaryIO, fmt: PcmFormat, *, limit: int | None = None, name: str = "stdin",
               warn=None) -> Iterator[np.ndarray]:
    """Mono float32 blocks of a PCM byte stream as its bytes arrive, until its end (or ``limit`` bytes).

    Raises:
        AudioError: no samples at all, or NaN/Inf samples (naming the time of the first one).
    """
    read = getattr(f, "read1", f.read)
    left, carry, got = limit, b"", 0
    while left is None or left > 0:
        data = read(READ_BYTES if left is None else min(READ_BYTES, left))
        if not data:
            break
        if left is not None:
            left -= len(data)
        data = carry + data
        whole = len(data) - len(data) % fmt.frame_bytes
        carry = data[whole:]
        if not whole:
            continue
        frames = fmt.decode(data[:whole])
        check_samples(name, frames, fmt.sample_rate, start=got)
        got += len(frames)
        yield frames.mean(axis=1, dtype=np.float32) if fmt.channels > 1 else frames[:, 0]
    if got == 0:
        raise AudioError(name, f"no audio samples ({len(carry)} byte(s), less than one sample frame); {_USAGE}")
    if carry and warn is not None:
        warn(f"{name}: {len(carry)} byte(s) at the end do not make a whole sample frame; left out")


def resampled(blocks: Iterable[np.ndarray], orig_sr: int, sample_rate: int) -> Iterator[np.ndarray]:
    """``blocks`` at ``orig_sr`` -> blocks at ``sample_rate`` (a soxr ``HQ`` stream, as ``audio.io.resample``)."""
    if orig_sr == sample_rate:
        yield from blocks
        return
    stream = soxr.ResampleStream(orig_sr, sample_rate, 1, dtype="float32", quality="HQ")
    for block in blocks:
        out = stream.resample_chunk(np.ascontiguousarray(block, np.float32))
        if len(out):
            yield out
    out = stream.resample_chunk(np.zeros(0, np.float32), last=True)
    if len(out):
        yield out


def mic_blocks(*, block_seconds: float, device: str | int | None = None) -> tuple[int, Iterator[np.ndarray]]:
    """``(rate, blocks)`` from the default (or named) input device until Ctrl-C, at the device's default rate.

    Needs the optional ``sounddevice`` package (``pip install audiocnn[mic]``).
    """
    try:  # an optional extra, imported only for --mic
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the package is there but PortAudio is not
        raise ConfigError(f"--mic needs the sounddevice package and PortAudio ({e}): pip install audiocnn[mic]") \
            from None

    rate = int(sd.query_devices(device, kind="input")["default_samplerate"])
    q: queue.Queue = queue.Queue()

    def callback(indata, frames, time, status):  # PortAudio's thread: hand the block over, nothing else
        q.put(indata[:, 0].copy())

    def blocks() -> Iterator[np.ndarray]:
        with sd.InputStream(samplerate=rate, channels=1, dtype="float32", device=device,
                            blocksize=max(1, int(block_seconds * rate)), callback=callback):
            while True:
                yield q.get()

    return rate, blocks()
