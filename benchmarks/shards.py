"""Streaming shards over HTTP against the decoded cache, in one run: throughput, data wait, memory, accuracy.

    AUDIOCNN_DATA=../shared/datasets python benchmarks/shards.py --markdown shards.md
    AUDIOCNN_DATA=../shared/datasets python benchmarks/shards.py --skip-digits --epochs 3
    AUDIOCNN_DATA=../shared/datasets python benchmarks/shards.py --memory-only --memory-model cnn_tiny --repeat 5 20 40

What it does, each training in its own subprocess (``audiocnn train`` as a user runs it), one after another:

1. ``audiocnn data shard esc10`` and ``audiocnn data shard fsdd`` into a temporary folder (FLAC, 16 MB shards,
   resampled once to the recipes' 16 and 8 kHz), served by ``python -m http.server`` on 127.0.0.1.
2. ESC-10 (``recipes/esc10.yaml``, fold 1 test), ``--epochs`` epochs each: from files through the decoded cache
   (warmed by a one-step run first, so the cache path reads memory-mapped arrays), then from the shards over
   HTTP with 0 and with 1 loader worker. ``samples_per_s`` and ``data_wait`` are the medians of each run's
   epochs after the first (metrics.csv).
3. Peak RSS (``ru_maxrss`` from ``wait4``) of one training process (0 workers, one epoch) over the ESC-10
   shards once and 20 times over: an index that lists every training shard 20 times (the same files), so the
   process streams 20x the examples; validation and test are read once in both. ``--memory-model cnn_tiny``
   trains a small network instead of the recipe's, so that the data path's memory is not hidden under the
   network's activations (whose allocations make the peak of a long run wander by tens of MB).
4. ``recipes/digits.yaml`` as shipped: from files in one process, and from the FSDD shards over HTTP with 2
   processes (``torchrun``, gloo, ``data.streams=2``); test accuracy of both.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], *, env: dict | None = None) -> tuple[float, int]:
    """Run a command to the end; (wall seconds, peak RSS in MiB of it and its waited-for children)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-4000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss // 1024


