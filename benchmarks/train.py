"""Training throughput: audiocnn's engine vs a tutorial-style pipeline, same data, same network, same run.

    AUDIOCNN_DATA=../shared/datasets python benchmarks/train.py                     # digits (full) and esc10 (3 epochs)
    AUDIOCNN_DATA=../shared/datasets python benchmarks/train.py --recipes digits --epochs digits=2
    AUDIOCNN_DATA=../shared/datasets python benchmarks/train.py --load             # digits on a busy machine
    AUDIOCNN_DATA=../shared/datasets python benchmarks/train.py --time-to 0.99     # digits: wall time to 99 % test
    ... --markdown train.md                                                         # also write the table

audiocnn: ``audiocnn train RECIPE`` in a subprocess, exactly as a user runs it (decoded once into a cold
cache, waves sliced from memory-mapped arrays, the front-end, normalisation and SpecAugment batched on the
device). Its ``metrics.csv`` gives the training time of every epoch and the fraction of it spent waiting for
the next batch (``data_wait``). It runs once as the recipe is shipped and once per ``--variant`` (default:
``trainer.precision=bf16``, bfloat16 autocast, worth it on CPUs with native bf16 such as this one).

Baseline, written the way tutorials do it: a ``Dataset`` whose ``__getitem__`` loads the file with
``librosa.load`` and computes the recipe's log-mel spectrogram with librosa (per-clip standardised), a
standard shuffled ``DataLoader`` (``--baseline-workers``: each count is run, default 0 and 2, and the faster
one is the reference for the speed-up), and a plain
loop over the same network (the recipe's ``model``, built by audiocnn), AdamW and a cosine schedule with the
recipe's settings, float32. Its time is measured the same way (time per epoch, time inside ``next(loader)``).

``--load``: digits.yaml's epoch time on a busy machine instead (the accuracy comparison is left out). For each load
of ``benchmarks/load.py`` (idle; one process keeping one core busy; two competing torch training processes), and
for each thread setting: audiocnn as shipped (the automatic count, which leaves out cores other processes keep
busy, and its OpenMP wait policy), torch's defaults (a thread per CPU and libgomp's ``GOMP_SPINCOUNT=300000``: how
audiocnn ran before it chose), and ``trainer.threads=1``. Each run is
``--load-epochs`` epochs (median after the first); the table gives each load's epoch time over the idle one of the
same setting, and each setting's over ``trainer.threads=1`` under the same load.

``--time-to ACC``: how long each side takes to a model with test accuracy ``ACC`` on digits' official split.
The tutorial trains what a tutorial trains, fixed here (:data:`TUTORIAL_DIGITS`: digits.yaml's network, clip length
and schedule before issue 12 sized the recipe for time to accuracy: cnn_small width 16 on 1 s clips, 20 cosine
epochs); audiocnn runs ``audiocnn train recipes/digits.yaml`` as shipped, in a subprocess, from a cold cache, with
``trainer.keep_epochs=true``. Both are counted the same way: the test accuracy after every epoch (audiocnn's from
each kept checkpoint, evaluated after the run) and the summed training time of the epochs up to the first one at
``ACC`` (start-up, decoding, validation and the test passes not counted). The faster tutorial worker count is the
reference. audiocnn's whole command is reported beside it: its wall time (start-up, decoding, normaliser fit, every
epoch with its validation, the test evaluation; not the HTML report, ``trainer.report=false`` as in every run here)
and its best checkpoint's test accuracy.

Epoch time is training only (validation excluded on both sides), the median over epochs after the first
(warm-up: worker start, cache misses, allocator). Test accuracy is on the recipe's test split, centre crops,
after the last epoch of both (audiocnn reports its best-validation checkpoint too).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from load import LOADS, competing  # noqa: E402  (benchmarks/load.py)
from audiocnn.config import load_config  # noqa: E402
from audiocnn.data import build_splits  # noqa: E402
from audiocnn.build import build_classifier  # noqa: E402

RECIPES = {"digits": ("recipes/digits.yaml", []), "esc10": ("recipes/esc10.yaml", ["data.test_fold=1"])}
DEFAULT_EPOCHS = {"digits": None, "esc10": 3}  # None: the recipe's own (full training, accuracy compared)
TUTORIAL_DIGITS = ["model.name=cnn_small", "model.args.width=16", "data.duration=1.0", "trainer.epochs=20"]
"""``--time-to``: the tutorial's settings over digits.yaml (its network, clip length and schedule until issue 12)."""


