"""The training engine: one explicit loop, readable top to bottom in :func:`train`.

    audiocnn train recipes/digits.yaml optim.lr=3e-4
    audiocnn train --resume runs/digits/20260101-120000
    audiocnn train --resume runs/digits/20260101-120000 trainer.epochs=60    # extend it
    torchrun --nproc_per_node=4 -m audiocnn train recipes/digits.yaml     # see audiocnn.engine.distributed
"""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiocnn.build import build_classifier, check_recipe, monitor_of
from audiocnn.config import Config, config_to_dict, resume_changes, resume_config, save_config
from audiocnn.core.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from audiocnn.core.errors import ConfigError, EnvironmentFailure
from audiocnn.core.io import WriteFailure, check_writable, write_json
from audiocnn.core.runtime import seed_everything, show_progress
from audiocnn.core.threads import ThreadAdapter
from audiocnn.data.loader import EpochShuffleSampler, make_loader
from audiocnn.engine.distributed import DistContext, elastic_resume, remember_elastic_run, setup
from audiocnn.engine.ema import WeightEMA
from audiocnn.engine.logging import ProgressLine, RunLogger, check_loggers, write_env
from audiocnn.inference import autocast, evaluate_loader, progress
from audiocnn.modalities import Classifier, Data, modality_of
from audiocnn.models.pretrained import head_parameters
from audiocnn.runs import load_data, make_run_dir, write_skipped
from audiocnn.tasks import get_task

__all__ = ["Trained", "compile_network", "train"]


@dataclass
class Trained:
    """What :func:`train` leaves: the run folder, the data it decoded (reused for the test evaluation),
    whether this process is the one that writes (rank 0), and the run's config (with what a resume changed)."""

    run_dir: Path
    data: Data
    is_main: bool
    device: torch.device
    cfg: Config


def param_groups(model: nn.Module, *, lr: float, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Optimizer groups: no weight decay on norms and biases (standard practice in timm / nanoGPT); with
    ``backbone_lr_scale != 1`` everything but the output layer (:func:`head_parameters`) gets ``lr * scale``."""
    head = {id(p) for p in head_parameters(model)} if backbone_lr_scale != 1.0 else set()
    groups = []
    for scale, in_head in ((backbone_lr_scale, False), (1.0, True)):
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in head) == in_head]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if chosen or (not head and not in_head):  # one learning rate: always the two decay groups
                groups.append({"params": chosen, "weight_decay": weight_decay if decay else 0.0, "lr": lr * scale})
    return groups


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = param_groups(model, lr=o.lr, weight_decay=o.weight_decay, backbone_lr_scale=o.backbone_lr_scale)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)
    return torch.optim.RMSprop(groups, lr=o.lr, momentum=o.momentum)


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """Stepped once per optimisation step; epochs are converted to steps."""
    o, total = cfg.optim, cfg.trainer.epochs * steps_per_epoch
    warmup = o.warmup_epochs * steps_per_epoch
    if o.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=max(total, 1))
    if o.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(o.step_size * steps_per_epoch, 1), gamma=o.gamma)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if o.scheduler == "cosine":
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def shard_loader(loader: torch.utils.data.DataLoader, cfg: Config, ctx: DistContext, *, train: bool):
    """This process's share of ``loader`` (see :func:`audiocnn.data.loader.make_loader`; shards:
    :meth:`audiocnn.data.shards.ShardLoader.for_rank`)."""
    if hasattr(loader, "for_rank"):
        return loader.for_rank(ctx.rank, ctx.world_size)
    return make_loader(loader.dataset, train=train, cfg=cfg.data, seed=cfg.trainer.seed, collate_fn=loader.collate_fn,
                       rank=ctx.rank, world_size=ctx.world_size)


def skip_batches(loader, steps: int) -> None:
    """Make the next pass over a training loader begin at batch ``steps`` of its epoch, without loading the
    batches before it: a shard loader skips undecoded examples; a file loader's sampler skips indices."""
    if hasattr(loader, "start_at"):
        loader.start_at(steps)
    elif isinstance(getattr(loader, "sampler", None), EpochShuffleSampler):
        loader.sampler.skip = steps * loader.batch_size
    else:
        raise ConfigError(f"cannot resume mid-epoch with a {type(loader).__name__}; resume from an epoch's end")