def train(recipe: str, out: Path, *overrides: str, torchrun: int = 0) -> dict:
    """``audiocnn train`` (or under torchrun); the run's per-epoch medians, test accuracy, wall time and RSS."""
    args = ["-m", "audiocnn", "train", recipe, f"trainer.output_dir={out}", "trainer.report=false",
            "trainer.progress=never", *overrides]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if torchrun:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // torchrun))
        cmd = [PY, "-m", "torch.distributed.run", f"--nproc_per_node={torchrun}", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", *args]
    else:
        cmd = [PY, *args]
    wall, rss = run(cmd, env=env)
    run_dir = max(out.glob("*/*/metrics.csv"), key=os.path.getmtime).parent
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    later = rows[1:] or rows
    test = json.loads((run_dir / "eval" / "test_metrics.json").read_text())
    return {"epochs": len(rows), "samples_per_s": statistics.median(float(r["samples_per_s"]) for r in later),
            "data_wait": statistics.median(float(r["data_wait"]) for r in later),
            "train_samples": int(rows[-1]["train_samples"]), "test_accuracy": test.get("accuracy"),
            "wall_s": wall, "rss_mib": rss}


def shard(dataset: str, root: Path, out: Path, sample_rate: int) -> float:
    t, _ = run([PY, "-m", "audiocnn", "data", "shard", dataset, "--root", str(root), "--out", str(out),
                "--shard-size", "16MB", "--sample-rate", str(sample_rate), "--progress", "never"])
    return t


def repeat_index(src: Path, dst: Path, times: int) -> None:
    """A shard set whose index lists every training shard ``times`` times (links to the same files)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.tar"):
        (dst / f.name).symlink_to(f)
    index = json.loads((src / "index.json").read_text())
    train = index["splits"]["train"]
    train["shards"] = train["shards"] * times
    train["examples"] *= times
    train["duration_s"] *= times
    (dst / "index.json").write_text(json.dumps(index))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="ESC-10 epochs per throughput run (default 3)")
    p.add_argument("--repeat", type=int, nargs="+", default=[20],
                   help="how many times the large indexes repeat the training data (default 20)")
    p.add_argument("--memory-only", action="store_true", help="only the peak-RSS runs (1x and each --repeat)")
    p.add_argument("--memory-model", default="", help="model.name for the peak-RSS runs (default: the recipe's); "
                   "a small network (cnn_tiny) makes the data path's share of the memory visible and runs faster")
    p.add_argument("--skip-digits", action="store_true", help="leave out the digits accuracy comparison")
    p.add_argument("--markdown", type=Path, help="also write the tables here")
    args = p.parse_args()
    data = Path(os.environ.get("AUDIOCNN_DATA", "data"))
    tmp = Path(tempfile.mkdtemp(prefix="audiocnn-shards-"))
    port = _free_port()
    server = subprocess.Popen([PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    lines = [f"Date {dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"shards served by python -m http.server on 127.0.0.1.", ""]
    try:
        t_esc = shard("esc10", data / "esc10", tmp / "esc10", 16000)
        lines += [f"ESC-10 sharded in {t_esc:.1f} s "
                  f"({sum(f.stat().st_size for f in (tmp / 'esc10').glob('*.tar')) / 2**20:.1f} MiB of FLAC shards).",
                  ""]
        esc = ["recipes/esc10.yaml", f"trainer.epochs={args.epochs}"]
        shards_esc = ["data.name=shards", f"data.root={url}/esc10"]
        cache = tmp / "cache"
        if not args.memory_only:
            train(esc[0], tmp / "runs-warm", "trainer.epochs=1", "trainer.max_steps_per_epoch=1",
                  f"data.cache_dir={cache}")
            cases = [("files, decoded cache (recipe as shipped)", [f"data.cache_dir={cache}"]),
                     ("shards over HTTP, 0 workers", shards_esc),
                     ("shards over HTTP, 1 worker", [*shards_esc, "data.num_workers=1"])]
            rows = []
            for name, extra in cases:
                r = train(esc[0], tmp / f"runs-{len(rows)}", *esc[1:], *extra)
                rows.append((name, r))
                print(name, r, flush=True)
            base = rows[0][1]["samples_per_s"]
            lines += ["| ESC-10 (fold 1 test) | epochs | samples/s | data wait | vs cache |",
                      "|---|---:|---:|---:|---:|"]
            lines += [f"| {n} | {r['epochs']} | {r['samples_per_s']:.1f} | {100 * r['data_wait']:.1f} % | "
                      f"{r['samples_per_s'] / base:.2f}x |" for n, r in rows]

        mem = []
        for times in [1, *args.repeat]:
            root = "esc10"
            if times > 1:
                root = f"esc10x{times}"
                repeat_index(tmp / "esc10", tmp / root, times)
            model = [f"model.name={args.memory_model}"] if args.memory_model else []
            r = train(esc[0], tmp / f"runs-mem-{times}", "trainer.epochs=1", "data.name=shards", f"data.root={url}/{root}",
                      *model)
            mem.append((f"{times}x", r))
            print("memory", times, r, flush=True)
        lines += ["", f"| one training process ({args.memory_model or 'recipe network'}), 0 workers, 1 epoch | "
                  "training examples streamed | peak RSS |",
                  "|---|---:|---:|"]
        lines += [f"| ESC-10 shards {n} | {r['train_samples']} | {r['rss_mib']} MiB |" for n, r in mem]

        if not (args.skip_digits or args.memory_only):
            shard("fsdd", data / "fsdd", tmp / "fsdd", 8000)
            files = train("recipes/digits.yaml", tmp / "runs-digits-files", f"data.cache_dir={cache}")
            ddp = train("recipes/digits.yaml", tmp / "runs-digits-shards", "data.name=shards",
                        f"data.root={url}/fsdd", "data.streams=2", torchrun=2)
            print("digits", files, ddp, flush=True)
            lines += ["", "| digits.yaml (20 epochs) | processes | test accuracy | wall |", "|---|---:|---:|---:|",
                      f"| files, decoded cache | 1 | {100 * files['test_accuracy']:.1f} % | {files['wall_s']:.0f} s |",
                      f"| FSDD shards over HTTP | 2 (gloo) | {100 * ddp['test_accuracy']:.1f} % | {ddp['wall_s']:.0f} s |"]
    finally:
        server.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