# ------------------------------------------------------------------------------------------------------------
# the tutorial-style baseline

class TutorialDataset(Dataset):
    """librosa.load + librosa log-mel in ``__getitem__``: ``(1, n_mels, frames)`` float32 and the label index."""

    def __init__(self, examples, cfg, *, train: bool):
        self.examples, self.cfg, self.train = examples, cfg, train
        self.n = int(round(cfg.data.duration * cfg.data.sample_rate))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int):
        ex, d, f = self.examples[i], self.cfg.data, self.cfg.frontend
        y, _ = librosa.load(ex.path, sr=d.sample_rate, mono=True)
        if len(y) < self.n:
            y = np.pad(y, (0, self.n - len(y)))
        start = np.random.randint(0, len(y) - self.n + 1) if self.train else (len(y) - self.n) // 2
        y = y[start:start + self.n]
        S = librosa.feature.melspectrogram(y=y, sr=d.sample_rate, n_fft=f.n_fft, hop_length=f.hop_length,
                                           n_mels=f.n_mels, fmin=f.f_min, fmax=f.f_max, center=f.center,
                                           pad_mode=f.pad_mode, norm=f.norm, htk=f.mel_scale == "htk")
        S = librosa.power_to_db(S, ref=1.0, top_db=f.top_db)
        S = (S - S.mean()) / (S.std() + 1e-6)
        return torch.from_numpy(S).float().unsqueeze(0), int(ex.target)


class TimedIter:
    """Iterates a loader and adds the time spent inside ``next()`` to ``wait``."""

    def __init__(self, loader):
        self.loader, self.wait = loader, 0.0

    def __iter__(self):
        it = iter(self.loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                self.wait += time.perf_counter() - t0
            yield batch


def run_baseline(recipe: str, overrides: list[str], epochs: int | None, workers: int, seed: int = 0,
                 target: float | None = None) -> dict:
    """The tutorial pipeline for ``epochs`` epochs (default: the recipe's) with ``workers`` loader processes;
    with ``target``, its test accuracy after every epoch, stopping at the first epoch that reaches it
    (``time_to_target_s``: the summed training time up to there; ``None`` if not within ``epochs``)."""
    cfg = load_config(ROOT / recipe, overrides)
    epochs = epochs or cfg.trainer.epochs
    torch.manual_seed(seed)
    np.random.seed(seed)
    splits = build_splits(cfg.data)
    net = build_classifier(cfg, splits.labels).network  # the same network audiocnn trains
    train_loader = DataLoader(TutorialDataset(splits.train, cfg, train=True), batch_size=cfg.data.batch_size,
                              shuffle=True, num_workers=workers, drop_last=True, persistent_workers=workers > 0)
    test_loader = DataLoader(TutorialDataset(splits.test, cfg, train=False), batch_size=cfg.data.batch_size,
                             num_workers=workers)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(train_loader))
    loss_fn = torch.nn.CrossEntropyLoss()

    def test_accuracy() -> float:
        net.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (net(x).argmax(1) == y).sum().item()
                total += len(y)
        return correct / max(total, 1)

    times, waits, samples, reached, curve = [], [], 0, None, []
    for _ in range(epochs):
        net.train()
        timed = TimedIter(train_loader)
        t0 = time.perf_counter()
        n = 0
        for x, y in timed:
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            sched.step()
            n += len(y)
        times.append(time.perf_counter() - t0)
        waits.append(timed.wait / times[-1])
        samples = n
        if target is not None:
            curve.append(test_accuracy())
            print(f"tutorial ({workers} workers) epoch {len(times)}: {times[-1]:.2f} s, test accuracy "
                  f"{curve[-1]:.4f}", flush=True)
            if curve[-1] >= target:
                reached = sum(times)
                break
    res = _summary(f"tutorial (librosa in __getitem__, {workers} workers)", times, waits, samples,
                   curve[-1] if curve else test_accuracy(), len(times))
    if target is not None:
        res.update(time_to_target_s=reached, curve=curve)
    return res


