"""Front-end throughput: audio-seconds per wall-second, each backend batched vs a librosa per-clip loop.

    python benchmarks/frontend.py                      # log-mel and MFCC, 64 clips x 30 s at 22050 Hz
    python benchmarks/frontend.py --clips 16 --seconds 10 --device cuda

Settings: n_fft 2048, hop 512, 128 mels (MFCC: 20 coefficients on that log-mel), Slaney mel scale
and norm, centre padding with zeros, float32. The baseline is librosa in a per-clip loop, the way
a tutorial pipeline computes features; every number is measured in the same run, so the ratios
compare like with like on the same machine. Each backend's output is also compared with librosa (max
abs dB difference over bins within 75 dB of each clip's peak; below that, float32 rounding dominates).
"""
from __future__ import annotations

import argparse
import resource
import time

import librosa
import numpy as np
import torch

from audiocnn.config import FrontendConfig
from audiocnn.features import build_frontend


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


def librosa_features(x: np.ndarray, sr: int, kind: str, n_fft: int, hop: int, n_mels: int) -> np.ndarray:
    S = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, center=True,
                                       pad_mode="constant", power=2.0, norm="slaney", htk=False)
    db = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None)
    if kind == "mfcc":
        return librosa.feature.mfcc(S=db, n_mfcc=20, dct_type=2, norm="ortho")
    return db


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (kernels, caches)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backends", nargs="*", default=["torch", "nnaudio", "torchaudio"])
    args = p.parse_args()
    sr, n_fft, hop, n_mels = args.sample_rate, 2048, 512, 128
    audio = test_signal(args.clips, args.seconds, sr)
    total_s = args.clips * args.seconds
    device = torch.device(args.device)
    print(f"{args.clips} clips x {args.seconds:g} s at {sr} Hz, n_fft {n_fft}, hop {hop}, {n_mels} mels, "
          f"device {device}, torch threads {torch.get_num_threads()}")
    for kind in ("logmel", "mfcc"):
        ref = [librosa_features(x, sr, kind, n_fft, hop, n_mels) for x in audio]
        base = timed(lambda: [librosa_features(x, sr, kind, n_fft, hop, n_mels) for x in audio], args.repeats)
        print(f"\n{kind}: {'backend':<22} {'audio-s / s':>12} {'vs librosa':>11} {'max |dB| diff':>14} {'peak RSS MB':>12}")
        print(f"{kind}: {'librosa (per-clip loop)':<22} {total_s / base:>12.0f} {1.0:>10.2f}x {'-':>14} "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:>12.0f}")
        for backend in args.backends:
            cfg = FrontendConfig(kind=kind, backend=backend, n_fft=n_fft, hop_length=hop, n_mels=n_mels,
                                 center=True, pad_mode="constant", norm="slaney", mel_scale="slaney", n_mfcc=20)
            try:
                fe = build_frontend(cfg, sr).to(device)
            except (ImportError, ValueError, RuntimeError) as e:
                print(f"{kind}: {backend:<22} unavailable ({type(e).__name__}: {str(e).splitlines()[0][:60]})")
                continue
            x = torch.from_numpy(audio)

            @torch.no_grad()
            def run(fe=fe, x=x):
                outs = [fe(x[i:i + args.batch_size].to(device)) for i in range(0, len(x), args.batch_size)]
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return outs

            secs = timed(run, args.repeats)
            out = torch.cat(run()).cpu().numpy()
            errs = []
            for got, want in zip(out, ref):
                if kind == "logmel":
                    mask = want >= want.max() - 75
                    errs.append(np.abs(got - want)[mask].max())
                else:
                    errs.append(np.abs(got - want).max())
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{kind}: {backend:<22} {total_s / secs:>12.0f} {base / secs:>10.2f}x {max(errs):>14.2e} {peak:>12.0f}")


if __name__ == "__main__":
    main()
