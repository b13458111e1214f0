"""Distributed training and embedding: ``torchrun`` with 2 processes (gloo, CPU, loopback) against one process.

The comparison recipe (``EXACT``) leaves one process and two the same arithmetic: the same clips per step (the
global batch of 8 is split 2 x 4, and the two shards of a step are exactly the single process's batch), the same
crops (seeded by seed, epoch and clip), group norm (per-clip statistics, so no batch-norm difference between a
batch of 8 and two of 4), no dropout, masking or mixup (no per-process random draws), and a constant learning rate
(so a 2-epoch run with 2 more epochs added is an uninterrupted 4-epoch run). DistributedDataParallel averages the
two shards' mean gradients, which is the mean gradient of the 8 clips; what is left is the order of floating-point
sums, so the differences are float32 rounding carried through the steps, not training noise. Such rounding
mostly stays near 1e-7 in a loss, but ReLU and max pooling have kinks: where a unit crosses one, a rounding-sized
change in its input sends a full-sized change into the gradient, and the runs part. Measured on this
configuration with two correct single-process runs that differ only in thread count: 1e-7 after 4 epochs at
lr 0.01, 1.2e-3 after 6 (and at lr 0.03 after 4 epochs, 2 processes then 1 against 1 throughout: 2.6e-3 here,
1.8e-3 on CI's machine, so lr 0.03 gave way to 0.01, a third of the jump a kink can cause in a step).
LOSS_TOL = 5e-3 is above that rounding and far below what a real difference in arithmetic gives: per-process
batch-norm statistics (batch 4 against 8) at the same lr and 4 epochs, 0.16 in the training loss. Every
process computes with one thread. The optimiser is SGD: Adam divides by each gradient's
running RMS and so turns rounding in near-zero gradients into full-size steps (with AdamW one and two processes
differed by 1e-3 in validation loss).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from audiocnn.config import load_config
from audiocnn.data import DataError
from audiocnn.data.loader import make_loader
from audiocnn.pipelines import train
from audiocnn.plots import TIMING_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "quickstart.yaml")
TINY = ["data.num_classes=4", "data.num_per_class=12", "data.duration=0.5", "data.sample_rate=8000",
        "data.batch_size=8", "model.name=cnn_tiny", "model.args.width=8", "trainer.progress=never",
        "trainer.report=false"]
EXACT = ["model.args.norm_layer=groupnorm", "model.args.drop_rate=0", "optim.scheduler=none", "optim.name=sgd",
         "optim.lr=0.01"]
LOSS_TOL = 5e-3
"""Largest difference allowed between one and two processes in a loss (float32 rounding; see the module text)."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Training in this process uses one thread, as torchrun's processes (OMP_NUM_THREADS=1)."""
    threads, env = torch.get_num_threads(), os.environ.get("AUDIOCNN_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["AUDIOCNN_NUM_THREADS"] = "1"  # what training in this process resolves
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("AUDIOCNN_NUM_THREADS")
    else:
        os.environ["AUDIOCNN_NUM_THREADS"] = env


# --- sharding, without processes ------------------------------------------------------------------------------------

class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        return index[0] if isinstance(index, tuple) else index


def _batches(n: int, *, train: bool, batch_size: int, rank: int = 0, world_size: int = 1, epoch: int = 3):
    ds = _Indices(n)
    ds.set_epoch(epoch)
    loader = make_loader(ds, train=train, cfg=SimpleNamespace(batch_size=batch_size, num_workers=0), seed=5,
                         collate_fn=list, rank=rank, world_size=world_size)
    return [list(b) for b in loader]


@pytest.mark.parametrize("n", [29, 32, 6])
@pytest.mark.parametrize("world_size", [2, 4])
def test_shards_make_up_the_single_process_batches(n, world_size):
    single = _batches(n, train=True, batch_size=8)
    ranks = [_batches(n, train=True, batch_size=8, rank=r, world_size=world_size) for r in range(world_size)]
    assert len({len(b) for b in ranks}) == 1, "every rank must take the same number of steps"
    if n > 8:  # drop_last: step k of all ranks together is exactly the single process's batch k
        assert len(ranks[0]) == len(single) == n // 8
        for k, batch in enumerate(single):
            joined = [i for part in zip(*(r[k] for r in ranks)) for i in part]
            assert joined == batch
    else:  # one short batch, padded by repeating the start of the permutation, as DistributedSampler
        assert len(ranks[0]) == 1
        joined = [i for part in zip(*(r[0] for r in ranks)) for i in part]
        assert joined[:n] == single[0] and set(joined[n:]) <= set(single[0]) and len(joined) < n + world_size
    # another epoch, another permutation, on every rank alike
    assert _batches(n, train=True, batch_size=8, rank=0, world_size=world_size, epoch=4) != ranks[0]


def test_evaluation_shards_cover_every_clip_once():
    for n in (1, 7, 8, 13):
        ranks = [_batches(n, train=False, batch_size=6, rank=r, world_size=3) for r in range(3)]
        seen = sorted(i for r in ranks for b in r for i in b)
        assert seen == list(range(n))


def test_global_batch_must_divide_among_processes():
    with pytest.raises(DataError, match="data.batch_size=6 is the global batch"):
        _batches(20, train=True, batch_size=6, rank=0, world_size=4)


# --- torchrun --------------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(cwd: Path, *args: str, nproc: int = 2, status: int = 0) -> str:
    """``python -m torch.distributed.run --nproc_per_node=2 -m audiocnn ARGS`` on loopback; its output, after
    checking its exit status (1: some inputs failed)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", MASTER_ADDR="127.0.0.1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "audiocnn", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=240)
    assert proc.returncode == status, proc.stdout
    return proc.stdout


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dist")


def overrides(base: Path, out: str, *extra: str) -> list[str]:
    """The tiny recipe on data generated and decoded once for the module; runs go to ``base/out``."""
    return [f"data.root={base / 'synthetic'}", f"data.cache_dir={base / 'cache'}",
            f"trainer.output_dir={base / out}", *TINY, *extra]


def the_run(base: Path, out: str) -> Path:
    runs = list((base / out).glob("quickstart/*"))
    assert len(runs) == 1, runs
    return runs[0]


def metrics(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def files(run_dir: Path) -> set[str]:
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}


def add_epochs(run_dir: Path, epochs: int) -> None:
    """Stands in for a run killed after its last epoch: the same run with epochs still to go (the learning rate
    is constant, so nothing else depends on the total)."""
    path = run_dir / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["config"]["trainer"]["epochs"] = epochs
    torch.save(state, path)


def assert_close_rows(got: list[dict], want: list[dict]) -> dict[str, float]:
    """Same epochs, lr and accuracies (within one clip of 8), losses within LOSS_TOL; the largest differences."""
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    worst: dict[str, float] = {}
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in g:
            worst[k] = max(worst.get(k, 0.0), abs(g[k] - w[k]))
    for k, d in worst.items():
        tol = 0.0 if k in ("epoch", "lr") else LOSS_TOL if k.endswith("loss") else 1 / 8  # a clip may flip on a tie
        assert d <= tol, (k, d, got, want)
    return worst


@pytest.fixture(scope="module")
def reference(base) -> Path:
    """One process, 4 epochs, in this process."""
    return train(load_config(RECIPE, overrides(base, "ref", *EXACT, "trainer.epochs=4")), quiet=True)


def test_two_processes_match_one_and_resume_with_one(base, reference):
    out = torchrun(base, "train", RECIPE, *overrides(base, "ddp", *EXACT, "trainer.epochs=2"))
    run = the_run(base, "ddp")
    ref = metrics(reference)

    worst = assert_close_rows(metrics(run), ref[:2])
    print("two processes vs one, epochs 1-2, largest differences:", worst)

    # Rank 0 alone wrote: the files of a single-process run, each line of the log once, one run folder.
    assert files(run) == files(reference)
    log = (run / "log.txt").read_text()
    assert log.count("epoch 1 |") == 1 and log.count("epoch 2 |") == 1
    assert "distributed: 2 processes (gloo) | global batch 8 = 2 x 4" in log
    assert out.count("run folder:") == 1 and out.count("epoch 2 |") == 1

    # The checkpoint holds the plain model and loads in one process; its validation metrics are the logged ones,
    # so the gathered validation was the whole split, each clip once, with the same statistics on both ranks.
    raw = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert set(raw["model"]) == set(torch.load(reference / "checkpoints" / "last.pt", weights_only=True)["model"])
    assert not [k for k in raw["model"] if k.startswith("module.") or "_orig_mod." in k]
    assert len(raw["rng_ranks"]) == 2
    from audiocnn.evaluation.evaluate import evaluate_run
    val = evaluate_run(run, split="val", checkpoint="last", device="cpu", quiet=True)
    last = metrics(run)[-1]
    print("val loss: logged", last["val_loss"], "re-evaluated", val["loss"])
    assert abs(val["loss"] - last["val_loss"]) < 2e-6 and val["accuracy"] == last["val_accuracy"], (val, last)

    # Resumed with one process, it finishes as the uninterrupted single-process run.
    add_epochs(run, 4)
    train(None, resume=run, quiet=True)
    worst = assert_close_rows(metrics(run), ref)
    print("2 processes for epochs 1-2, then 1, vs 1 throughout, largest differences:", worst)
    best = max(r["val_accuracy"] for r in ref[:2])
    assert f"resumed at epoch 2 (best val_accuracy {best:g}) on 1 process(es), 2 before" in (run / "log.txt").read_text()
    got, want = (json.loads((r / "eval" / "test_metrics.json").read_text()) for r in (run, reference))
    print("test split, best checkpoint:", {k: (got[k], want[k]) for k in ("loss", "accuracy")})
    assert abs(got["loss"] - want["loss"]) < LOSS_TOL and got["accuracy"] == want["accuracy"]


def test_one_process_resumed_with_two(base, reference):
    run = train(load_config(RECIPE, overrides(base, "single2", *EXACT, "trainer.epochs=2")), quiet=True)
    add_epochs(run, 4)
    out = torchrun(base, "train", "--resume", str(run))
    assert "resumed at epoch 2" in out and "on 2 process(es), 1 before" in out
    assert out.count("epoch 3 |") == 1 and out.count("run folder:") == 1
    worst = assert_close_rows(metrics(run), metrics(reference))
    print("1 process for epochs 1-2, then 2, vs 1 throughout, largest differences:", worst)
    assert len(list((base / "single2").glob("quickstart/*"))) == 1


@pytest.fixture(scope="module")
def bn_run(base) -> Path:
    """Two processes with batch norm (batches of 4 each) and dropout: the quickstart network as it is, at a learning
    rate where the validation loss depends strongly on the batch-norm statistics (without averaging them over the
    processes, the check below is off by 0.09)."""
    torchrun(base, "train", RECIPE, *overrides(base, "bn", "trainer.epochs=2", "optim.lr=0.01"))
    return the_run(base, "bn")


def test_batchnorm_statistics_agree_across_processes(bn_run):
    from audiocnn.evaluation.evaluate import evaluate_run

    val = evaluate_run(bn_run, split="val", checkpoint="last", device="cpu", quiet=True)
    last = metrics(bn_run)[-1]
    print("val loss: logged", last["val_loss"], "re-evaluated", val["loss"])
    assert abs(val["loss"] - last["val_loss"]) < 2e-6 and val["accuracy"] == last["val_accuracy"], (val, last)


def test_embed_with_two_processes(base, bn_run, tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(base / "synthetic", inputs, ignore=shutil.ignore_patterns("*.json"))
    (inputs / "up" / "broken.wav").write_bytes(b"not audio")
    wavs = sorted(inputs.rglob("*.wav"))

    from audiocnn.embed import embed_files, load_embedder
    embed_files(load_embedder(str(bn_run), device="cpu"), [inputs], tmp_path / "one", log=None, progress="never")
    # broken.wav fails, the others are embedded: exit status 1 (some inputs failed), on every process
    out = torchrun(tmp_path, "embed", str(bn_run), str(inputs), "--out", str(tmp_path / "two"), "--progress", "never",
                   status=1)
    assert out.count("embedded ") == 1 and "1 error(s)" in out and "1 of " in out

    def manifest(d: Path) -> list[dict]:
        with open(d / "manifest.csv") as f:
            return list(csv.DictReader(f))

    assert manifest(tmp_path / "two") == manifest(tmp_path / "one")
    assert len(manifest(tmp_path / "two")) == len(wavs)
    for r in manifest(tmp_path / "two"):
        if r["status"] == "ok":
            np.testing.assert_allclose(np.load(tmp_path / "two" / r["clip"]), np.load(tmp_path / "one" / r["clip"]),
                                       rtol=1e-5, atol=1e-6)

    # Re-running skips what is done (whichever process did it) and keeps the whole manifest.
    stamp = (tmp_path / "two" / manifest(tmp_path / "two")[0]["frames"]).stat().st_mtime_ns
    out = torchrun(tmp_path, "embed", str(bn_run), str(inputs), "--out", str(tmp_path / "two"), "--progress", "never",
                   status=1)
    assert f"{len(wavs) - 1} done before" in out
    assert (tmp_path / "two" / manifest(tmp_path / "two")[0]["frames"]).stat().st_mtime_ns == stamp
    assert manifest(tmp_path / "two") == manifest(tmp_path / "one")


# --- torch.compile ---------------------------------------------------------------------------------------------------

def _cxx() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")


@pytest.mark.skipif(_cxx() is None, reason="torch.compile (inductor) needs a C++ compiler on CPUs; none found")
def test_compiled_network_matches_eager_and_saves_plain_keys(tmp_path):
    from audiocnn.core.checkpoint import load_checkpoint, save_checkpoint
    from audiocnn.engine.loop import compile_network
    from audiocnn.build import build_classifier

    cfg = load_config(RECIPE, [*TINY, *EXACT])
    torch.manual_seed(0)
    model = build_classifier(cfg, ["a", "b", "c", "d"]).eval()
    keys = list(model.state_dict())
    wave = torch.randn(3, 4000)
    with torch.no_grad():
        eager = model(wave)
        compile_network(model.network)
        compiled = model(wave)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    assert list(model.state_dict()) == keys
    save_checkpoint(tmp_path / "c.pt", model=model, config={}, labels=["a", "b", "c", "d"], task="multiclass", epoch=1)
    fresh = build_classifier(cfg, ["a", "b", "c", "d"]).eval()
    fresh.load_state_dict(load_checkpoint(tmp_path / "c.pt")["model"])
    with torch.no_grad():
        torch.testing.assert_close(fresh(wave), eager, rtol=1e-5, atol=1e-6)