def compile_network(network: nn.Module) -> None:
    """``trainer.compile``: ``torch.compile`` the network's ``forward_features`` and ``forward_head`` in place.

    The classifier calls these two methods, never ``network.forward``, so ``torch.compile(network)`` would
    compile nothing that runs. The module itself is not wrapped, so its ``state_dict`` keeps its key names (no
    ``_orig_mod.``); the front-end, normalisation and augmentation stay eager.
    """
    network.forward_features = torch.compile(network.forward_features)
    network.forward_head = torch.compile(network.forward_head)


@torch.no_grad()
def fit_normalizer(model: Classifier, data: Data, cfg: Config, device: torch.device) -> None:
    """Per-frequency (audio) or per-channel (images) statistics from the training split only, unaugmented
    (``per_utterance`` fits nothing: each clip is its own reference)."""
    if cfg.frontend.normalize in ("none", "per_utterance"):
        return
    batches = modality_of(cfg).normalizer_batches(cfg, data)
    model.norm.fit(model.frontend(batch.wave.to(device)) for batch in batches)


def train_one_epoch(model: Classifier, loader, optimizer, scheduler, scaler, cfg: Config, device: torch.device,
                    *, epoch: int, show: bool, dist: DistContext | None = None,
                    report: Callable[[str], None] | None = None, start_step: int = 0, carry: dict | None = None,
                    checkpoint: Callable[[int, dict], None] | None = None,
                    threads: ThreadAdapter | None = None, ema: WeightEMA | None = None) -> dict[str, float]:
    """One pass over the training loader; returns mean loss (and accuracy for multiclass), over all processes
    of a distributed run (``dist``), and how fast it went: ``train_time_s``, ``train_samples``,
    ``samples_per_s`` and ``data_wait``, the fraction of that time this process spent waiting for the next
    batch (a device that waits for data shows up here).

    ``show`` draws a progress bar; without one, ``report`` gets a plain progress line every
    ``trainer.log_every_s`` seconds.

    A resumed epoch starts at ``start_step`` (the loader skips the batches before it) with the sums ``carry``
    saved with it; every ``trainer.checkpoint_every_steps`` steps before the last, ``checkpoint(steps_done,
    sums)`` saves this process's sums so far. ``ema`` (``trainer.ema_decay``) is updated after every step."""
    task, tr = get_task(cfg.data.task), cfg.trainer
    model.train()
    mixup = getattr(model, "module", model).mixup  # the classifier's, also inside DistributedDataParallel
    carry = carry or {}
    total_loss, correct, seen = carry.get("total_loss", 0.0), carry.get("correct", 0), carry.get("seen", 0)
    steps = len(loader) if not tr.max_steps_per_epoch else min(len(loader), tr.max_steps_per_epoch)
    if start_step:
        skip_batches(loader, start_step)
    batches = iter(progress(loader, show, f"epoch {epoch}", total=steps - start_step))
    line = ProgressLine(report, epoch=epoch, steps=steps, every_s=0.0 if show else tr.log_every_s)  # or a bar
    started, wait = time.perf_counter() - carry.get("elapsed", 0.0), carry.get("wait", 0.0)
    for step in range(start_step, steps):
        if threads is not None:
            threads.update()
        t0 = time.perf_counter()
        batch = next(batches, None)
        wait += time.perf_counter() - t0
        if batch is None:
            break
        wave = batch.wave.to(device, non_blocking=True)
        target = batch.target.to(device, non_blocking=True)
        mix = mixup.draw(wave.shape[0], device)
        with autocast(device, tr.precision):
            logits = model(wave, mix=mix)
        if mix is None:
            loss = task.loss(logits, target)
        else:
            perm, lam = mix
            loss = lam * task.loss(logits, target) + (1 - lam) * task.loss(logits, target[perm])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch} step {step}; lower optim.lr or set "
                                     "trainer.grad_clip (the last good checkpoint is kept)")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if tr.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update()
        total_loss += loss.item() * wave.shape[0]
        seen += wave.shape[0]
        if task.name == "multiclass" and mix is None:
            correct += (logits.argmax(1) == target).sum().item()
        line.update(step + 1, total_loss / seen)
        every = tr.checkpoint_every_steps
        if checkpoint is not None and every and (step + 1) % every == 0 and step + 1 < steps:
            checkpoint(step + 1, dict(total_loss=total_loss, correct=correct, seen=seen, wait=wait,
                                      elapsed=time.perf_counter() - started))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - started
    if dist is not None:
        total_loss, correct, seen = dist.all_reduce_sum([total_loss, correct, seen])
    out = {"train_loss": total_loss / max(seen, 1)}
    if task.name == "multiclass" and cfg.augment.mixup_alpha == 0:
        out["train_accuracy"] = correct / max(seen, 1)
    out.update(train_time_s=elapsed, train_samples=int(seen), samples_per_s=seen / max(elapsed, 1e-9),
               data_wait=wait / max(elapsed, 1e-9), threads=torch.get_num_threads())
    return out


