"""VGGish embedding throughput: audiocnn's batched file pipeline vs the reference port one file at a time.

    python benchmarks/embed.py                          # 64 ESC-10 clips (5 s, 16 kHz), CPU
    python benchmarks/embed.py --files 128 --device cuda --weights vggish-10086976.pth
    python benchmarks/embed.py --files 8 --rounds 1 --json embed.json   # also write the numbers as JSON

Both sides embed the same files with the same weights, in the same run, so the ratios compare like with like:

- reference: ``torchvggish`` (the PyTorch port; test-only, ``pip install --no-deps torchvggish resampy``), one
  file at a time as its README does: ``soundfile.read`` -> ``vggish_input.waveform_to_examples`` (NumPy) ->
  ``VGG`` forward on that file's examples. Its ReLU after the embedding (not in VGGish) is removed so the
  embeddings can be compared; the cost of that ReLU is nil.
- audiocnn: ``embed_files`` (streamed decoding, the input pipeline on the device, windows of many files per
  batch, outputs written to disk), float32 with channels_last, and bf16 (bfloat16 weights, channels_last).

Embeddings are checked: float32 against the reference (max |diff| / max |reference| per file), bf16 against
our float32 (relative L2, max |diff| relative to the largest value, min cosine). Without ``--weights`` the
weights are random (He-scaled so activations keep their size), written in the port's format and loaded by
both. Files: ``$AUDIOCNN_SHARED/esc10/audio`` (default ``../shared/datasets``), else generated 5 s clips.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from audiocnn.embed import embed_files, load_embedder

ROOT = Path(__file__).resolve().parents[1]


def clip_files(n: int, tmp: Path) -> list[Path]:
    shared = Path(os.environ.get("AUDIOCNN_SHARED", ROOT.parent / "shared" / "datasets")) / "esc10" / "audio"
    files = sorted(shared.glob("*.flac"))
    if len(files) >= n:
        return files[:: len(files) // n][:n]
    rng = np.random.default_rng(0)
    t = np.arange(5 * 16000) / 16000
    out = []
    for i in range(n):
        f0, f1 = rng.uniform(100, 4000, 2)
        wave = 0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / 10)) + 0.05 * rng.standard_normal(len(t))
        out.append(tmp / f"clip{i:03d}.flac")
        sf.write(out[-1], wave.astype(np.float32), 16000)
    return out


def random_reference_weights(path: Path, seed: int = 0) -> None:
    import torchvggish.torchvggish as tv

    torch.manual_seed(seed)
    net = tv.VGG(tv.make_layers(), False)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.normal_(m.bias, std=0.01)
    torch.save(net.state_dict(), path)


def reference_model(weights: Path, device: torch.device) -> nn.Module:
    import torchvggish.torchvggish as tv

    net = tv.VGG(tv.make_layers(), False)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.embeddings[5] = nn.Identity()
    return net.to(device).eval()


@torch.no_grad()
def reference_embed(net: nn.Module, files: list[Path], device: torch.device) -> list[np.ndarray]:
    from torchvggish import vggish_input

    out = []
    for f in files:
        wave, sr = sf.read(f, dtype="float32")
        examples = vggish_input.waveform_to_examples(wave, sr).detach().to(device)
        out.append(net(examples).cpu().numpy().reshape(-1, 128))
    return out


def ours(emb, files: list[Path], out: Path, batch_size: int) -> list[np.ndarray]:
    shutil.rmtree(out, ignore_errors=True)
    summary = embed_files(emb, files, out, batch_size=batch_size, progress="never", log=None)
    assert summary["errors"] == 0, summary
    return [np.load(out / f"{r['name']}.frames.npy") for r in summary["rows"]]


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; times are summed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", default=None, help="a real vggish-10086976.pth (default: random weights)")
    p.add_argument("--json", default=None, help="also write the timings and checks to this JSON file")
    args = p.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = clip_files(args.files, tmp)
        weights = Path(args.weights) if args.weights else tmp / "vggish-10086976.pth"
        if not args.weights:
            random_reference_weights(weights)
        audio_s = sum(sf.info(f).duration for f in files)
        ref_net = reference_model(weights, device)
        fp32 = load_embedder("vggish", weights=weights, device=device, precision="fp32")
        bf16 = load_embedder("vggish", weights=weights, device=device, precision="bf16")

        # warm-up: kernels, oneDNN primitives, the bf16 cast (and its deviation check) happen here
        reference_embed(ref_net, files[:2], device)
        ours(fp32, files[:2], tmp / "warm32", args.batch_size)
        ours(bf16, files[:2], tmp / "warm16", args.batch_size)

        # rounds interleave the three paths, so a change in the machine's load hits all of them alike
        t_ref = t_32 = t_16 = 0.0
        for _ in range(args.rounds):
            dt_, ref = timed(lambda: reference_embed(ref_net, files, device))
            t_ref += dt_
            dt_, e32 = timed(lambda: ours(fp32, files, tmp / "fp32", args.batch_size))
            t_32 += dt_
            dt_, e16 = timed(lambda: ours(bf16, files, tmp / "bf16", args.batch_size))
            t_16 += dt_
        audio_s *= args.rounds

    err32 = max(float(np.abs(a - r).max() / np.abs(r).max()) for a, r in zip(e32, ref))
    a, b = np.concatenate(e32), np.concatenate(e16)
    rel_l2 = float(np.linalg.norm(b - a) / np.linalg.norm(a))
    max_rel = float(np.abs(b - a).max() / np.abs(a).max())
    cos = float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())
    n_windows = len(a)
    assert all(x.shape == r.shape for x, r in zip(e32, ref)), "window counts differ from the reference"

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    print(f"date {dt.date.today()} | {cpu}, {os.cpu_count()} cores | python {platform.python_version()}, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, torchvggish "
          f"{version('torchvggish')} | device {device} | {'real' if args.weights else 'random'} weights")
    print(f"{len(files)} files x {args.rounds} rounds, {audio_s:.0f} s of audio, {n_windows} windows per round; "
          f"batch {args.batch_size}")
    print(f"{'path':<46} {'seconds':>8} {'x realtime':>11} {'audio h / min':>14} {'vs reference':>13}")
    paths = {"reference": ("reference torchvggish, one file at a time", t_ref),
             "fp32": ("audiocnn embed, float32 (batched)", t_32), "bf16": ("audiocnn embed, bf16 (batched)", t_16)}
    for name, t in paths.values():
        print(f"{name:<46} {t:>8.2f} {audio_s / t:>10.1f}x {audio_s / t / 60:>14.2f} {t_ref / t:>12.2f}x")
    print(f"float32 vs reference: max |diff| / max |ref| per file, worst file: {err32:.2e}")
    print(f"bf16 vs float32: relative L2 {rel_l2:.2e}, max |diff| / max |fp32| {max_rel:.2e}, min cosine {cos:.5f}; "
          f"first-batch check: {bf16.deviation}")
    if args.json:
        doc = {"device": str(device), "files": len(files), "rounds": args.rounds, "audio_s": audio_s,
               "windows_per_round": n_windows, "batch_size": args.batch_size,
               "weights": "real" if args.weights else "random",
               "paths": {k: {"name": name, "seconds": t, "audio_h_per_min": audio_s / t / 60, "vs_reference": t_ref / t}
                         for k, (name, t) in paths.items()},
               "fp32_vs_reference_max_rel": err32, "bf16_vs_fp32": {"rel_l2": rel_l2, "max_rel": max_rel,
                                                                    "min_cosine": cos}}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