# ------------------------------------------------------------------------------------------------------------
# audiocnn, as a user runs it

def run_audiocnn(recipe: str, overrides: list[str], epochs: int | None, extra_overrides: tuple[str, ...] = (),
                 extra_env: dict | None = None, accuracy: bool = True, cache: Path | None = None) -> dict:
    """``audiocnn train RECIPE`` as a user runs it (plus ``extra_overrides`` and ``extra_env``), timings from its
    metrics.csv; ``accuracy=False`` skips the last-epoch test evaluation; ``cache``: a decoded cache to share
    (default: a cold one of its own, so decoding is part of the first epoch)."""
    out = Path(tempfile.mkdtemp(prefix="bench-train-"))
    env = dict(os.environ, AUDIOCNN_CACHE=str(cache or out / "cache"))
    env.update(extra_env or {})
    extra = [f"trainer.epochs={epochs}"] if epochs else []
    cmd = [sys.executable, "-m", "audiocnn", "train", recipe, f"trainer.output_dir={out / 'runs'}",
           "trainer.report=false", "trainer.progress=never", *overrides, *extra, *extra_overrides]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"audiocnn train failed:\n{proc.stderr[-3000:]}")
    run = next((out / "runs").rglob("metrics.csv")).parent
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    if "data_wait" not in rows[0]:
        sys.exit(f"{run}/metrics.csv has no data_wait column: this audiocnn does not measure it")
    times = [float(r["train_time_s"]) for r in rows]
    waits = [float(r["data_wait"]) for r in rows]
    test = json.loads(next(run.glob("eval/test_metrics.json")).read_text())
    last = _last_epoch_test_accuracy(run) if accuracy else float("nan")
    name = "audiocnn train" + (f" {' '.join(extra_overrides)}" if extra_overrides else " (recipe as shipped)")
    res = _summary(name, times, waits, int(rows[-1]["train_samples"]), last, len(rows))
    res.update(best_checkpoint_accuracy=test["accuracy"], wall_s=wall, run=str(run), train_times=times)
    return res


def _last_epoch_test_accuracy(run: Path) -> float:
    from audiocnn.evaluation.evaluate import evaluate_run

    return float(evaluate_run(run, split="test", checkpoint="last", quiet=True)["accuracy"])


def _summary(name: str, times: list[float], waits: list[float], samples: int, acc: float, epochs: int) -> dict:
    steady = times[1:] or times
    wsteady = waits[1:] or waits
    epoch = statistics.median(steady)
    return {"pipeline": name, "epochs": epochs, "epoch_s": epoch, "first_epoch_s": times[0],
            "samples_per_s": samples / epoch, "data_wait": statistics.median(wsteady), "test_accuracy": acc}


THREAD_SETTINGS = {  # name -> (overrides, environment)
    "audiocnn (as shipped: free cores, GOMP_SPINCOUNT=10000)": ((), {}),
    "torch defaults (a thread per CPU, GOMP_SPINCOUNT=300000)": (
        (), {"OMP_NUM_THREADS": str(len(os.sched_getaffinity(0))), "GOMP_SPINCOUNT": "300000"}),
    "trainer.threads=1": (("trainer.threads=1",), {}),
}


