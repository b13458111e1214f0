"""Streaming compute per hop: digits_tcn run incrementally vs re-running its whole window every hop (same run).

    AUDIOCNN_DATA=/path/to/datasets python benchmarks/stream.py                 # trains both recipes briefly
    python benchmarks/stream.py --run runs/digits_tcn/<run> --cnn-run runs/digits/<run>

FSDD recordings (sorted by name, ``--seconds`` of them) are concatenated into one 8 kHz stream and fed to
``audiocnn.deploy.stream`` in 100 ms blocks, with 100 ms hops, once with 2 threads and once with 1
(``torch.set_num_threads``). Rows:

- ``digits_tcn incremental``: the causal engine (new frames only, cached causal convs, running pooled sum);
- ``digits_tcn recompute``: the baseline, the whole 1 s window through the same run's model every hop
  (what ``predict`` computes per window; ``audiocnn stream --recompute``);
- ``digits cnn (window)``: a window model for reference (``recipes/digits.yaml``, cnn_small), re-run every hop.

Compute per hop is front-end + network + head for one hop (the stream's latency beyond the audio itself);
the real-time factor is all compute over the audio's duration. Also printed: the baseline / incremental
ratio of mean compute per hop, and how often the two digits_tcn engines give the same top label (they
differ by design at the window's edges: see the streaming contract in ``audiocnn/deploy/stream.py``).
Target from issue 14: digits_tcn <= 20 ms of compute per 100 ms hop on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from audiocnn.audio import load_audio
from audiocnn.config import load_config
from audiocnn.deploy.stream import open_streamer
from audiocnn.pipelines import train

ROOT = Path(__file__).resolve().parents[1]
HOP = 0.1


def trained(recipe: str, epochs: int, out: Path) -> Path:
    cfg = load_config(ROOT / "recipes" / recipe, [f"trainer.epochs={epochs}", f"trainer.output_dir={out}",
                                                   "trainer.report=false", "trainer.progress=never"])
    with contextlib.redirect_stdout(sys.stderr):  # the training log; stdout is the table
        return Path(train(cfg))


def fsdd_stream(seconds: float, sample_rate: int) -> np.ndarray:
    root = Path(os.environ.get("AUDIOCNN_DATA", "data")) / "fsdd" / "recordings"
    files = sorted(root.glob("*.wav"))
    if not files:
        raise SystemExit(f"no FSDD recordings in {root}; set AUDIOCNN_DATA to the folder holding fsdd/")
    waves, total = [], 0
    for f in files[::7]:  # every 7th file: several speakers and digits early on
        waves.append(load_audio(f, sample_rate))
        total += len(waves[-1])
        if total >= seconds * sample_rate:
            break
    return np.concatenate(waves)


def run(run_dir: Path, wave: np.ndarray, *, recompute: bool) -> tuple[dict, list[int]]:
    streamer, _ = open_streamer(run_dir, hop=HOP, recompute=recompute, device="cpu")
    block = int(HOP * streamer.sample_rate)
    hops = []
    for i in range(0, len(wave), block):
        hops += streamer.push(wave[i:i + block])
    hops += streamer.finish()
    return streamer.summary(), [int(h.probs.argmax()) for h in hops]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="a digits_tcn run (default: train one for --epochs)")
    p.add_argument("--cnn-run", type=Path, default=None, help="a digits.yaml run (default: train one, 2 epochs)")
    p.add_argument("--epochs", type=int, default=8, help="epochs of the digits_tcn run trained here")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of FSDD audio streamed")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    tcn_run = args.run or trained("digits_tcn.yaml", args.epochs, tmp)
    cnn_run = args.cnn_run or trained("digits.yaml", 2, tmp)
    wave = fsdd_stream(args.seconds, 8000)

    rows, agreement, ratios = [], {}, {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        inc, inc_top = run(tcn_run, wave, recompute=False)
        base, base_top = run(tcn_run, wave, recompute=True)
        cnn, _ = run(cnn_run, wave, recompute=True)
        agreement[threads] = float(np.mean(np.asarray(inc_top) == np.asarray(base_top)))
        ratios[threads] = base["mean_ms"] / inc["mean_ms"]
        for name, s in (("digits_tcn incremental", inc), ("digits_tcn recompute (baseline)", base),
                        ("digits cnn (window, reference)", cnn)):
            rows.append(f"| {name} | {threads} | {s['hops']} | {s['mean_ms']:.2f} | {s['p50_ms']:.2f} | "
                        f"{s['p99_ms']:.2f} | {s['rtf']:.4f} |")

    print(f"### Streaming: compute per {HOP * 1000:.0f} ms hop ({len(wave) / 8000:.1f} s of FSDD, "
          f"{dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"torch {torch.__version__})\n")
    print("| model | threads | hops | mean ms | p50 ms | p99 ms | real-time factor |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    for threads in (2, 1):
        print(f"- {threads} thread(s): recompute / incremental mean compute per hop = {ratios[threads]:.1f}x; "
              f"same top label in {100 * agreement[threads]:.1f} % of hops")
    print(f"- runs: digits_tcn {tcn_run}, digits {cnn_run}")


if __name__ == "__main__":
    main()
