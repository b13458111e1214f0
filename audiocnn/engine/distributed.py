"""Data-parallel training and embedding over several processes and machines, launched by ``torchrun``.

Usage (``torchrun`` is ``python -m torch.distributed.run``; it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``, which is all this module reads):

    # one machine, 4 GPUs: one process per GPU (cuda:LOCAL_RANK), NCCL
    torchrun --nproc_per_node=4 -m audiocnn train recipes/speech_commands.yaml trainer.epochs=20
    # resume with any number of processes, one included (plain `audiocnn train --resume` works too)
    torchrun --nproc_per_node=2 -m audiocnn train --resume runs/speech_commands/20260101-120000
    # two machines with 8 GPUs each: the same command on both
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=host0:29400 --rdzv_id=sc \\
        -m audiocnn train recipes/speech_commands.yaml
    # CPU only (gloo): trainer.device=cpu, or any machine without CUDA
    OMP_NUM_THREADS=4 torchrun --nproc_per_node=2 -m audiocnn train recipes/quickstart.yaml trainer.device=cpu
    # embeddings: process r embeds inputs r, r + N, r + 2N, ... of the sorted list; rank 0 writes manifest.csv
    torchrun --nproc_per_node=4 -m audiocnn embed vggish data/esc50/audio --out emb/ --weights vggish-10086976.pth

What changes with N processes, and what does not:

- ``data.batch_size`` stays the *global* batch: each process loads ``batch_size / N`` clips per step (it must
  divide evenly) and DistributedDataParallel averages the gradients, so a step sees the same clips and the same
  mean gradient as a single process with that batch. Learning rate, schedule (steps per epoch) and recipe need no
  change, and a run can be resumed with another N.
- Every process draws the same ``(trainer.seed, epoch)`` permutation and takes every N-th clip of it from its rank
  (:class:`~audiocnn.data.EpochShuffleSampler`), cut to a multiple of N, so step ``k`` of all processes together
  holds exactly the clips of a single process's step ``k``; random crops still come from ``(seed, epoch, index)``.
- What differs from one process: batch-norm statistics are taken over each process's ``batch_size / N`` clips
  (their running averages are averaged over the processes after every epoch), dropout, masking and mixup draw
  from per-process random streams (``trainer.seed + rank``), and sums are added in another order.
- Validation is split the same way without padding, and the clip outputs are gathered, so the metrics are over
  the whole validation split, each clip once. Training loss and accuracy are summed over the processes.
- Rank 0 alone writes the run folder (``config.yaml``, ``log.txt``, ``metrics.csv``, checkpoints), evaluates the
  test split and writes the report; the others leave together with it after the last epoch
  (before the test evaluation, which needs no collectives). Checkpoints hold the plain model
  (no ``module.`` or ``_orig_mod.`` prefixes) and load in a single process or any number of them.
- The normaliser is fitted on rank 0 and broadcast. Data is prepared (generated, decoded into the cache) by
  rank 0 first, then by the first process of every other machine, then by the rest, so a disk is written once.
- Several machines need ``trainer.output_dir`` on a disk they share (every process reads the checkpoint to resume)
  and the data on every machine.
- A process that fails stops torchrun, which stops the others. Collectives wait up to :data:`TIMEOUT`.

``trainer.compile: true`` compiles the network (not the front-end) with ``torch.compile``, with or without
``torchrun``.
"""
from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from audiocnn.core.errors import ConfigError, EnvironmentFailure
from audiocnn.core.io import write_json
from audiocnn.core.runtime import pick_device

__all__ = ["TIMEOUT", "DistContext", "elastic_resume", "env_rank", "remember_elastic_run", "setup"]

T = TypeVar("T")

TIMEOUT = dt.timedelta(minutes=60)
"""How long a collective waits for the other processes; generous because rank 0 alone decodes a new dataset
into the cache while the others wait."""


def _elastic_marker(output_dir: str) -> Path | None:
    """``<output_dir>/.elastic/<job>.json``: under torchrun, which run folder this job began; ``None`` outside
    torchrun. The job is ``--rdzv-id`` (``TORCHELASTIC_RUN_ID``, the same on every machine and after a restart);
    without one (``none``, a static ``--master-addr`` launch) it is this machine and its torchrun agent, the
    parent of the processes it restarts, which serves a one-machine job."""
    if "TORCHELASTIC_RESTART_COUNT" not in os.environ:
        return None
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if not run_id or run_id == "none":
        run_id = f"{socket.gethostname()}-agent{os.getppid()}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return Path(os.path.expanduser(output_dir)) / ".elastic" / f"{safe}.json"


def remember_elastic_run(output_dir: str, run_dir: Path) -> None:
    """Rank 0, on making a run folder under torchrun: note it, for :func:`elastic_resume` after a restart."""
    marker = _elastic_marker(output_dir)
    if marker is not None:
        write_json(marker, {"run_dir": str(Path(run_dir).resolve())})


def elastic_resume(output_dir: str) -> Path | None:
    """After ``torchrun --max-restarts=N`` restarted the processes (``TORCHELASTIC_RESTART_COUNT > 0``): the run
    folder this job began, when it has a checkpoint to resume from; else ``None`` (start as usual). Multi-node
    jobs need ``output_dir`` on shared storage, as for any resume."""
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) == 0:
        return None
    marker = _elastic_marker(output_dir)
    if marker is None or not marker.is_file():
        return None
    run_dir = Path(json.loads(marker.read_text())["run_dir"])
    return run_dir if (run_dir / "checkpoints" / "last.pt").is_file() else None