def run_loaded(epochs: int, rounds: int) -> list[str]:
    """digits.yaml under each load of ``benchmarks/load.py`` and each of :data:`THREAD_SETTINGS`: table lines."""
    recipe, overrides = RECIPES["digits"]
    times: dict[tuple[str, str], list[float]] = {}
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    run_audiocnn(recipe, [*overrides, "trainer.max_steps_per_epoch=1"], 1, accuracy=False, cache=cache)  # decode once
    for _ in range(rounds):
        for load in LOADS:
            with competing(load):
                for name, (extra, env) in THREAD_SETTINGS.items():
                    r = run_audiocnn(recipe, overrides, epochs, extra, env, accuracy=False, cache=cache)
                    times.setdefault((load, name), []).append(r["epoch_s"])
                    print(json.dumps({"load": load, "setting": name, **r}), flush=True)
    epoch = {k: statistics.median(v) for k, v in times.items()}
    one = "trainer.threads=1"
    lines = [f"digits.yaml, {epochs} epochs a run from a warm decoded cache (epoch time: median after the first; "
             f"median of {rounds} rounds)",
             "", "| load | threads / wait policy | epoch (s) | vs idle, same setting | vs trainer.threads=1, same load |",
             "|---|---|---:|---:|---:|"]
    for load in LOADS:
        for name in THREAD_SETTINGS:
            t = epoch[load, name]
            lines.append(f"| {load} | {name} | {t:.2f} | {t / epoch['idle', name]:.2f}x | "
                         f"{t / epoch[load, one]:.2f}x |")
    return lines


