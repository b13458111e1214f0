"""Load test of ``audiocnn serve``: concurrent clients on loopback for a fixed time; prints a markdown table.

    AUDIOCNN_DATA=/work/shared/datasets python benchmarks/serve_load.py                 # trains digits briefly
    python benchmarks/serve_load.py --run runs/digits/<run> --seconds 60 --clients 16
    python benchmarks/serve_load.py --compare-unbatched                                 # + --max-batch 1, same load

The server is a real ``python -m audiocnn serve`` process on 127.0.0.1 (a free port). Without ``--run`` the digits
recipe is trained for ``--epochs`` on FSDD (``$AUDIOCNN_DATA/fsdd``) into a temporary folder. The clients post FSDD
recordings (WAV bytes, ``audio/wav``) in a loop, each over one kept-alive connection, for ``--seconds``, then stop.

Reported: requests, throughput (requests/s), p50/p99 latency, errors (any non-200 answer or transport error; must
be 0), mean requests per forward pass, and the server's resident memory (``VmRSS`` in ``/proc/PID/status``) when
ready, after ``--warmup-seconds`` of the same load, half-way and at the end. The bound on growth is stated and
checked: from after warm-up to the end, RSS may grow by at most ``max(64 MiB, 10 %)``: the model, the allocator's
pools, the per-batch-size kernels and the thread pools are warm by then, so growth beyond that under a steady load
would be a leak (half-way and end show whether it still climbs). With
``--compare-unbatched`` a second server with ``--max-batch 1`` takes the same load and the table gives the ratio
of throughputs (batched / unbatched), measured in the same run. The exit status is 1 when there were errors or
the bound was broken.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def train_run(out: Path, epochs: int) -> Path:
    data = os.environ.setdefault("AUDIOCNN_DATA", "/work/shared/datasets")
    if not (Path(data) / "fsdd").is_dir():
        sys.exit(f"no FSDD at {data}/fsdd: set AUDIOCNN_DATA or give --run")
    cmd = [sys.executable, "-m", "audiocnn", "train", str(ROOT / "recipes" / "digits.yaml"), f"trainer.epochs={epochs}",
           f"trainer.output_dir={out / 'runs'}", f"data.cache_dir={out / 'cache'}", "trainer.progress=never", "trainer.report=false"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    (run,) = (out / "runs" / "digits").iterdir()
    return run


class Server:
    def __init__(self, run: Path, log: Path, args: list[str]):
        self._log = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "audiocnn", "serve", str(run), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=self._log, text=True)
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            sys.exit(f"the server did not start: {line}{log.read_text()}")
        self.url = "http://" + line.split("http://")[1].split()[0]
        for _ in range(600):
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        self._log.close()
        return code


async def load(url: str, payloads: list[bytes], *, clients: int, seconds: float | None, requests: int | None,
               seed: int) -> tuple[list[float], int, float]:
    """``clients`` loops posting random payloads until ``seconds`` pass (or ``requests`` in all); latencies (s),
    errors and the wall time."""
    latencies: list[float] = []
    errors = 0
    done = 0
    start = time.perf_counter()
    deadline = start + seconds if seconds else float("inf")

    async def client(i: int) -> None:
        nonlocal errors, done
        rng = random.Random(seed + i)
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1)) as c:
            while time.perf_counter() < deadline and (requests is None or done < requests):
                done += 1
                t0 = time.perf_counter()
                try:
                    r = await c.post(url + "/predict", content=rng.choice(payloads), headers={"Content-Type": "audio/wav"})
                    ok = r.status_code == 200 and "top" in r.json()
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors, time.perf_counter() - start


class RssSampler(threading.Thread):
    """``VmRSS`` of a process every ``every_s`` seconds while the load runs."""

    def __init__(self, pid: int, every_s: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.samples = pid, every_s, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self.samples.append(rss_mib(self.pid))


def measure(run: Path, payloads: list[bytes], args: argparse.Namespace, tmp: Path, extra: list[str]) -> dict:
    server = Server(run, tmp / f"server{len(extra)}.log", extra)
    pid = server.proc.pid
    ready = rss_mib(pid)
    asyncio.run(load(server.url, payloads, clients=args.clients, seconds=args.warmup_seconds, requests=None, seed=999))
    warm = rss_mib(pid)
    batching0 = httpx.get(server.url + "/health").json()["batching"]
    sampler = RssSampler(pid)
    sampler.start()
    latencies, errors, wall = asyncio.run(load(server.url, payloads, clients=args.clients, seconds=args.seconds,
                                               requests=None, seed=args.seed))
    sampler.done.set()
    sampler.join()
    end = rss_mib(pid)
    mid = sampler.samples[len(sampler.samples) // 2] if sampler.samples else end
    batching = httpx.get(server.url + "/health").json()["batching"]
    code = server.stop()
    lat = np.array(latencies) * 1000
    forward = batching["batches"] - batching0["batches"]
    return {"requests": len(latencies), "rps": len(latencies) / wall, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "errors": errors, "ready": ready, "warm": warm, "mid": mid, "end": end,
            "per_batch": (batching["requests"] - batching0["requests"]) / max(forward, 1),
            "largest": batching["largest_batch"], "exit": code}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, default=None, help="a run folder (default: train digits briefly)")
    p.add_argument("--epochs", type=int, default=1, help="epochs of the brief training")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--warmup-seconds", type=float, default=5.0, help="load before memory is measured")
    p.add_argument("--files", type=int, default=200, help="FSDD recordings the clients choose from")
    p.add_argument("--compare-unbatched", action="store_true", help="also the same load with --max-batch 1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("server_args", nargs="*", help="extra `audiocnn serve` flags, after --")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp_name:
        tmp = Path(tmp_name)
        run = args.run or train_run(tmp, args.epochs)
        data = Path(os.environ.get("AUDIOCNN_DATA", "/work/shared/datasets")) / "fsdd" / "recordings"
        every = sorted(data.glob("*.wav"))
        files = every[:: max(1, len(every) // args.files)][: args.files]  # spread over speakers and digits
        if not files:
            sys.exit(f"no FSDD recordings in {data}")
        payloads = [f.read_bytes() for f in files]
        rows = [("batched", measure(run, payloads, args, tmp, list(args.server_args)))]
        if args.compare_unbatched:
            rows.append(("unbatched (--max-batch 1)", measure(run, payloads, args, tmp,
                                                             [*args.server_args, "--max-batch", "1", "--max-wait-ms", "0"])))

    bound = lambda warm: max(64.0, 0.10 * warm)  # noqa: E731 - MiB of growth allowed after warm-up
    print(f"\n`audiocnn serve` load test: {args.clients} clients, {args.seconds:g} s after {args.warmup_seconds:g} s of "
          f"warm-up, {len(payloads)} FSDD recordings "
          f"({np.mean([len(x) for x in payloads]) / 1024:.0f} KiB mean), run {run.name if args.run else 'digits (brief)'}, "
          f"{os.cpu_count()} CPUs\n")
    print("| server | requests | req/s | p50 ms | p99 ms | errors | requests per forward pass | largest batch | "
          "RSS ready MiB | RSS warm MiB | RSS half-way MiB | RSS end MiB | growth MiB (bound) | exit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for name, m in rows:
        growth = m["end"] - m["warm"]
        within = growth <= bound(m["warm"])
        ok &= within and m["errors"] == 0 and m["exit"] == 0
        print(f"| {name} | {m['requests']} | {m['rps']:.1f} | {m['p50']:.1f} | {m['p99']:.1f} | {m['errors']} | "
              f"{m['per_batch']:.2f} | {m['largest']} | {m['ready']:.0f} | {m['warm']:.0f} | {m['mid']:.0f} | {m['end']:.0f} | "
              f"{growth:+.1f} (<= {bound(m['warm']):.0f}: {'ok' if within else 'BROKEN'}) | {m['exit']} |")
    if len(rows) == 2:
        print(f"\nthroughput batched / unbatched: {rows[0][1]['rps'] / rows[1][1]['rps']:.2f}x (same load, same run)")
    print(json.dumps({name: m for name, m in rows}), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