def env_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun); readable after the group is closed."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class DistContext:
    """Where this process stands in a torchrun job; a single process when ``world_size == 1``.

    Every collective below is a no-op (returns its input) for a single process, so the engine calls them
    unconditionally.

    Attributes:
        rank: 0 .. world_size - 1; rank 0 writes every file.
        world_size: number of processes.
        local_rank: index of the process on its machine (its GPU).
        device: ``cuda:LOCAL_RANK`` on GPUs, else the device ``trainer.device`` names.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False
    """This context made the process group (and :meth:`close` destroys it)."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self, *, wait: bool = False) -> None:
        """Leave the process group. ``wait``: first wait for every process, so all leave it together; a process
        tearing its gloo connections down while a peer still holds them can abort ("terminate called without an
        active exception"). Error paths close without waiting (a peer may never arrive)."""
        if self.owns_group and dist.is_initialized():
            if wait:
                self.barrier()
            dist.destroy_process_group()
            self.owns_group = False

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel (gradients averaged over the processes), or itself for one.

        Buffers are not broadcast at every step: the front-end's constant kernels need no traffic, and the
        batch-norm statistics are averaged once per epoch instead (:meth:`average_batchnorm`).
        """
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        # torch 2.13 renamed the per-step switch (buffers are equal at the start: norm broadcast, the rest built alike).
        sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters \
            else "broadcast_buffers"
        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None, **{sync: False})

    # --- collectives ---------------------------------------------------------------------------------------------

    def barrier(self) -> None:
        if not self.enabled:
            return
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def in_turn(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0 first, then on the first process of every other machine, then on the rest, so what it
        writes to a disk (generated data, the decode cache) is written once, whether the disk is shared or not."""
        if not self.enabled:
            return fn()
        turn = 0 if self.rank == 0 else 1 if self.local_rank == 0 else 2
        result = None
        for t in range(3):
            if t == turn:
                result = fn()
            self.barrier()
        return result  # type: ignore[return-value]

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` on every process (picklable objects)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, by rank, on every process."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_tensors(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite ``tensors`` (on :attr:`device`) with rank 0's, in place."""
        if self.enabled:
            for t in tensors:
                dist.broadcast(t, src=0)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the processes, in float64."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def average_batchnorm(self, model: nn.Module) -> None:
        """Average the batch-norm running means and variances over the processes (each saw its own batches), so
        every process evaluates, and rank 0 saves, the same statistics."""
        if not self.enabled:
            return
        stats = [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 and m.track_running_stats for b in (m.running_mean, m.running_var) if b is not None]
        if not stats:
            return
        flat = torch.cat([b.detach().reshape(-1).double() for b in stats])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for b in stats:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()

    def gather_clips(self, outputs: np.ndarray, targets: np.ndarray,
                     loss: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Join the evaluation of a split sharded as ``range(rank, n, world_size)`` (no padding) back into the
        split's order: ``(outputs, targets, mean loss)`` over every clip once, on every process."""
        if not self.enabled:
            return outputs, targets, loss
        parts = self.all_gather_object((outputs, targets, loss, len(targets)))
        n = sum(p[3] for p in parts)
        filled = [p for p in parts if p[3]]
        if not filled:
            return outputs, targets, float("nan")
        joined = []
        for k in (0, 1):
            full = np.empty((n, *filled[0][k].shape[1:]), dtype=filled[0][k].dtype)
            for r, p in enumerate(parts):
                if p[3]:
                    full[r::self.world_size] = p[k]
            joined.append(full)
        mean_loss = sum(p[2] * p[3] for p in filled) / n
        return joined[0], joined[1], mean_loss


def setup(device: str = "auto", *, backend: str | None = None) -> DistContext:
    """Join the process group of a torchrun job (``WORLD_SIZE > 1``), or describe a single process.

    Args:
        device: ``trainer.device``: ``auto`` or ``cuda`` give each process ``cuda:LOCAL_RANK`` when CUDA is
            available; ``cpu`` runs on CPUs even with GPUs present.
        backend: default ``nccl`` on CUDA, ``gloo`` on CPU.

    Returns:
        The context; call :meth:`DistContext.close` when done (a group made elsewhere is left open).

    Raises:
        ValueError: ``cuda:K`` with several processes, more processes than GPUs, or a device DDP cannot use.
    """
    already = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if already else int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=pick_device(device))
    if not dist.is_available():
        raise EnvironmentFailure("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [k for k in ("RANK", "LOCAL_RANK") if k not in os.environ]
    if missing and not already:
        raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun "
                         "(python -m torch.distributed.run --nproc_per_node=N -m audiocnn ...)")
    rank = dist.get_rank() if already else int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = pick_device(device)
    if target.type == "cuda":
        if ":" in str(device):
            raise ConfigError(f"device {device!r} (trainer.device, --device): with torchrun every process uses "
                             "cuda:LOCAL_RANK; use auto or cuda (CUDA_VISIBLE_DEVICES picks the GPUs)")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} but {torch.cuda.device_count()} GPU(s) are visible; "
                             "start at most one process per GPU (--nproc_per_node)")
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    elif target.type != "cpu":
        raise ConfigError(f"device {device!r} (trainer.device, --device) is {target.type}, which several "
                         "processes cannot share; use cpu or CUDA GPUs")
    if not already:
        backend = backend or ("nccl" if target.type == "cuda" else "gloo")
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if restart is None:
            dist.init_process_group(backend, timeout=TIMEOUT)
        else:  # under torchrun: keys of this attempt only (after a --max-restarts restart, gloo otherwise found
            # the dead attempt's addresses in torchrun's store and waited on them)
            store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world, timeout=TIMEOUT))
            dist.init_process_group(backend, store=dist.PrefixStore(f"audiocnn/attempt_{restart}", store), rank=rank,
                                    world_size=world, timeout=TIMEOUT)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=target, owns_group=not already)
