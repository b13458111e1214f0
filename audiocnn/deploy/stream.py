"""``audiocnn stream RUN [INPUT | -] [--mic]``: labels every hop of a live or piped sound, with latency figures.

A :class:`Streamer` takes samples at the run's rate as they come and emits one output per hop from one of two
engines:

* :class:`WindowEngine` (any audio run; ``--recompute`` for the causal ones): a :class:`SampleRing` holds the
  last window (``data.duration``) of samples and the whole model runs on it every hop. Its windows are exactly
  predict's (``sliding_windows(wave, window, hop)``), so its outputs are predict's per-window outputs.
* :class:`CausalEngine` (``tcn``, ``wavenet``): each hop computes only its new front-end frames and runs each
  causal conv on them with a cache, so a hop costs its new frames whatever the window.

Hop schedule (both engines): outputs at ``t = window + i * hop`` samples (``i = 0, 1, ...``), each labelling the
window that ends at ``t``. Samples before the first output are processed in hops too (the causal engine's state
warms up), without output. At the end of the input, samples left after the last output are zero-padded to the
end of one more window, as ``sliding_windows`` pads its last one: an input gets as many outputs as predict has
windows for it (one for an input shorter than a window).

Streaming contract of the causal engine (samples counted from the start of the stream, at ``data.sample_rate``;
``P = n_fft // 2`` with ``frontend.center``, else 0; ``H = hop_length``):

1. Front-end (:class:`FrameStream`). The stream is padded on the left as ``center=True`` pads a clip (``P``
   samples, by ``pad_mode``; ``circular`` needs the end, and is refused). Frame ``j`` spans samples
   ``[j*H - P, j*H - P + n_fft)`` (centred on ``j*H``) and is computed once its last sample has arrived: after
   ``n`` samples the frames computed are the first ``(n + P - n_fft) // H + 1`` frames of ``frontend(stream)``,
   the same numbers (the frames a centred front-end adds past the end need its right padding, and are not
   computed). Only the samples later frames need are kept (fewer than ``n_fft``). ``frontend.top_db`` clips a
   clip at its own maximum minus ``top_db``, a maximum that includes future frames; here each frame is clipped
   at the maximum over itself and the ``F - 1`` frames before it (``F`` below): the only departure from
   ``frontend(stream)``. A ``waveform`` front-end's frames are the samples.
2. Normaliser: the run's fitted per-frequency mean and std, frame by frame (it is per-frame affine).
3. Network (:class:`CausalNetStream`): each causal conv keeps its last ``(kernel_size - 1) * dilation`` inputs
   (zeros at the start, as a full forward's left padding). Everything else in ``tcn`` and ``wavenet`` blocks
   works frame by frame in eval mode (1x1 convs, activations, gates, residual and skip sums; dropout is the
   identity; the blocks hold no norm layers): the features of every frame equal ``network.forward_features``
   over all frames since the start.
4. Head (:class:`WindowPool`): the run's head (avg pooling as a running sum, max and avgmax over the ring)
   over the last ``F = frontend.num_frames(window)`` feature frames (fewer until ``F`` exist): the frames a
   window model sees, for the window ending ``P`` samples before the hop's end (a centred frame's look-ahead),
   on the stream's frame grid (every ``H`` samples from its start: the window's own grid when the hop is a
   multiple of ``H``). So the outputs are not the window model's: its convs see zeros before the window where
   these see the sound before it (their cache; training saw the zeros), and its edge frames and ``top_db`` see
   the window's padding and maximum. ``benchmarks/stream.py`` reports how often the two give the same top label.

Compute per hop (latency) is the time from the hop's last sample to its output: front-end, network and head
(reading and resampling the input are not counted); the real-time factor is all compute over the audio's length.

Example:
    >>> streamer, labels = open_streamer("runs/digits_tcn/<run>", hop=0.1)
    >>> for block in blocks:                      # (n,) float32 at the run's rate, any sizes
    ...     for hop in streamer.push(block):
    ...         print(hop.time, labels[hop.probs.argmax()])
    >>> last = streamer.finish()                  # the zero-padded last window, if samples are left
    >>> streamer.summary()                        # {"hops", "mean_ms", "p50_ms", "p99_ms", "rtf", ...}
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiocnn.core.errors import ConfigError, ModelError
from audiocnn.deploy.sources import mic_blocks, pcm_blocks, raw_format, read_wav_header, resampled
from audiocnn.embed.windows import stream_file
from audiocnn.evaluation.predict import describe_outputs
from audiocnn.features import FrequencyNorm, Frontend
from audiocnn.models.temporal import (CausalConv1d, CausalConvNet, GatedResidualLayer, TemporalBlock, WaveNetOut,
                                      WaveNetStack)
from audiocnn.modalities import Classifier
from audiocnn.runs import load_run
from audiocnn.tasks import get_task

__all__ = ["CausalEngine", "CausalNetStream", "FrameStream", "Hop", "SampleRing", "Streamer", "WindowEngine",
           "WindowPool", "hop_samples", "open_streamer", "run_stream"]

DEFAULT_HOP = 0.1
"""Seconds between outputs unless ``--hop`` says otherwise."""

_PER_FRAME = (nn.Sequential, nn.ModuleList, nn.Identity, nn.Dropout, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.ELU,
              nn.LeakyReLU, nn.Tanh, nn.Sigmoid, TemporalBlock, GatedResidualLayer, WaveNetStack, WaveNetOut)
"""Layers whose eval-mode output at a frame depends on that frame alone (the blocks: apart from their causal
convs, which :class:`CausalNetStream` replaces)."""


def hop_samples(hop: float, *, sample_rate: int, window: int) -> int:
    """``--hop`` seconds as samples: at least one sample, at most one window (a longer hop would skip sound)."""
    if not hop > 0 or not math.isfinite(hop):
        raise ConfigError(f"--hop {hop}: give a positive number of seconds")
    n = int(round(hop * sample_rate))
    if n < 1:
        raise ConfigError(f"--hop {hop}: less than one sample at {sample_rate} Hz; give at least {1 / sample_rate:.6f}")
    if n > window:
        raise ConfigError(f"--hop {hop}: longer than the run's window ({window / sample_rate:g} s, data.duration), "
                          f"so windows would skip sound; give at most {window / sample_rate:g}")
    return n


class SampleRing:
    """The last ``size`` samples of a stream (zeros before any arrive), in a fixed array.

    ``write((n,))`` any number of samples; ``window() -> (size,)`` float32, oldest first.
    """

    def __init__(self, size: int):
        self.buf = np.zeros(size, np.float32)
        self.pos = 0

    def write(self, x: np.ndarray) -> None:
        size, n = len(self.buf), len(x)
        if n >= size:
            self.buf[:], self.pos = x[-size:], 0
            return
        first = min(n, size - self.pos)
        self.buf[self.pos:self.pos + first] = x[:first]
        self.buf[:n - first] = x[first:]
        self.pos = (self.pos + n) % size

    def window(self) -> np.ndarray:
        return np.concatenate([self.buf[self.pos:], self.buf[:self.pos]])


class FrameStream:
    """Front-end and normaliser, frame by frame (point 1 and 2 of the module docstring).

    ``push((n,) samples) -> (n_features, k)``: the ``k >= 0`` frames completed by these samples, normalised.

    Args:
        frontend: the run's front-end (its settings are used; a copy without centring computes the frames).
        norm: the run's fitted normaliser.
        window_frames: ``F``, the frames of one window (the span of the causal ``top_db`` maximum).
    """

    def __init__(self, frontend: Frontend, norm: nn.Module, *, window_frames: int):
        s = frontend.settings
        if s.kind == "cqt":
            raise ConfigError("frontend.kind=cqt: nnAudio's CQT kernels are not framed like an STFT, so frames are "
                              "not computed one by one; use --recompute")
        if s.kind == "logmel" and s.log == "pcen":
            raise ConfigError("frontend.log=pcen smooths each frame with every frame before it, from the clip's start; "
                              "frames pushed one by one would each restart it: use --recompute")
        if s.center and s.pad_mode == "circular":
            raise ConfigError("frontend.pad_mode=circular pads a clip's start with its end; a stream has no end yet: "
                              "use --recompute")
        if not isinstance(norm, FrequencyNorm):
            raise ConfigError("frontend.normalize=per_utterance standardises each frame by the statistics of the whole "
                              "window, which change with every hop: use --recompute")
        self.norm = norm
        self.device = norm.mean.device
        self.waveform = s.kind == "waveform"
        self.n_fft, self.hop_length = (1, 1) if self.waveform else (s.n_fft, s.hop_length)
        self.pad = s.n_fft // 2 if s.center and not self.waveform else 0
        self.pad_mode = s.pad_mode
        uses_db = s.kind == "mfcc" or (s.kind == "logmel" and s.log == "db")
        self.top_db = s.top_db if uses_db and not self.waveform else None
        self.window_frames = window_frames
        inner = dataclasses.replace(s, center=False, top_db=None)
        self.dct = None
        if s.kind == "mfcc" and self.top_db is not None:  # clip the dB mel frames, then the DCT
            inner = dataclasses.replace(inner, kind="logmel", log="db")
            self.dct = frontend.dct
        self.inner = None if self.waveform else inner.build(frontend.sample_rate).to(self.device)
        # padded-stream samples from the next frame's first on; left padding that needs samples waits for them
        self.tail = torch.zeros(self.pad if s.pad_mode == "constant" else 0, device=self.device)
        self.started = self.pad == 0 or s.pad_mode == "constant"
        self.peaks = torch.zeros(0, device=self.device)  # maxima of the last F - 1 frames (top_db)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        if self.waveform:
            return self.norm(x.reshape(1, 1, -1))[0]
        self.tail = torch.cat([self.tail, x])
        if not self.started:
            if len(self.tail) <= self.pad:
                return self._none()
            self.tail = F.pad(self.tail[None, None], (self.pad, 0), mode=self.pad_mode)[0, 0]
            self.started = True
        if len(self.tail) < self.n_fft:
            return self._none()
        k = (len(self.tail) - self.n_fft) // self.hop_length + 1
        feats = self.inner(self.tail[None, :(k - 1) * self.hop_length + self.n_fft])
        self.tail = self.tail[k * self.hop_length:]
        if self.top_db is not None:
            feats = self._clip(feats)
        if self.dct is not None:
            feats = torch.matmul(self.dct, feats)
        return self.norm(feats)[0]

    def _none(self) -> torch.Tensor:
        return torch.zeros(self.norm.n_features, 0, device=self.device)

    def _clip(self, feats: torch.Tensor) -> torch.Tensor:
        """Clip each frame at ``top_db`` below the maximum of itself and the ``F - 1`` frames before it."""
        f = self.window_frames
        history = torch.cat([self.peaks, feats[0].amax(0)])
        k = feats.shape[-1]
        padded = torch.cat([history.new_full((f - 1 + k - len(history),), -math.inf), history])
        ref = padded.unfold(0, f, 1).amax(1)  # (k,): frame i's maximum over frames i - f + 1 ... i
        self.peaks = history[-(f - 1):] if f > 1 else history[:0]
        return torch.maximum(feats, ref - self.top_db)


class _CachedConv(nn.Module):
    """A causal conv that prepends its cache (its last ``left_pad`` inputs) instead of zeros.

    ``(batch, in_chans, k) -> (batch, out_chans, k)``; weight normalisation is folded into one fixed weight.
    """

    def __init__(self, conv: CausalConv1d):
        super().__init__()
        if conv.stride != (1,) or conv.groups != 1 or conv.padding != (0,):
            raise ModelError(f"causal conv with stride {conv.stride}, groups {conv.groups}, padding {conv.padding}: "
                             "only stride 1, one group, no padding streams; use --recompute")
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.dilation = conv.dilation[0]
        self.left_pad = conv.left_pad
        self.cache: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left_pad:
            if self.cache is None:
                self.cache = x.new_zeros(x.shape[0], x.shape[1], self.left_pad)
            x = torch.cat([self.cache, x], dim=-1)
            self.cache = x[..., -self.left_pad:]
        return F.conv1d(x, self.weight, self.bias, dilation=self.dilation)


class CausalNetStream:
    """``network.forward_features``, frame by frame (point 3 of the module docstring).

    ``step((batch, in_chans, k)) -> (batch, out_chans, k)``; consecutive calls continue one stream.

    Raises:
        ModelError: the network is not a :class:`CausalConvNet`, or holds a layer that may mix frames.
    """

    def __init__(self, network: nn.Module):
        if not isinstance(network, CausalConvNet):
            raise ModelError(f"{type(network).__name__} is not a causal network (tcn, wavenet): it is streamed by "
                             "re-running the window (--recompute)")
        self.net = copy.deepcopy(network).eval()
        for name, module in list(self.net.named_modules()):
            parent, _, attr = name.rpartition(".")
            if isinstance(module, CausalConv1d):
                setattr(self.net.get_submodule(parent), attr, _CachedConv(module))
            elif isinstance(module, nn.Dropout):  # the identity in eval mode; a call per layer saved
                setattr(self.net.get_submodule(parent), attr, nn.Identity())
        for part in (self.net.stem, self.net.stages):
            for name, module in part.named_modules():
                pointwise = type(module) is nn.Conv1d and module.kernel_size == (1,) and module.stride == (1,) \
                    and module.padding == (0,)
                if not (pointwise or isinstance(module, (_CachedConv, *_PER_FRAME))):
                    raise ModelError(f"network layer {name} ({type(module).__name__}) may mix frames; it cannot run "
                                     "incrementally: use --recompute")

    @torch.no_grad()
    def step(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


class WindowPool:
    """The network's head over the last ``frames`` feature frames (point 4 of the module docstring).

    ``push((channels, k))`` new feature frames; ``logits() -> (1, num_classes)``. Average pooling keeps a
    float64 running sum over the ring (a frame leaving the ring is subtracted); other pools read the ring.
    """

    def __init__(self, network: nn.Module, *, frames: int):
        head = network.head
        if head.global_pool == "flatten" or head.adaptive is not None:
            raise ModelError("a flatten head needs a fixed number of frames; it is streamed by re-running the window "
                             "(--recompute)")
        self.network, self.head = network, head
        device = next(network.parameters()).device
        self.ring = torch.zeros(network.out_chans, frames, device=device)
        self.sum = torch.zeros(network.out_chans, dtype=torch.float64, device=device)
        self.pos = self.count = 0

    def push(self, feats: torch.Tensor) -> None:
        size = self.ring.shape[1]
        feats = feats[:, -size:]
        k = feats.shape[1]
        if k == 0:
            return
        idx = (self.pos + torch.arange(k, device=feats.device)) % size
        if self.head.global_pool == "avg":  # slots not filled yet hold zeros
            self.sum += feats.sum(1, dtype=torch.float64) - self.ring[:, idx].sum(1, dtype=torch.float64)
        self.ring[:, idx] = feats
        self.pos, self.count = (self.pos + k) % size, min(size, self.count + k)

    def logits(self) -> torch.Tensor:
        if self.count == 0:
            raise ModelError("no feature frame yet: the window is shorter than one front-end frame")
        if self.head.global_pool == "avg":
            pooled = (self.sum / self.count).float()[None]
            return self.head.fc(self.head.drop(self.head.hidden(pooled)))
        return self.network.forward_head(self.ring[None, :, :self.count])  # the pools ignore the frames' order


class WindowEngine:
    """The whole model on the last window of samples every hop (what predict computes per window)."""

    name = "window"

    def __init__(self, model: Classifier, *, window: int):
        self.model = model
        self.ring = SampleRing(window)
        self.device = next(model.parameters()).device

    def step(self, samples: np.ndarray) -> None:
        self.ring.write(samples)

    def logits(self) -> torch.Tensor:
        return self.model(torch.from_numpy(self.ring.window())[None].to(self.device))


class CausalEngine:
    """New frames only, through cached causal convs, pooled over the window (the module docstring's contract)."""

    name = "incremental"

    def __init__(self, model: Classifier, *, window: int):
        if getattr(model, "deltas", None) is not None:
            raise ConfigError("frontend.deltas: the edge frames' deltas change as the window moves: use --recompute")
        frames = model.frontend.num_frames(window)
        self.frames = FrameStream(model.frontend, model.norm, window_frames=frames)
        self.net = CausalNetStream(model.network)
        self.pool = WindowPool(model.network, frames=frames)
        self.device = next(model.parameters()).device

    def step(self, samples: np.ndarray) -> None:
        feats = self.frames.push(torch.from_numpy(samples).to(self.device))
        if feats.shape[-1]:
            self.pool.push(self.net.step(feats[None])[0])

    def logits(self) -> torch.Tensor:
        return self.pool.logits()


@dataclass
class Hop:
    """One output: ``time`` (end of its window, seconds since the stream's start), the task's outputs
    (probabilities) and the compute it took (seconds)."""

    time: float
    probs: np.ndarray
    compute_s: float


class Streamer:
    """The hop schedule of the module docstring over an engine.

    Args:
        engine: :class:`WindowEngine` or :class:`CausalEngine`.
        task: the run's task name (its activation turns logits into ``Hop.probs``).
        sample_rate / window / hop: the run's rate, samples per window, samples per hop.
    """

    def __init__(self, engine: WindowEngine | CausalEngine, task: str, *, sample_rate: int, window: int, hop: int):
        self.engine, self.task = engine, task
        self.sample_rate, self.window, self.hop = sample_rate, window, hop
        self.received = self.padded = 0
        self.compute_s = 0.0
        self.latencies: list[float] = []
        self._pending: list[np.ndarray] = []
        self._next = window - ((window - 1) // hop) * hop  # the first hop boundary: window - i * hop > 0
        self._emitted = 0  # the sample the last output's window ended at

    @torch.inference_mode()
    def push(self, samples: np.ndarray) -> list[Hop]:
        """Take ``(n,)`` float32 samples; the outputs of the hops they complete."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        out = []
        while len(samples):
            n = min(len(samples), self._next - self.received)
            self._pending.append(samples[:n])
            samples, self.received = samples[n:], self.received + n
            if self.received == self._next:
                out += self._boundary()
        return out

    def finish(self) -> list[Hop]:
        """End of input: zero-pad the samples after the last output to the end of one more window."""
        if self.received == 0 or self.received == self._emitted:
            return []
        target = max(self.window, self._emitted + self.hop)
        self.padded = target - self.received
        return self.push(np.zeros(self.padded, np.float32))

    def _boundary(self) -> list[Hop]:
        t0 = time.perf_counter()
        self.engine.step(np.concatenate(self._pending))
        self._pending = []
        hops = []
        if self.received >= self.window:
            probs = get_task(self.task).outputs(self.engine.logits()).reshape(-1).cpu().numpy()
            spent = time.perf_counter() - t0
            self.latencies.append(spent)
            hops.append(Hop(self.received / self.sample_rate, probs, spent))
            self._emitted = self.received
        self.compute_s += time.perf_counter() - t0
        self._next += self.hop
        return hops

    def summary(self) -> dict:
        """Outputs, audio seconds (zero padding left out), compute per hop (mean, p50, p99 ms), real-time factor."""
        audio_s = (self.received - self.padded) / self.sample_rate
        ms = np.asarray(self.latencies) * 1e3
        stats = {"engine": self.engine.name, "hops": len(ms), "hop_s": self.hop / self.sample_rate, "audio_s": audio_s}
        if len(ms):
            stats.update(mean_ms=float(ms.mean()), p50_ms=float(np.percentile(ms, 50)),
                         p99_ms=float(np.percentile(ms, 99)))
        stats["rtf"] = self.compute_s / audio_s if audio_s > 0 else float("nan")
        return stats


def _is_causal(model: Classifier) -> bool:
    return isinstance(model.network, CausalConvNet)


def open_streamer(run_dir: str | Path, *, hop: float = DEFAULT_HOP, recompute: bool = False,
                  checkpoint: str = "best", device: str | None = None) -> tuple[Streamer, list[str]]:
    """A :class:`Streamer` for a run and its label names: incremental for tcn/wavenet unless ``recompute``.

    Raises:
        ConfigError: an image run, or a bad ``hop``. CheckpointError: not a run folder.
    """
    model, cfg, labels, task = load_run(run_dir, checkpoint=checkpoint, device=device)
    if model.modality != "audio":
        raise ConfigError(f"{run_dir} is a {model.modality} run; stream takes audio runs")
    sr = cfg.data.sample_rate
    window = int(round(cfg.data.duration * sr))
    step = hop_samples(hop, sample_rate=sr, window=window)
    make = CausalEngine if _is_causal(model) and not recompute else WindowEngine
    with torch.inference_mode():  # one-off costs of a process's first forward pass: not the stream's latency
        warm = make(model, window=window)
        warm.step(np.zeros(window, np.float32))
        warm.logits()
    return Streamer(make(model, window=window), task, sample_rate=sr, window=window, hop=step), labels


def _source(source: str | None, *, mic: bool, raw: bool, raw_rate: int | None, raw_dtype: str | None,
            sample_rate: int, hop_s: float, warn: Callable[[str], None]) -> Iterable[np.ndarray]:
    """Blocks at ``sample_rate`` from a file, ``-`` (WAV, or raw PCM with ``raw``) or the microphone."""
    if mic == (source is not None):
        raise ConfigError("give one input: an audio file, - for standard input, or --mic")
    if not raw and (raw_rate is not None or raw_dtype is not None):
        raise ConfigError("--sample-rate and --dtype describe raw PCM: add --raw (a WAV header gives its own)")
    if raw and source != "-":
        raise ConfigError("--raw reads standard input: give - as INPUT")
    if mic:
        rate, blocks = mic_blocks(block_seconds=hop_s)
        return resampled(blocks, rate, sample_rate)
    if source != "-":
        return stream_file(Path(source), sample_rate)
    if sys.stdin is None or sys.stdin.isatty():
        raise ConfigError("INPUT - reads standard input, which is a terminal; pipe audio into it "
                          "(cat clip.wav | audiocnn stream RUN -)")
    f = sys.stdin.buffer
    if raw:
        fmt, limit = raw_format(raw_dtype or "s16le", raw_rate or sample_rate), None
    else:
        fmt, limit = read_wav_header(f)
    return resampled(pcm_blocks(f, fmt, limit=limit, warn=warn), fmt.sample_rate, sample_rate)


def _line(hop: Hop, labels: list[str], task: str, top_k: int, as_json: bool) -> str:
    entry = describe_outputs({"time": round(hop.time, 4)}, hop.probs, labels, task, top_k)
    if as_json:
        if "top" in entry:
            entry["top"] = [[label, round(p, 6)] for label, p in entry["top"]]
        return json.dumps(entry)
    if "top" in entry:
        return f"{hop.time:9.2f} s  " + " | ".join(f"{label} {100 * p:.1f}%" for label, p in entry["top"])
    return f"{hop.time:9.2f} s  " + " | ".join(f"{k} {v:.4f}" for k, v in entry["values"].items())


STREAM_THREADS = 1
"""torch CPU threads ``run_stream`` uses unless told otherwise (see its docstring for the measurement)."""


def run_stream(run_dir: str | Path, source: str | None, *, mic: bool = False, raw: bool = False,
               sample_rate: int | None = None, dtype: str | None = None, hop: float = DEFAULT_HOP, top_k: int = 3,
               as_json: bool = False, recompute: bool = False, checkpoint: str = "best", device: str | None = None,
               threads: int | None = STREAM_THREADS, out: TextIO | None = None, err: TextIO | None = None) -> dict:
    """Stream ``source`` through a run: a line per hop on ``out`` (JSON lines with ``as_json``:
    ``{"time": t_end_s, "top": [[label, p], ...]}``), and at the end the latency summary on ``err``.

    ``threads``: torch's CPU threads for the stream (``None`` leaves torch's setting). A hop is a few small
    operations, where a second thread mostly waits for a core: ``benchmarks/stream.py`` measured digits_tcn at
    2.6 ms a hop with 1 thread and 191 ms with 2 on a loaded 2-core machine, and 1.6 against 2.0 ms alone, hence
    the default 1.

    Returns:
        :meth:`Streamer.summary`. Ctrl-C ends the stream (the microphone's way to stop) with its summary.
    """
    out, err = out or sys.stdout, err or sys.stderr
    if threads is not None:
        torch.set_num_threads(threads)
    streamer, labels = open_streamer(run_dir, hop=hop, recompute=recompute, checkpoint=checkpoint, device=device)
    blocks = _source(source, mic=mic, raw=raw, raw_rate=sample_rate, raw_dtype=dtype,
                     sample_rate=streamer.sample_rate, hop_s=streamer.hop / streamer.sample_rate,
                     warn=lambda m: print(f"warning: {m}", file=err))

    def emit(hops: list[Hop]) -> None:
        for h in hops:
            print(_line(h, labels, streamer.task, top_k, as_json), file=out, flush=True)

    try:
        for block in blocks:
            emit(streamer.push(block))
    except KeyboardInterrupt:
        pass
    emit(streamer.finish())
    s = streamer.summary()
    if s["hops"]:
        print(f"stream: {s['hops']} hops of {s['hop_s']:g} s over {s['audio_s']:.2f} s of audio ({s['engine']}) | "
              f"compute per hop: mean {s['mean_ms']:.2f} ms, p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms | "
              f"real-time factor {s['rtf']:.4f}", file=err)
    else:
        print("stream: stopped before any sound arrived", file=err)
    return s