def run_time_to(target: float, workers: list[int]) -> list[str]:
    """``--time-to``: digits.yaml as shipped against the tutorial's time to ``target`` test accuracy: table lines."""
    from audiocnn.evaluation.evaluate import evaluate_run

    recipe, overrides = RECIPES["digits"]
    ours = run_audiocnn(recipe, overrides, None, ("trainer.keep_epochs=true",), accuracy=False)
    run = Path(ours["run"])
    curve = [float(evaluate_run(run, split="test", checkpoint=str(p), quiet=True)["accuracy"])
             for p in sorted((run / "checkpoints").glob("epoch_*.pt"))]
    first = next((i for i, a in enumerate(curve) if a >= target), None)
    ours.update(curve=curve, test_accuracy=curve[-1],  # the last epoch's, evaluated once
                time_to_target_s=None if first is None else sum(ours["train_times"][:first + 1]))
    print(json.dumps(ours), flush=True)
    bases = []
    for w in workers:
        bases.append(run_baseline(recipe, [*overrides, *TUTORIAL_DIGITS], None, w, target=target))
        print(json.dumps(bases[-1]), flush=True)
    reached = [b for b in bases if b["time_to_target_s"] is not None]
    ref = min(reached, key=lambda b: b["time_to_target_s"]) if reached else None

    def vs(t: float | None) -> str:
        return "" if t is None or ref is None else f"{t / ref['time_to_target_s']:.2f}"

    lines = [f"{dt.date.today()} | digits, official test split, time to {100 * target:g} % test accuracy | tutorial: "
             f"{' '.join(TUTORIAL_DIGITS)}", "",
             "| pipeline | epochs | time (s) | test acc | what the time counts | vs tutorial |",
             "|---|---:|---:|---:|---|---:|"]
    for b in bases:
        t = b["time_to_target_s"]
        lines.append(f"| {b['pipeline']} | {b['epochs']} | {'not reached' if t is None else f'{t:.1f}'} | "
                     f"{100 * b['test_accuracy']:.1f} % | training epochs up to the first at the target | {vs(t)} |")
    t = ours["time_to_target_s"]
    shown_epochs, acc = (first + 1, curve[first]) if first is not None else (len(curve), curve[-1])
    lines.append(f"| audiocnn train recipes/digits.yaml | {shown_epochs} | "
                 f"{'not reached' if t is None else f'{t:.1f}'} | {100 * acc:.1f} % | training epochs up to the first "
                 f"at the target | {vs(t)} |")
    whole = ours["wall_s"] if ours["best_checkpoint_accuracy"] >= target else None
    lines.append(f"| audiocnn train recipes/digits.yaml, whole command | {ours['epochs']} | {ours['wall_s']:.1f} | "
                 f"{100 * ours['best_checkpoint_accuracy']:.1f} % (best checkpoint) | start-up, decoding, every epoch "
                 f"with validation, test evaluation | {vs(whole)} |")
    lines.append("\naudiocnn's test accuracy after each epoch: " + ", ".join(f"{100 * a:.1f}" for a in curve))
    for b in bases:
        lines.append(f"{b['pipeline']}: " + ", ".join(f"{100 * a:.1f}" for a in b["curve"]))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", action="store_true", help="digits.yaml's epoch time under load (see above) instead")
    p.add_argument("--load-epochs", type=int, default=3, help="epochs of each --load run (default 3)")
    p.add_argument("--rounds", type=int, default=1, help="--load: repeat every run this many times (default 1)")
    p.add_argument("--recipes", nargs="*", default=list(RECIPES))
    p.add_argument("--epochs", default="", help="per recipe, e.g. digits=2,esc10=3 (default: digits full, esc10 3)")
    p.add_argument("--baseline-workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--markdown", default=None)
    p.add_argument("--variant", dest="variants", action="append", type=lambda v: tuple(v.split()),
                   default=None, help="an extra audiocnn run with these overrides, repeatable "
                                      "(default: one with trainer.precision=bf16)")
    p.add_argument("--time-to", type=float, default=None, metavar="ACC",
                   help="digits: wall time to this test accuracy, audiocnn as shipped vs the tutorial (see above)")
    args = p.parse_args()
    if args.time_to is not None:
        lines = run_time_to(args.time_to, args.baseline_workers)
        print("\n".join(lines))
        if args.markdown:
            Path(args.markdown).write_text("\n".join(lines) + "\n")
        return
    if args.load:
        lines = run_loaded(args.load_epochs, args.rounds)
        print("\n".join(lines))
        if args.markdown:
            Path(args.markdown).write_text("\n".join(lines) + "\n")
        return
    if args.variants is None:
        args.variants = [("trainer.precision=bf16",)]
    epochs = dict(DEFAULT_EPOCHS)
    epochs.update({k: int(v) for k, v in (kv.split("=") for kv in args.epochs.split(",") if kv)})
    header = (f"{dt.date.today()} | {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs | torch "
              f"{torch.__version__} ({torch.get_num_threads()} threads) | librosa {librosa.__version__} | "
              f"speed-up vs the faster tutorial configuration")
    lines = [header, "", "| recipe | pipeline | epochs | epoch (s) | samples/s | data wait | test acc (last epoch) "
             "| speed-up |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in args.recipes:
        recipe, overrides = RECIPES[name]
        ours = [run_audiocnn(recipe, overrides, epochs[name], extra) for extra in ((), *args.variants)]
        for r in ours:
            print(json.dumps(r), flush=True)
        bases = []
        for workers in args.baseline_workers:
            bases.append(run_baseline(recipe, overrides, epochs[name], workers))
            print(json.dumps(bases[-1]), flush=True)
        ref = min(bases, key=lambda r: r["epoch_s"])
        for r in (*bases, *ours):
            lines.append(f"| {name} | {r['pipeline']} | {r['epochs']} | {r['epoch_s']:.2f} | {r['samples_per_s']:.0f} | "
                         f"{100 * r['data_wait']:.1f} % | {100 * r['test_accuracy']:.1f} % | "
                         f"{ref['epoch_s'] / r['epoch_s']:.2f}x |")
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
