"""Windows: audio files read in blocks and resampled as a stream (:func:`stream_file`), and the fixed windows
cut from such a stream of blocks in bounded memory (:func:`iter_windows`), every ``hop`` samples."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soxr

from audiocnn.core.errors import ConfigError
from audiocnn.audio.io import check_length, check_samples, open_audio
from audiocnn.embed.embedders import EmbedError, Embedder

BLOCK_SECONDS = 30.0
"""Seconds of audio read from a file at a time."""


def iter_windows(blocks: Iterable[np.ndarray], *, window: int, hop: int, pad_short: bool,
                 chunk: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    """Windows of a stream of sample blocks, in bounded memory.

    Args:
        blocks: consecutive ``(n,)`` float32 pieces of one wave.
        window / hop: samples per window and between window starts.
        pad_short: a wave shorter than one window gives one zero-padded window instead of none.
        chunk: windows per yielded array at most.

    Yields:
        ``(start, windows)``: the first window's start sample and ``(k, window)`` float32 windows starting at
        ``start + i * hop``. Only windows that fit in the wave (a trailing partial window is dropped, as VGGish
        does).
    """
    if window < 1 or hop < 1:
        raise ConfigError(f"window and hop must be >= 1 sample, got {window}, {hop}")
    buf = np.zeros(0, np.float32)
    buf_start = next_start = total = produced = 0
    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, np.float32)]) if len(buf) else np.asarray(block, np.float32)
        total += len(block)
        while next_start + window <= buf_start + len(buf):
            n = min(chunk, 1 + (buf_start + len(buf) - window - next_start) // hop)
            off = next_start - buf_start
            span = buf[off:off + (n - 1) * hop + window]
            yield next_start, np.lib.stride_tricks.sliding_window_view(span, window)[::hop].copy()
            next_start += n * hop
            produced += n
        drop = min(next_start - buf_start, len(buf))
        if drop > 0:
            buf, buf_start = buf[drop:], buf_start + drop
    if produced == 0 and pad_short and total > 0:
        padded = np.zeros((1, window), np.float32)
        padded[0, :len(buf)] = buf[:window]
        yield 0, padded


def stream_file(path: Path, sample_rate: int, *, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``path`` at ``sample_rate``: read with soundfile, resampled by a soxr stream
    (identical to resampling the whole file). Raises :class:`AudioError` as ``load_audio`` does, including
    for damage found half-way through (NaN samples, fewer frames than the header declares)."""
    with open_audio(path) as f:
        frames, sr, fmt = f.frames, f.samplerate, f.format
        stream = soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ") if sr != sample_rate else None
        block = max(1, int(block_seconds * sr))
        got = 0
        while True:
            data = f.read(block, dtype="float32", always_2d=True)
            last = len(data) < block or f.tell() >= frames
            check_samples(path, data, sr, start=got)
            got += len(data)
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            out = stream.resample_chunk(np.ascontiguousarray(mono), last=last) if stream is not None else mono
            if len(out):
                yield out
            if last:
                break
    check_length(path, got, frames, sr, fmt)


def window_hop_samples(emb: Embedder, hop: float | None) -> int:
    if hop is None:
        return emb.hop
    if hop <= 0:
        raise EmbedError(f"--hop must be positive seconds, got {hop}")
    return max(1, int(round(hop * emb.sample_rate)))
