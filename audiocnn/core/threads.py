"""CPU threads: how many torch uses, and how its idle threads wait.

How many (:func:`resolve_threads`), first that is set:

1. an explicit count: ``trainer.threads``, ``--threads``;
2. ``AUDIOCNN_NUM_THREADS``;
3. ``OMP_NUM_THREADS`` (what torch itself reads; ``torchrun`` sets it to 1 for several processes);
4. automatic: the CPUs this process may use (:func:`available_cpus`: its affinity mask, capped by a cgroup CPU
   quota, as a container or ``docker --cpus`` sets it), divided among the processes ``torchrun`` starts on this
   machine, and fewer when other processes keep some of those CPUs busy (:class:`LoadProbe`).

Why fewer: a parallel region ends when its slowest thread does. When another process holds one of two cores,
the thread that shares its core gets half of it and every region of a training step waits for it; measured
here, ``digits.yaml`` then trains 3x slower with 2 threads than idle, and 1.5x slower with 1 thread
(``benchmarks/RESULTS.md``, "Threads on a busy machine"). The automatic count is therefore the CPUs that are
free: the probe reads how much CPU time other processes used on this process's CPUs (``/proc/stat`` minus this
process and its children), at start (over :data:`PROBE_S`) and, in training, again every :data:`ADAPT_EVERY_S`
seconds (:class:`ThreadAdapter`). A different thread count changes float rounding (reductions are split
differently), so an automatic run is not bit-for-bit repeatable under a changing load: set ``trainer.threads``
(or ``AUDIOCNN_NUM_THREADS``) for that.

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
import time
from pathlib import Path
from typing import MutableMapping

__all__ = ["ADAPT_EVERY_S", "ENV_THREADS", "PROBE_S", "WAIT_SETTINGS", "LoadProbe", "ThreadAdapter", "available_cpus",
           "cgroup_cpu_limit", "free_threads", "prepare_environment", "resolve_threads", "set_threads"]

ENV_THREADS = "AUDIOCNN_NUM_THREADS"
PROBE_S = 0.1
"""How long the first reading of other processes' CPU use takes (at start, before any work)."""
ADAPT_EVERY_S = 10.0
"""How often training reads it again and sets the thread count anew."""
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


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


class LoadProbe:
    """CPU time other processes used on this process's CPUs, in cores, between readings (Linux ``/proc``; elsewhere
    :meth:`others` gives ``None``). Time the hypervisor stole counts as used by others."""

    _TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, cpus: list[int] | None = None, proc: Path = Path("/proc")):
        self.proc, self.cpus = proc, set(_affinity() if cpus is None else cpus)
        self.pid = os.getpid()
        self._last = self._read()

    def _busy_ticks(self) -> int | None:
        try:
            lines = (self.proc / "stat").read_text().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in self.cpus:
                continue
            v = [int(x) for x in fields]  # user nice system idle iowait irq softirq steal ...
            busy += v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
        return busy

    def _own_ticks(self) -> int:
        """This process's CPU time and that of its live children (loader workers), in clock ticks."""
        total = 0
        for stat in [self.proc / str(self.pid) / "stat", *self._children()]:
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total

    def _children(self) -> list[Path]:
        out = []
        for task in (self.proc / str(self.pid) / "task").glob("*/children"):
            try:
                out += [self.proc / c / "stat" for c in task.read_text().split()]
            except OSError:
                continue
        return out

    def _read(self) -> tuple[float, int | None, int]:
        return time.monotonic(), self._busy_ticks(), self._own_ticks()

    def others(self) -> float | None:
        """Cores' worth of CPU other processes used since the last reading (or since the probe was made)."""
        now = self._read()
        (t0, busy0, own0), self._last = self._last, now
        if busy0 is None or now[1] is None or now[0] - t0 <= 0:
            return None
        ticks = (now[1] - busy0) - (now[2] - own0)
        return max(0.0, ticks / self._TICK / (now[0] - t0))


def free_threads(cpus: int, affinity: int, others: float | None) -> int:
    """Threads for ``cpus`` usable CPUs when other processes use ``others`` cores of the ``affinity`` ones: the free
    cores (a core counts as taken from half a core's use), at least 1, at most ``cpus``."""
    if others is None:
        return cpus
    return max(1, min(cpus, math.floor(affinity - others + 0.5)))


def _fixed(requested: int | None, environ: MutableMapping[str, str]) -> int | None:
    """The count from an explicit setting or the environment, or ``None`` for automatic."""
    if requested:
        return int(requested)
    for name in (ENV_THREADS, "OMP_NUM_THREADS"):
        if environ.get(name, "").strip():
            return _positive(name, environ[name].strip())
    return None


def _share(environ: MutableMapping[str, str]) -> int:
    local = int(environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, available_cpus() // max(local, 1))


def resolve_threads(requested: int | None = None, environ: MutableMapping[str, str] = os.environ,
                    others: float | None = None) -> int:
    """The thread count (see the module docstring); ``requested`` 0 or ``None`` means automatic, where ``others``
    is the cores other processes keep busy (``None``: not known, all usable CPUs).

    Raises:
        ConfigError: ``AUDIOCNN_NUM_THREADS`` or ``OMP_NUM_THREADS`` is set to something other than a count.
    """
    fixed = _fixed(requested, environ)
    if fixed is not None:
        return fixed
    local = int(environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return free_threads(_share(environ), len(_affinity()) // max(local, 1) or 1,
                        None if others is None else others / max(local, 1))


class ThreadAdapter:
    """The automatic count, kept up to date: made at start (one :data:`PROBE_S` reading), then :meth:`update` every
    step sets it anew every :data:`ADAPT_EVERY_S` seconds. With an explicit count it sets that once and never
    changes it."""

    def __init__(self, requested: int | None = None, environ: MutableMapping[str, str] = os.environ,
                 every_s: float = ADAPT_EVERY_S):
        import torch

        self.environ, self.every_s = environ, every_s
        self.previous = torch.get_num_threads()
        self.fixed = _fixed(requested, environ)
        self.probe = None if self.fixed is not None else LoadProbe()
        if self.probe is not None:
            time.sleep(PROBE_S)
        self.threads = self._apply()
        self._next = time.monotonic() + every_s

    def _apply(self) -> int:
        import torch

        n = self.fixed if self.fixed is not None else resolve_threads(None, self.environ, self.probe.others())
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n

    def update(self) -> int:
        """Read the load again when :data:`ADAPT_EVERY_S` has passed, and set the count; returns it."""
        if self.probe is not None and time.monotonic() >= self._next:
            self.threads = self._apply()
            self._next = time.monotonic() + self.every_s
        return self.threads


    def restore(self) -> None:
        """Give torch back the count it had before (a library caller's own setting survives a training run)."""
        import torch

        if torch.get_num_threads() != self.previous:
            torch.set_num_threads(self.previous)


def set_threads(requested: int | None = None) -> int:
    """Resolve the count (automatic: from a short reading of the load) and give it to torch; returns it."""
    return ThreadAdapter(requested).threads