def _improved(value: float, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def _unsaved(e: WriteFailure, run_dir: Path, *, saved: int) -> EnvironmentFailure:
    """A checkpoint that cannot be written ends the run in one line: what failed, and how to continue."""
    once = "once space is freed" if e.disk_full else f"once {run_dir} is writable again"
    if saved == 0:
        return EnvironmentFailure(f"{e}; no epoch was saved: train again {once}")
    return EnvironmentFailure(f"{e}; checkpoints/last.pt holds epoch {saved}: `audiocnn train --resume {run_dir}` "
                              f"continues from there {once}")


def train(cfg: Config | None, *, resume: str | Path | None = None, overrides: Sequence[str] = (),
          quiet: bool = False) -> Trained:
    """Train a recipe (or resume a run): the run folder, its best and last checkpoints, metrics.csv and log.txt.

    The test splits are evaluated, and the report written, by :func:`audiocnn.pipelines.train` (what
    ``audiocnn train`` runs), with the data this returns.

    A resumed run restores model, optimizer, scheduler, RNG states and epoch from ``checkpoints/last.pt``,
    so it finishes with the same metrics as an uninterrupted run with the same seed.

    ``overrides`` (with ``resume`` only) change keys of :data:`audiocnn.config.RESUME_KEYS`, which touch neither
    model nor data: ``trainer.epochs=N`` extends the run (or ends it sooner, not before the epochs it has done).
    The new values go into config.yaml and the checkpoints. A schedule that does not depend on the length
    (``none``, ``step``, warm-up) continues as if the run had been planned that long; ``cosine`` is laid out
    again over the new length, so the extended epochs get the learning rate of a run planned for N epochs from
    the start (the epochs done followed the old curve, which may have decayed to zero: the rate rises again);
    ``onecycle`` cannot be extended.

    Launched by torchrun, every process runs this function and trains one DistributedDataParallel replica
    (:mod:`audiocnn.engine.distributed` says what changes); rank 0 alone writes the run folder.
    """
    state = None
    if resume is None and cfg is not None:
        resume = elastic_resume(cfg.trainer.output_dir)  # a torchrun --max-restarts restart: the run it began
    if resume is not None:
        state = load_checkpoint(Path(resume) / "checkpoints" / "last.pt")
        cfg = resume_config(state["config"], list(overrides))
        _check_new_length(cfg, state)
    elif overrides:
        raise ConfigError("overrides without resume: apply them to the recipe (audiocnn.config.load_config)")
    check_recipe(cfg)  # before any data is decoded or a folder made
    check_loggers(cfg.trainer.loggers)
    if resume is None:  # a read-only output folder, too
        check_writable(cfg.trainer.output_dir, setting="trainer.output_dir")
    ctx = setup(cfg.trainer.device)
    threads = ThreadAdapter(cfg.trainer.threads)  # trainer.threads, else automatic (core/threads.py)
    try:
        return _train(cfg, ctx, state=state, run_dir=None if resume is None else Path(resume), quiet=quiet,
                      threads=threads)
    finally:
        threads.restore()
        ctx.close()


def _check_new_length(cfg: Config, state: dict) -> None:
    """A resumed run's ``trainer.epochs``: not fewer than it has done; longer only for a schedule that can."""
    epochs, done, planned = cfg.trainer.epochs, state["epoch"], state["config"]["trainer"]["epochs"]
    if epochs < done:
        raise ConfigError(f"trainer.epochs={epochs}, but the run has trained {done} epochs already; give {done} "
                          "or more")
    if epochs > planned and cfg.optim.scheduler == "onecycle":
        raise ConfigError(f"trainer.epochs={epochs}: the run's onecycle schedule is laid out over {planned} epochs "
                          "and cannot run longer; start a new run (or train with optim.scheduler=cosine)")


def _carried(state: dict, ctx: DistContext) -> dict | None:
    """This process's running sums of the epoch a mid-epoch checkpoint stopped in. Resumed with another
    number of processes, rank 0 takes them all (they are added over the processes at the epoch's end)."""
    partial = state.get("partial")
    if not partial:
        return None
    if len(partial) == ctx.world_size:
        return partial[ctx.rank]
    if ctx.rank:
        return {"wait": 0.0, "elapsed": 0.0}
    keys = ("total_loss", "correct", "seen")
    return {**{k: sum(p[k] for p in partial) for k in keys}, "wait": partial[0]["wait"],
            "elapsed": partial[0]["elapsed"]}


def _relayout_schedule(scheduler, optimizer: torch.optim.Optimizer) -> None:
    """After ``trainer.epochs`` changed on resume: the learning rate the schedule, rebuilt over the new length,
    gives at the step reached (the optimizer's saved one came from the old length)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * factor(scheduler.last_epoch)


def _train(cfg: Config, ctx: DistContext, *, state: dict | None, run_dir: Path | None, quiet: bool,
           threads: ThreadAdapter) -> Trained:
    tr = cfg.trainer
    seed_everything(tr.seed + ctx.rank, tr.deterministic)  # each process its own dropout, masks, mixup
    if state is None and cfg.data.name == "shards" and not cfg.data.streams:  # fixed for the run (and its resumes)
        cfg.data.streams = ctx.world_size * max(cfg.data.num_workers, 1)
    device = ctx.device
    messages: list[str] = []
    # A missing dataset or bad file fails before a run folder exists. Rank 0 generates and decodes first.
    data = ctx.in_turn(lambda: load_data(cfg, log=messages.append))
    train_loader, val_loader = data.loaders["train"], data.loaders.get("val")
    if ctx.enabled:  # data.loaders stay whole for the test evaluation and report on rank 0
        train_loader = shard_loader(train_loader, cfg, ctx, train=True)
        if val_loader is not None:
            val_loader = shard_loader(val_loader, cfg, ctx, train=False)
    if state is None:
        if ctx.is_main:
            run_dir = make_run_dir(cfg.trainer.output_dir, cfg.name or "run")
            save_config(cfg, run_dir / "config.yaml")
            write_env(run_dir)
            remember_elastic_run(cfg.trainer.output_dir, run_dir)
        run_dir = Path(ctx.broadcast_object(str(run_dir) if ctx.is_main else None))
    log = RunLogger(run_dir, quiet=quiet, enabled=ctx.is_main, loggers=tr.loggers)
    show = show_progress(tr.progress) and ctx.is_main
    log.info(f"run: {run_dir} | device: {device} | precision: {tr.precision}")
    if ctx.enabled:
        log.info(f"distributed: {ctx.world_size} processes ({torch.distributed.get_backend()}) | global batch "
                 f"{cfg.data.batch_size} = {ctx.world_size} x {cfg.data.batch_size // ctx.world_size}")
    for msg in messages:
        log.info(msg)
    labels, task = data.splits.labels, get_task(cfg.data.task)
    if ctx.is_main:
        write_json(run_dir / "labels.json", {"task": task.name, "labels": labels})
        if write_skipped(run_dir, data.splits.skipped):
            log.info(f"skipped {len(data.splits.skipped)} bad file(s) (data.on_error: skip): listed in "
                     f"{run_dir / 'skipped.csv'}")
    model = build_classifier(cfg, labels, pretrained=state is None).to(device)
    if tr.channels_last and model.network.dims == 2:
        model.network.to(memory_format=torch.channels_last)
    if state is None:
        if ctx.is_main:
            fit_normalizer(model, data, cfg, device)
        ctx.broadcast_tensors(list(model.norm.buffers()))
        n_params = sum(p.numel() for p in model.parameters())
        log.info(f"model: {cfg.model.name} | {n_params:,} parameters | task: {task.name}")
    else:  # with EMA, "model" holds the averaged weights and "raw_model" the trained ones
        model.load_state_dict(state.get("raw_model", state["model"]))
    ema = WeightEMA(model, decay=tr.ema_decay) if tr.ema_decay else None
    if ema is not None and state is not None:
        ema.load_state_dict(state["model"], updates=state.get("ema_updates", 0))
    if tr.compile:
        compile_network(model.network)
    net = ctx.wrap(model)  # DistributedDataParallel with several processes, else the model itself

    steps = len(train_loader) if not tr.max_steps_per_epoch else min(len(train_loader), tr.max_steps_per_epoch)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, steps)
    scaler = torch.amp.GradScaler(device.type, enabled=tr.precision == "fp16" and device.type == "cuda")
    monitor, mode = monitor_of(cfg)
    start_epoch, best, best_epoch, stale = 0, None, 0, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, best_epoch, stale = state["epoch"], state["best"], state["best_epoch"], state["stale"]
        saved = state.get("rng_ranks") or [state["rng"]]
        same_world = len(saved) == ctx.world_size
        restore_rng(saved[ctx.rank] if same_world else state["rng"], train_loader.generator)
        if not same_world and ctx.rank > 0:  # resumed with another number of processes: a stream of its own
            seed_everything(int(np.random.SeedSequence([tr.seed, ctx.rank, start_epoch]).generate_state(1)[0]),
                            tr.deterministic)
        log.truncate(start_epoch)
        log.info(f"resumed at epoch {start_epoch}" + (f", step {state['step']}" if state.get("step") else "")
                 + f" (best {monitor} {best})"
                 + (f" on {ctx.world_size} process(es), {len(saved)} before" if not same_world else ""))
        changes = resume_changes(state["config"], cfg)
        if changes:
            log.info(f"changed on resume: {', '.join(changes)}")
            if ctx.is_main:
                save_config(cfg, run_dir / "config.yaml")
        if tr.epochs != state["config"]["trainer"]["epochs"]:
            _relayout_schedule(scheduler, optimizer)

    ckpt_dir = run_dir / "checkpoints"

    def save(epoch_done: int, row: dict, *, improved: bool, step: int = 0, sums: dict | None = None) -> None:
        """last.pt (and best.pt when ``improved``; at an epoch's end with ``trainer.keep_epochs``, epoch_NNN.pt):
        after ``epoch_done`` epochs and ``step`` steps of the next, with every process's running sums of that epoch
        (``sums``) and random states."""
        rng = ctx.all_gather_object(capture_rng(train_loader.generator))
        partial = ctx.all_gather_object(sums) if step else None
        if not ctx.is_main:  # the plain model: no DDP "module." prefix, loads with any number of processes
            return
        weights = dict(model=model) if ema is None else \
            dict(model=ema.averaged, raw_model=model.state_dict(), ema_updates=ema.updates)
        ckpt = dict(**weights, config=config_to_dict(cfg), labels=labels, task=task.name, epoch=epoch_done,
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    scaler=scaler.state_dict(), rng=rng[0], **({"rng_ranks": rng} if ctx.enabled else {}),
                    best=best, best_epoch=best_epoch, stale=stale,
                    metrics={k: v for k, v in row.items() if isinstance(v, (int, float))},
                    **({"step": step, "partial": partial} if step else {}))
        try:
            if improved:
                save_checkpoint(ckpt_dir / "best.pt", **ckpt)
            save_checkpoint(ckpt_dir / "last.pt", **ckpt)
            if tr.keep_epochs and not step:
                save_checkpoint(ckpt_dir / f"epoch_{epoch_done:03d}.pt", **ckpt)
        except WriteFailure as e:  # last.pt still holds the one before
            raise _unsaved(e, run_dir, saved=epoch_done) from e

    start_step, carry = (state.get("step", 0), _carried(state, ctx)) if state is not None else (0, None)
    prev_row = state["metrics"] if state is not None else {}
    for epoch in range(start_epoch + 1, tr.epochs + 1):
        if hasattr(train_loader.dataset, "set_epoch"):
            train_loader.dataset.set_epoch(epoch)
        t0 = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        row.update(train_one_epoch(net, train_loader, optimizer, scheduler, scaler, cfg, device, epoch=epoch,
                                   show=show, dist=ctx, report=log.info, start_step=start_step, carry=carry,
                                   checkpoint=lambda step, sums: save(epoch - 1, prev_row, improved=False,
                                                                      step=step, sums=sums),
                                   threads=threads, ema=ema))
        start_step, carry = 0, None
        ctx.average_batchnorm(model)
        if ema is not None:
            ctx.average_batchnorm(ema.averaged)
        # With EMA the averaged weights are the run's model (val_*), the trained ones raw_val_*.
        evaluated = [(model, "val_")] if ema is None else [(ema.averaged, "val_"), (model, "raw_val_")]
        for weights, prefix in evaluated if val_loader is not None else ():
            out, tgt, loss = evaluate_loader(weights, val_loader, task.name, device, precision=tr.precision)
            out, tgt, loss = ctx.gather_clips(out, tgt, loss)  # the whole split, each clip once
            row[f"{prefix}loss"] = loss
            row.update({f"{prefix}{k}": v for k, v in task.metrics(out, tgt, labels, tr.top_k).items()})
        row["time_s"] = time.perf_counter() - t0
        value = row.get(monitor)
        if monitor not in row and epoch == start_epoch + 1:
            log.info(f"warning: the monitored metric {monitor!r} is not among the epoch metrics "
                     f"({', '.join(row)}); the last epoch is kept as best")
        improved = _improved(value, best, mode) if monitor in row else True
        if improved:
            best, best_epoch, stale = value, epoch, 0
        else:
            stale += 1
        log.log_epoch(row)
        log.info(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
                 + (" *" if improved else ""))
        save(epoch, row, improved=improved)
        prev_row = row
        if tr.early_stopping and stale >= tr.early_stopping:
            log.info(f"early stopping: {monitor} has not improved for {stale} epochs (best {best} at epoch {best_epoch})")
            break

    log.close()
    # Training is over for every process; what follows needs no collectives. The DDP wrapper holds the process
    # group (and gloo work holding tensors): freed first, or its destruction at interpreter exit can abort.
    del net
    gc.collect()
    ctx.close(wait=True)
    return Trained(run_dir, data, ctx.is_main, device, cfg)
