"""Run by tests/test_shards.py under torchrun (gloo): each process iterates its share of a shard set's training
split, with loader workers, for two epochs; rank 0 writes what every rank saw, batch by batch, to ``OUT``.

    torchrun --nproc_per_node=2 tests/shard_ranks.py ROOT_URL OUT WORKERS
"""
import json
import sys

import torch.distributed as dist

from audiocnn.config import load_config
from audiocnn.data.shards import load_shards, shard_loaders
from audiocnn.engine.distributed import setup

ROOT, OUT, WORKERS = sys.argv[1], sys.argv[2], int(sys.argv[3])
RECIPE = sys.argv[4]

ctx = setup("cpu")
cfg = load_config(RECIPE, ["data.name=shards", f"data.root={ROOT}", "data.duration=0.5", "data.batch_size=8",
                           "data.streams=4", "data.shuffle_buffer=3", f"data.num_workers={WORKERS}"]).data
loader = shard_loaders(cfg, load_shards(ROOT), seed=0)["train"].for_rank(ctx.rank, ctx.world_size)
seen = {}
for epoch in (1, 2):
    loader.dataset.set_epoch(epoch)
    seen[epoch] = [sorted((b.wave[:, 0] * 256 - 1).round().long().tolist()) for b in loader]
everyone = [None] * ctx.world_size
dist.all_gather_object(everyone, seen)
if ctx.rank == 0:
    with open(OUT, "w") as f:
        json.dump(everyone, f)
ctx.close()
