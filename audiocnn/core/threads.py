"""CPU threads: how many torch uses, and how its idle threads wait.

How many (:func:`resolve_threads`), first that is set:

1. an explicit count: ``trainer.threads``, ``--threads``;
2. ``AUDIOCNN_NUM_THREADS``;
3. ``OMP_NUM_THREADS`` (what torch itself reads; ``torchrun`` sets it to 1 for several processes);
4. the CPUs this process may use (:func:`available_cpus`: its affinity mask, capped by a cgroup CPU quota, as a
   container or ``docker --cpus`` sets it), divided among the processes ``torchrun`` starts on this machine.

How they wait (:func:`prepare_environment`, which must run before torch is imported: the OpenMP runtime reads its
settings once, when it loads). torch's CPU kernels run on OpenMP (GNU libgomp in the PyPI wheels). Between the
many small parallel regions of a training step or a front-end call, a libgomp thread spins for about 300,000
iterations before it sleeps. On an idle machine that saves a wake-up; on a machine where another process holds a
core, the spinning thread takes the time slice the working one needs, and every region waits for the slowest
thread. ``audiocnn`` (the command line) therefore sets ``GOMP_SPINCOUNT`` (below) unless the user set
``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME`` already. ``benchmarks/train.py --load`` and
``benchmarks/frontend.py --load`` measure the choice under load; library users who import torch themselves set
the same variables before that import.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import MutableMapping

__all__ = ["ENV_THREADS", "WAIT_SETTINGS", "available_cpus", "cgroup_cpu_limit", "prepare_environment",
           "resolve_threads", "set_threads"]

ENV_THREADS = "AUDIOCNN_NUM_THREADS"
WAIT_SETTINGS = {"GOMP_SPINCOUNT": "10000"}
"""What :func:`prepare_environment` sets: idle OpenMP threads spin about 10,000 iterations (a few microseconds),
then sleep. Chosen in ``benchmarks/RESULTS.md`` ("Threads on a busy machine")."""
_USER_WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def prepare_environment(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set the wait policy for the OpenMP runtime unless the user chose one; returns what it set. Call it before
    the first ``import torch`` of the process (later calls change nothing torch sees)."""
    if any(k in environ for k in _USER_WAIT_KEYS):
        return {}
    environ.update(WAIT_SETTINGS)
    return dict(WAIT_SETTINGS)


def _cgroup_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and its v1 ``cpu`` controller path (either may be missing)."""
    v2 = v1 = None
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _read_first(candidates: list[Path]) -> str | None:
    for path in candidates:
        try:
            return path.read_text().strip()
        except OSError:
            continue
    return None


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup quota allows (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` of v1), or ``None`` without a quota. The process's own cgroup is read first, then the
    hierarchy's root (inside a container the two are usually the same folder)."""
    v2, v1 = _cgroup_paths(proc_cgroup)
    places = [root / v2.lstrip("/")] if v2 else []
    text = _read_first([p / "cpu.max" for p in places + [root]])
    if text:
        quota, _, period = text.partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    v1_dirs = [root / name / v1.lstrip("/") for name in ("cpu", "cpu,cpuacct") if v1] + [root / "cpu", root / "cpu,cpuacct"]
    quota = _read_first([d / "cpu.cfs_quota_us" for d in v1_dirs])
    period = _read_first([d / "cpu.cfs_period_us" for d in v1_dirs])
    if quota and period and int(quota) > 0 and int(period) > 0:
        return int(quota) / int(period)
    return None


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup quota (rounded up), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def _positive(name: str, value: str) -> int:
    from audiocnn.core.errors import ConfigError
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{name}={value!r} is not a thread count; use a whole number >= 1 (or unset it)")
    return n


def resolve_threads(requested: int | None = None, environ: MutableMapping[str, str] = os.environ) -> int:
    """The thread count (see the module docstring); ``requested`` 0 or ``None`` means automatic.

    Raises:
        ConfigError: ``AUDIOCNN_NUM_THREADS`` or ``OMP_NUM_THREADS`` is set to something other than a count.
    """
    if requested:
        return int(requested)
    for name in (ENV_THREADS, "OMP_NUM_THREADS"):
        if environ.get(name, "").strip():
            return _positive(name, environ[name].strip())
    local = int(environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, available_cpus() // max(local, 1))


def set_threads(requested: int | None = None) -> int:
    """Resolve the count and give it to torch (intra-op threads); returns it."""
    import torch

    n = resolve_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
