"""Front-end throughput: audio-seconds per wall-second, each backend batched vs a librosa per-clip loop.

    python benchmarks/frontend.py                      # log-mel and MFCC, 64 clips x 30 s at 22050 Hz
    python benchmarks/frontend.py --clips 16 --seconds 10 --device cuda
    python benchmarks/frontend.py --markdown frontend.md   # also write the tables as markdown

Settings: n_fft 2048, hop 512, 128 mels (MFCC: 20 coefficients on that log-mel), Slaney mel scale
and norm, centre padding with zeros, float32. The baseline is librosa in a per-clip loop, the way
a tutorial pipeline computes features. Every method is timed in each of ``--rounds`` interleaved
rounds (librosa, torch, nnaudio, ... then again) and its best round is kept, so a load spike on a
shared machine hits all methods alike and the ratios compare like with like. Peak memory is the
highest resident set size above the level before the call, sampled every millisecond (CPU), or
``torch.cuda.max_memory_allocated`` (CUDA).

Each backend's output is also compared with librosa: max abs dB difference over bins within 75 dB of
each clip's peak for log-mel (below that, float32 rounding of the power dominates), max abs
difference for MFCC.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import threading
import time
from typing import Callable

import librosa
import numpy as np
import torch

from audiocnn.config import FrontendConfig
from audiocnn.features import build_frontend

N_FFT, HOP, N_MELS, N_MFCC = 2048, 512, 128, 20


def test_signal(n_clips: int, seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Chirps, tones and noise bursts: realistic spectral spread, reproducible."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    clips = []
    for _ in range(n_clips):
        f0, f1 = rng.uniform(100, 4000, 2)
        chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
        noise = rng.standard_normal(len(t)) * (rng.uniform(size=len(t)) < 0.1)
        clips.append(0.3 * chirp + 0.05 * noise)
    return np.stack(clips).astype(np.float32)


def librosa_features(x: np.ndarray, sr: int, kind: str) -> np.ndarray:
    S = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, center=True,
                                       pad_mode="constant", power=2.0, norm="slaney", htk=False)
    db = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None)
    if kind == "mfcc":
        return librosa.feature.mfcc(S=db, n_mfcc=N_MFCC, dct_type=2, norm="ortho")
    return db


class PeakRSS:
    """Highest resident set size above the starting level while the block runs (Linux /proc), in MB."""

    def __init__(self) -> None:
        self.peak_mb = float("nan")

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakRSS":
        self._start = self._peak = self._rss()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.001):
                self._peak = max(self._peak, self._rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())
        self.peak_mb = (self._peak - self._start) / 2 ** 20


def error_vs_librosa(kind: str, out: np.ndarray, ref: list[np.ndarray]) -> float:
    errs = []
    for got, want in zip(out, ref):
        if kind == "logmel":
            mask = want >= want.max() - 75
            errs.append(np.abs(got - want)[mask].max())
        else:
            errs.append(np.abs(got - want).max())
    return float(max(errs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backends", nargs="*", default=["torch", "nnaudio", "torchaudio"])
    p.add_argument("--markdown", default=None, help="also write the tables to this markdown file")
    args = p.parse_args()
    sr = args.sample_rate
    audio = test_signal(args.clips, args.seconds, sr)
    total_s = args.clips * args.seconds
    device = torch.device(args.device)
    header = (f"{args.clips} clips x {args.seconds:g} s at {sr} Hz, n_fft {N_FFT}, hop {HOP}, {N_MELS} mels, "
              f"batch {args.batch_size}, device {device}, torch {torch.__version__} ({torch.get_num_threads()} "
              f"threads), librosa {librosa.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, {dt.date.today()}, best of {args.rounds} interleaved rounds")
    print(header)
    lines = [header, ""]
    x = torch.from_numpy(audio)
    for kind in ("logmel", "mfcc"):
        ref = [librosa_features(clip, sr, kind) for clip in audio]
        methods: dict[str, Callable[[], object]] = {
            "librosa (per-clip loop)": lambda kind=kind: [librosa_features(clip, sr, kind) for clip in audio]}
        errors: dict[str, str] = {}
        for backend in args.backends:
            cfg = FrontendConfig(kind=kind, backend=backend, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                                 center=True, pad_mode="constant", norm="slaney", mel_scale="slaney", n_mfcc=N_MFCC)
            try:
                fe = build_frontend(cfg, sr).to(device)
            except (ImportError, ValueError, RuntimeError, OSError) as e:
                errors[backend] = f"unavailable ({type(e).__name__}: {str(e).splitlines()[0][:60]})"
                continue

            @torch.inference_mode()
            def run(fe=fe):
                outs = [fe(x[i:i + args.batch_size].to(device)).cpu() for i in range(0, len(x), args.batch_size)]
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return outs

            methods[f"audiocnn {backend} (batched)"] = run
        best = {name: float("inf") for name in methods}
        peak = {name: 0.0 for name in methods}
        outputs = {}
        for name, fn in methods.items():  # warm-up (kernels, plans, caches); keep the output for the check
            outputs[name] = fn()
        for _ in range(args.rounds):
            for name, fn in methods.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    fn()
                    best[name] = min(best[name], time.perf_counter() - t0)
                peak[name] = max(peak[name], mem.peak_mb if device.type != "cuda" or name.startswith("librosa")
                                 else torch.cuda.max_memory_allocated() / 2 ** 20)
        base = best["librosa (per-clip loop)"]
        rows = [f"| {kind} | method | audio-s / s | vs librosa | max diff vs librosa | peak extra memory (MB) |",
                "|---|---|---:|---:|---:|---:|"]
        for name in methods:
            diff = "-" if name.startswith("librosa") else \
                f"{error_vs_librosa(kind, torch.cat(outputs[name]).numpy(), ref):.2e}" + (" dB" if kind == "logmel" else "")
            rows.append(f"| {kind} | {name} | {total_s / best[name]:.0f} | {base / best[name]:.2f}x | {diff} | "
                        f"{peak[name]:.0f} |")
        rows += [f"| {kind} | audiocnn {b} | {msg} | | | |" for b, msg in errors.items()]
        print("\n" + "\n".join(rows))
        lines += rows + [""]
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines))


if __name__ == "__main__":
    main()
