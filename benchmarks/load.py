"""Competing load for the benchmarks' "busy machine" cases (``benchmarks/train.py --load``,
``benchmarks/frontend.py --load``).

- ``busy``: one process that keeps one core busy (a pure-Python loop, as a build or a browser tab would);
- ``trainers``: two torch training processes (a small CNN on random data, torch's own thread defaults and
  OpenMP settings, i.e. what other users' jobs on a shared machine do).

    with competing("busy"):
        ...   # time something while the load runs

Each competitor is started, allowed ``warmup_s`` to reach steady state, and killed (with its process group) on exit.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Iterator

__all__ = ["LOADS", "competing"]

_BUSY = "while True:\n    pass\n"
_TRAINER = """
import torch
from torch import nn
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                    nn.Flatten(), nn.Linear(64, 10))
opt = torch.optim.AdamW(net.parameters(), 1e-3)
x, y = torch.randn(32, 1, 64, 64), torch.randint(0, 10, (32,))
while True:
    opt.zero_grad()
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
"""
LOADS = {"idle": [], "busy": [_BUSY], "trainers": [_TRAINER, _TRAINER]}
"""Load name -> the Python programs of its competing processes."""


@contextlib.contextmanager
def competing(load: str, *, warmup_s: float = 3.0) -> Iterator[None]:
    """Run the competitors of ``load`` (a key of :data:`LOADS`) for the duration of the block."""
    if load not in LOADS:
        raise ValueError(f"load {load!r}: one of {', '.join(LOADS)}")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "AUDIOCNN_NUM_THREADS")}
    procs = [subprocess.Popen([sys.executable, "-c", prog], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for prog in LOADS[load]]
    try:
        if procs:
            time.sleep(warmup_s)
            dead = [p.args for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a competing process of load {load!r} exited at once")
        yield
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
