"""Fixed-length waves and encoded targets, batched for training and evaluation.

Training takes one random crop per clip per epoch, reproducible from (seed, epoch, index);
evaluation takes a centre crop or sliding windows (``Batch.clip_index`` maps windows to clips).

Example:
    >>> loaders = build_loaders(cfg.data, splits, AudioCache(cfg.data.cache_dir, 16000), seed=0)
    >>> for epoch in range(3):
    ...     loaders["train"].dataset.set_epoch(epoch)
    ...     for batch in loaders["train"]:
    ...         batch.wave.shape, batch.target.shape, batch.clip_index.shape   # (B, T), (B,), (B,)
"""
from __future__ import annotations

from typing import Any, Iterator, Literal, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from audiocnn.audio.crop import fix_length, sliding_windows
from audiocnn.data.cache import AudioCache, prepare_splits
from audiocnn.data.splits import DataError, Example, Splits
from audiocnn.tasks import get_task

__all__ = ["AudioDataset", "Batch", "EpochShuffleSampler", "build_loaders", "collate"]

class AudioDataset(Dataset):
    """Clips from a cache, cut to ``num_samples``.

    Args:
        examples: the clips (decode them first with ``prepare``).
        cache: an :class:`AudioCache` at the model's sample rate.
        task: how targets are turned into tensors (:meth:`audiocnn.tasks.Task.target_tensor`).
        num_samples: crop length.
        mode: ``train``: a random crop, reproducible from (seed, epoch, index); ``center``: the
            centre crop (shorter clips centred in zeros); ``windows``: all sliding windows.
        hop_samples: window hop for ``windows``.
        seed: seed of the random crops.

    ``dataset[i]`` is ``(wave, target)``: wave ``(num_samples,)`` float32, or
    ``(n_windows, num_samples)`` in ``windows`` mode. The index may also be ``(i, epoch)``, which is
    how :class:`EpochShuffleSampler` passes the epoch to DataLoader workers.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        cache: AudioCache,
        *,
        task: str,
        num_samples: int,
        mode: Literal["train", "center", "windows"] = "center",
        hop_samples: int | None = None,
        seed: int = 0,
    ):
        if mode not in ("train", "center", "windows"):
            raise ValueError(f"mode must be 'train', 'center' or 'windows', got {mode!r}")
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.examples = list(examples)
        self.cache = cache
        self.task = task
        self._task = get_task(task)  # an unknown task fails here, naming the choices
        self.num_samples = int(num_samples)
        self.mode = mode
        self.hop_samples = int(hop_samples or num_samples)
        self.seed = int(seed)
        self.epoch = 0
        """The epoch the next random crops (and the next train-loader pass) use."""

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch of the random crops (and of the shuffle, via EpochShuffleSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, epoch = index if isinstance(index, tuple) else (index, self.epoch)
        ex = self.examples[i]
        wave = self.cache.load(ex.path)
        if self.mode == "train":
            rng = np.random.default_rng([self.seed, int(epoch), int(i)])
            cut = fix_length(wave, self.num_samples, mode="random", rng=rng)
        elif self.mode == "center":
            cut = fix_length(wave, self.num_samples, mode="center")
        else:
            cut = sliding_windows(wave, self.num_samples, self.hop_samples)
        return torch.from_numpy(cut), self._task.target_tensor(ex.target)


class EpochShuffleSampler(Sampler):
    """Shuffles ``dataset`` with (seed, epoch) and yields ``(index, epoch)``.

    The epoch is ``dataset.epoch`` when a pass starts, then ``dataset.epoch`` moves on by one: a
    loop that calls ``set_epoch`` gets exactly those epochs (a resumed run repeats the order and
    crops of an uninterrupted one); a loop that never calls it still gets new crops every epoch.

    Distributed (``world_size > 1``): every rank draws the same permutation and takes its entries
    ``rank, rank + world_size, ...``, so the shards are disjoint and the ``k``-th batches of ``b``
    of all ranks together hold the clips of a single process's ``k``-th batch of ``b * world_size``.
    So that every rank takes the same number of steps, the permutation is first cut to a multiple
    of ``world_size`` (``drop_last``: the cut clips were in the partial last batch, dropped anyway)
    or padded by repeating its start, as ``torch.utils.data.DistributedSampler`` does.
    """

    def __init__(self, dataset: AudioDataset, seed: int, *, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.dataset = dataset
        self.seed = int(seed)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)
        self.skip = 0
        """Entries the next pass leaves out at its start (a run resumed mid-epoch); later passes take all."""

    def __len__(self) -> int:
        n, w = len(self.dataset), self.world_size
        return n // w if self.drop_last else -(-n // w)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.dataset.epoch
        self.dataset.epoch = epoch + 1
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        if self.world_size > 1:
            size = len(self) * self.world_size
            order = order[:size] if self.drop_last else np.resize(order, size)
            order = order[self.rank::self.world_size]
        order, self.skip = order[self.skip:], 0
        return iter([(int(i), epoch) for i in order])


class Batch(NamedTuple):
    """wave ``(N, num_samples)``; target ``(B, ...)``; clip_index ``(N,)`` int64, the clip of each row
    (``arange(B)`` unless evaluating with sliding windows, where N >= B)."""

    wave: torch.Tensor
    target: torch.Tensor
    clip_index: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))


def collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    """Stack ``(wave, target)`` pairs; window stacks ``(n_windows, T)`` are concatenated row-wise."""
    waves = [w if w.dim() == 2 else w.unsqueeze(0) for w, _ in batch]
    # NumPy, not torch.repeat_interleave: a tiny op, and torch's thread pool costs more than the work here
    clip_index = torch.from_numpy(np.repeat(np.arange(len(batch), dtype=np.int64), [w.shape[0] for w in waves]))
    return Batch(torch.cat(waves, dim=0), torch.stack([t for _, t in batch]), clip_index)


def build_loaders(cfg: Any, splits: Splits, cache: AudioCache, *, seed: int) -> dict[str, DataLoader]:
    """DataLoaders for the non-empty splits.

    Every file is decoded into ``cache`` first (:func:`prepare_splits` with ``cfg.on_error``), so a
    bad file stops the run before training, with the full list, or is skipped with a warning.

    Args:
        cfg: a ``DataConfig`` (sample_rate, duration, eval_crop, window_hop, batch_size,
            num_workers, on_error).
        splits: from ``build_splits``.
        cache: an :class:`AudioCache` at ``cfg.sample_rate``.
        seed: seed of the shuffle, the random crops and the workers.

    Returns:
        ``train``: random crops, shuffled, ``drop_last`` when it has more than one batch;
        ``val``/``test``: ``cfg.eval_crop`` (centre crop or sliding windows), in order.
        All yield :class:`Batch`.
    """
    if cache.sample_rate != cfg.sample_rate:
        raise DataError(f"the audio cache decodes at {cache.sample_rate} Hz but data.sample_rate={cfg.sample_rate}")
    if cfg.batch_size < 1:
        raise DataError(f"data.batch_size={cfg.batch_size} must be at least 1")
    splits = prepare_splits(splits, cache, on_error=cfg.on_error)
    if not splits.train:
        raise DataError(f"dataset {cfg.name!r} has no usable training files; check data.root and the messages above")
    num_samples = max(1, int(round(cfg.duration * cfg.sample_rate)))
    hop = max(1, int(round(cfg.window_hop * cfg.sample_rate)))
    loaders = {}
    for name, examples in splits.parts().items():
        if not examples:
            continue
        mode = "train" if name == "train" else cfg.eval_crop
        ds = AudioDataset(examples, cache, task=splits.task, num_samples=num_samples, mode=mode,
                          hop_samples=hop, seed=seed)
        loaders[name] = make_loader(ds, train=name == "train", cfg=cfg, seed=seed, collate_fn=collate)
    return loaders


def make_loader(ds: Dataset, *, train: bool, cfg: Any, seed: int, collate_fn, rank: int = 0,
                world_size: int = 1) -> DataLoader:
    """The one way loaders are made: seeded epoch shuffling and ``drop_last`` for training only.

    ``rank``/``world_size`` make one process's share of a distributed run: ``cfg.batch_size`` is the
    global batch, of which each rank loads ``batch_size // world_size``; training takes the rank's
    shard of the epoch permutation (:class:`EpochShuffleSampler`), evaluation the clips
    ``rank, rank + world_size, ...`` in order, unpadded, so that gathered outputs hold each clip once.
    """
    if cfg.batch_size % world_size:
        raise DataError(f"data.batch_size={cfg.batch_size} is the global batch and must divide evenly among "
                        f"{world_size} processes; choose a multiple of {world_size}")
    drop_last = train and len(ds) > cfg.batch_size
    if train:
        sampler = EpochShuffleSampler(ds, seed, rank=rank, world_size=world_size, drop_last=drop_last)
    else:
        sampler = range(rank, len(ds), world_size) if world_size > 1 else None
    return DataLoader(
        ds,
        batch_size=cfg.batch_size // world_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=cfg.num_workers,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
        # page-locked batches let the engine's .to(device, non_blocking=True) overlap the copy with compute
        pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.num_workers > 0,
    )
