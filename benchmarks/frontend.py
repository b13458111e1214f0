"""Front-end throughput: audio-seconds per wall-second, each backend batched vs a librosa per-clip loop.

    python benchmarks/frontend.py                      # log-mel and MFCC, 64 clips x 30 s at 22050 Hz
    python benchmarks/frontend.py --clips 16 --seconds 10 --device cuda
    python benchmarks/frontend.py --markdown frontend.md   # also write the tables as markdown
    python benchmarks/frontend.py --load busy --backends torch   # while another process keeps one core busy
    python benchmarks/frontend.py --kinds logmel --json frontend.json   # log-mel only, raw numbers as JSON

Settings: n_fft 2048, hop 512, 128 mels (MFCC: 20 coefficients on that log-mel), Slaney mel scale
and norm, centre padding with zeros, float32. The baseline is librosa in a per-clip loop, the way
a tutorial pipeline computes features. Every method is timed in each of ``--rounds`` interleaved
rounds (librosa, torch, nnaudio, ... then again) and its best round is kept, so a load spike on a
shared machine hits all methods alike and the ratios compare like with like. Each timing runs in a
fresh process of its own (after one warm-up call): in one process, the thread pool NumPy's OpenBLAS
leaves spinning after librosa's products takes cores from the next method's threads (torch measured
1.6x slower right after a librosa loop than alone here). Peak memory is the highest resident set size
above the level before the timed call, sampled every millisecond (CPU), or
``torch.cuda.max_memory_allocated`` (CUDA).

Each backend's output is also compared with librosa: max abs dB difference over bins within 75 dB of
each clip's peak for log-mel (below that, float32 rounding of the power dominates), max abs
difference for MFCC.

``--load busy`` (or ``trainers``, see ``benchmarks/load.py``) runs every timing, librosa's included, while
competing processes run. Each timing process sets threads as the ``audiocnn`` command does
(:mod:`audiocnn.core.threads`: OpenMP's wait policy before torch loads, then the automatic thread count, which
leaves out cores other processes keep busy); ``--policy torch`` keeps torch's and libgomp's defaults instead (a
thread per core, idle threads spinning about 300,000 iterations), the behaviour before audiocnn chose.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from typing import Callable

from audiocnn.core.threads import prepare_environment, set_threads

POLICY = os.environ.get("AUDIOCNN_BENCH_POLICY", "audiocnn")
if POLICY == "audiocnn":  # before torch loads, as the command line
    prepare_environment()

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import LOADS, competing  # noqa: E402

from audiocnn.config import FrontendConfig  # noqa: E402
from audiocnn.features import FrontendSettings  # noqa: E402

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


def build_method(name: str, kind: str, args: argparse.Namespace, audio: np.ndarray) -> Callable[[], list]:
    """``librosa`` or a backend name -> a call computing the features of every clip."""
    sr, device = args.sample_rate, torch.device(args.device)
    if name == "librosa":
        return lambda: [librosa_features(clip, sr, kind) for clip in audio]
    cfg = FrontendConfig(kind=kind, backend=name, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, center=True,
                         pad_mode="constant", norm="slaney", mel_scale="slaney", n_mfcc=N_MFCC)
    fe = FrontendSettings.of(cfg).build(sr).to(device)
    x = torch.from_numpy(audio)

    @torch.inference_mode()
    def run() -> list:
        outs = [fe(x[i:i + args.batch_size].to(device)).cpu() for i in range(0, len(x), args.batch_size)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return outs

    return run


def time_one(name: str, kind: str, args: argparse.Namespace) -> None:
    """Child process: warm up, time one call, print ``seconds peak_mb``."""
    if POLICY == "audiocnn" and args.device == "cpu":
        set_threads()  # as the audiocnn commands do (embed, predict, train's front-end)
    audio = test_signal(args.clips, args.seconds, args.sample_rate)
    fn = build_method(name, kind, args, audio)
    fn()  # warm-up (kernels, FFT plans, caches)
    cuda = args.device.startswith("cuda") and name != "librosa"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
    print(seconds, torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else mem.peak_mb)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backends", nargs="*", default=["torch", "nnaudio", "torchaudio"])
    p.add_argument("--kinds", nargs="+", choices=["logmel", "mfcc"], default=["logmel", "mfcc"])
    p.add_argument("--markdown", default=None, help="also write the tables to this markdown file")
    p.add_argument("--load", choices=list(LOADS), default="idle",
                   help="competing processes during every timing (benchmarks/load.py; default idle)")
    p.add_argument("--policy", choices=["audiocnn", "torch"], default="audiocnn",
                   help="threads of the timing processes: audiocnn's (default) or torch's and libgomp's defaults")
    p.add_argument("--json", default=None, help="also write every timing to this JSON file")
    p.add_argument("--time-one", nargs=2, metavar=("METHOD", "KIND"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.time_one:
        return time_one(*args.time_one, args)
    sr = args.sample_rate
    audio = test_signal(args.clips, args.seconds, sr)
    total_s = args.clips * args.seconds
    header = (f"{args.clips} clips x {args.seconds:g} s at {sr} Hz, n_fft {N_FFT}, hop {HOP}, {N_MELS} mels, "
              f"batch {args.batch_size}, device {args.device}, torch {torch.__version__} ({torch.get_num_threads()} "
              f"threads), librosa {librosa.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, {dt.date.today()}, best of {args.rounds} interleaved rounds, one process per timing, "
              f"load {args.load}, thread policy {args.policy}")
    print(header)
    lines = [header, ""]
    child = [sys.executable, __file__, "--clips", str(args.clips), "--seconds", str(args.seconds), "--sample-rate",
             str(sr), "--batch-size", str(args.batch_size), "--device", args.device]
    results = {"header": header, "audio_s": total_s, "kinds": {}}
    for kind in args.kinds:
        ref = [librosa_features(clip, sr, kind) for clip in audio]
        methods, errors, diffs = ["librosa"], {}, {}
        for backend in args.backends:
            try:  # in this process: the accuracy check (untimed)
                out = torch.cat(build_method(backend, kind, args, audio)()).numpy()
            except (ImportError, ValueError, RuntimeError, OSError) as e:
                errors[backend] = f"unavailable ({type(e).__name__}: {str(e).splitlines()[0][:60]})"
                continue
            methods.append(backend)
            diffs[backend] = error_vs_librosa(kind, out, ref)
        best = {m: float("inf") for m in methods}
        peak = {m: 0.0 for m in methods}
        env = dict(os.environ, AUDIOCNN_BENCH_POLICY=args.policy)
        with competing(args.load):
            timings = [(m, subprocess.run([*child, "--time-one", m, kind], capture_output=True, text=True, check=True,
                                          env=env)) for _ in range(args.rounds) for m in methods]
        for m, proc in timings:
            seconds, mb = map(float, proc.stdout.split()[-2:])
            best[m], peak[m] = min(best[m], seconds), max(peak[m], mb)
        base = best["librosa"]
        results["kinds"][kind] = {
            "methods": {m: {"seconds": best[m], "audio_s_per_s": total_s / best[m], "vs_librosa": base / best[m],
                            "peak_mb": peak[m], "max_diff": diffs.get(m)} for m in methods},
            "unavailable": errors}
        rows = [f"| {kind} | method | audio-s / s | vs librosa | max diff vs librosa | peak extra memory (MB) |",
                "|---|---|---:|---:|---:|---:|"]
        for m in methods:
            name = "librosa (per-clip loop)" if m == "librosa" else f"audiocnn {m} (batched)"
            diff = "-" if m == "librosa" else f"{diffs[m]:.2e}" + (" dB" if kind == "logmel" else "")
            rows.append(f"| {kind} | {name} | {total_s / best[m]:.0f} | {base / best[m]:.2f}x | {diff} | {peak[m]:.0f} |")
        rows += [f"| {kind} | audiocnn {b} | {msg} | | | |" for b, msg in errors.items()]
        print("\n" + "\n".join(rows), flush=True)
        lines += rows + [""]
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
