"""Every GPU figure in one command: a markdown table (``OUT/gpu.md``) and the raw numbers (``OUT/gpu.json``).

    python benchmarks/gpu.py --out runs/gpu                      # on a CUDA machine (--device cuda is the default)
    python benchmarks/gpu.py --device cpu --out runs-ci/gpu      # the dry run CI makes (tiny sizes, 2-3 min)
    python benchmarks/gpu.py --only train embed --out runs/gpu   # some sections
    python benchmarks/gpu.py --heareval-python /work/heareval-venv/bin/python --out runs/gpu

Sections, each reusing the benchmark or command that owns its figure:

1. ``tests``: the pytest tests marked ``cuda`` (``-m cuda``). Without a CUDA device they skip, and the table says so.
2. ``frontend``: ``benchmarks/frontend.py``, the torch and nnAudio back-ends (float32, batched) against the
   librosa per-clip loop on the CPU; audio-seconds per second.
3. ``train``: ``digits.yaml`` and ``esc10.yaml`` trained in this process (``audiocnn.pipelines.train``, as
   ``audiocnn train`` does), fp32 and bf16: samples/s and ``data_wait`` from ``metrics.csv`` (median over the
   epochs after the first), peak GPU memory (``torch.cuda.max_memory_allocated``). The loader pins memory when
   CUDA is available. Data: ``$AUDIOCNN_DATA`` (default ``../shared/datasets``), or the package's synthetic
   dataset where a recipe's dataset is absent or in the dry run; the table names the data used.
4. ``embed``: ``benchmarks/embed.py``, VGGish (random weights unless given) with ``embed_files`` fp32 and bf16
   against torchvggish one file at a time; hours of audio per minute.
5. ``hear``: the digits run of section 3 as a HEAR module embeds a task (``yesno`` from the shared datasets, else
   a synthetic one), then ``audiocnn hear-eval`` and heareval score the same embeddings on the CPU, as
   ``benchmarks/hear_compare.py`` runs them. Without heareval's environment its column is "skipped".
6. ``torchrun``: ``torchrun -m audiocnn train recipes/digits.yaml`` against section 3's single-process figure.
   On CUDA one process per GPU (``--nproc``, default 1, as a one-GPU lease allows): with one process audiocnn
   forms no process group (``audiocnn.engine.distributed.setup``, ``WORLD_SIZE`` 1), so NCCL only carries
   gradients from ``--nproc 2`` on two GPUs. On the CPU two processes with gloo.

Sizes on CUDA are chosen for about 6-8 minutes on one H200 in all (estimated: no GPU was at hand when this was
written): front-end 32 clips x 10 s, best of 2 rounds; digits 5 epochs and esc10 3 epochs on real data; embed 64
files x 2 rounds; torchrun the digits run again (5 epochs). ``--device cpu`` implies ``--quick``: 4 clips x 2 s,
synthetic data with 2 steps of 8 one-second clips in each of 2 epochs, 2 files, a 2-class synthetic HEAR task;
its numbers show only that every path runs.

A section that fails is an error row and the exit status is 1 (the table is still written); a section that
cannot run for a stated reason (no CUDA device, no heareval environment, torchvggish absent) is "skipped: why".
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import hear_compare  # noqa: E402  (benchmarks/hear_compare.py: the two evaluators, run as it runs them)

from audiocnn.config import load_config  # noqa: E402
from audiocnn.core.io import atomic_write_text, write_json  # noqa: E402
from audiocnn.pipelines import train  # noqa: E402

SECTIONS = ("tests", "frontend", "train", "embed", "hear", "torchrun")
RECIPES = {"digits": ("recipes/digits.yaml", "fsdd", []), "esc10": ("recipes/esc10.yaml", "esc10", ["data.test_fold=1"])}
FULL_EPOCHS = {"digits": 5, "esc10": 3}
QUICK_TRAIN = ["trainer.epochs=2", "trainer.max_steps_per_epoch=2", "data.batch_size=8", "data.duration=1.0"]
SYNTHETIC = ["data.num_classes=4", "data.num_per_class=16"]
COMMON = ["trainer.report=false", "trainer.progress=never", "trainer.log_every_s=0"]
COLUMNS = ("section", "setting", "figure", "unit", "baseline", "ratio", "notes")


class Skipped(Exception):
    """A section that cannot run here, for the reason in the message."""


@dataclass
class Row:
    """One line of the table: ``figure`` against ``baseline`` (same unit), ``ratio`` higher is better."""

    section: str
    setting: str
    figure: float | str | None
    unit: str = ""
    baseline: float | str | None = None
    ratio: float | None = None
    notes: str = ""


@dataclass
class Outcome:
    """What a section gave: its rows, raw numbers, ``ok`` / ``skipped`` / ``error`` and its time."""

    name: str
    status: str = "ok"
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    reason: str = ""


def _cell(v: float | str | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def markdown(header: dict[str, Any], outcomes: list[Outcome]) -> str:
    """The table, one row per figure; a skipped or failed section is one row saying why."""
    lines = ["# GPU figures (benchmarks/gpu.py)", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---|---:|---:|---|"]
    for o in outcomes:
        rows = o.rows if o.status == "ok" else [Row(o.name, "-", f"{o.status}: {o.reason}", notes=f"{o.seconds:.0f} s")]
        for r in rows:
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
            cells = [r.section, r.setting, _cell(r.figure), r.unit, _cell(r.baseline), ratio, r.notes]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def run_sections(sections: list[tuple[str, Callable[[], Outcome]]]) -> list[Outcome]:
    """Run each section; an exception is an ``error`` outcome (traceback on stderr), :class:`Skipped` a skip."""
    outcomes = []
    for name, fn in sections:
        print(f"[gpu.py] {name}: start {dt.datetime.now():%H:%M:%S}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            out = fn()
        except Skipped as e:
            out = Outcome(name, status="skipped", reason=str(e))
        except (Exception, SystemExit) as e:  # noqa: BLE001  (in the table, exit status 1; hear_compare exits)
            traceback.print_exc()
            last = (str(e).strip().splitlines() or [""])[-1]
            out = Outcome(name, status="error", reason=f"{type(e).__name__}: {last}")
        out.seconds = time.perf_counter() - t0
        print(f"[gpu.py] {name}: {out.status} in {out.seconds:.1f} s", file=sys.stderr, flush=True)
        outcomes.append(out)
    return outcomes


def write_results(out_dir: Path, header: dict[str, Any], outcomes: list[Outcome]) -> str:
    """``gpu.md`` and ``gpu.json``, atomically; returns the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown(header, outcomes)
    write_json(out_dir / "gpu.json", {"header": header, "sections": [asdict(o) for o in outcomes]})
    atomic_write_text(out_dir / "gpu.md", table)
    return table


def machine_header(device: torch.device, quick: bool) -> dict[str, Any]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        memory = f", {torch.cuda.get_device_properties(device).total_memory / 2 ** 30:.0f} GiB"
    else:
        name, memory = platform.processor() or platform.machine(), ""
        try:
            name = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return {"date": f"{dt.datetime.now():%Y-%m-%d %H:%M}", "device": f"{device}: {name}{memory}",
            "cpus": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda or "none (CPU build)",
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else "-",
            "python": platform.python_version(), "mode": "quick (dry run: the numbers only show that each path runs)"
            if quick else "full", "command": " ".join(sys.argv)}


# ------------------------------------------------------------------------------------------------------------
# the sections

class Bench:
    """The sections, sharing the device, the sizes and the digits run that ``hear`` and ``torchrun`` reuse."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.device, self.quick = args, torch.device(args.device), args.quick
        self.cuda = self.device.type == "cuda"
        self.work = Path(tempfile.mkdtemp(prefix="gpu-bench-", dir=args.work))
        self.data_dir = Path(os.environ.get("AUDIOCNN_DATA", ROOT.parent / "shared" / "datasets"))
        self.trained: dict[str, dict[str, Any]] = {}

    def _child(self, cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 600) -> float:
        """Run ``cmd`` from the repository, output to ``log``; its wall time. A non-zero status raises."""
        t0 = time.perf_counter()
        with open(log, "w") as f:
            proc = subprocess.run(cmd, cwd=ROOT, env=env or os.environ, stdout=f, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        if proc.returncode:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(map(str, cmd[:6]))} ... exited {proc.returncode}; end of {log}:\n{tail}")
        return time.perf_counter() - t0

    # 1 --------------------------------------------------------------------------------------------------------
    def tests(self) -> Outcome:
        files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                       if "@pytest.mark.cuda" in p.read_text())
        if not files:
            raise RuntimeError("no test is marked @pytest.mark.cuda under tests/")
        junit = self.work / "cuda-tests.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "cuda", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *files]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
        cases = {}
        for c in ET.parse(junit).iter("testcase"):
            kind = next((s for s in ("skipped", "failure", "error") if c.find(s) is not None), "passed")
            msg = c.find(kind).get("message", "") if kind != "passed" else ""
            cases[f"{c.get('classname')}::{c.get('name')}"] = {"state": kind, "seconds": float(c.get("time", 0)),
                                                              "message": msg}
        raw = {"command": " ".join(cmd), "returncode": proc.returncode, "cases": cases}
        count = {s: sum(c["state"] == s for c in cases.values()) for s in ("passed", "skipped", "failure", "error")}
        if proc.returncode not in (0, 5) or count["failure"] or count["error"] or not cases:
            raise RuntimeError(f"CUDA tests: {count}; {proc.stdout[-1500:]}")
        if not self.cuda:
            reasons = sorted({c["message"] for c in cases.values()})
            if count["passed"]:
                raise RuntimeError(f"{count['passed']} test(s) marked cuda passed without a CUDA device")
            raise Skipped(f"no CUDA device: {len(cases)} test(s) marked cuda in {', '.join(files)} all skipped "
                          f"({'; '.join(reasons)})")
        if count["skipped"]:
            raise RuntimeError(f"{count['skipped']} CUDA test(s) skipped on a CUDA device: "
                               f"{[k for k, c in cases.items() if c['state'] == 'skipped']}")
        rows = [Row("tests", k.split("::")[-1], "passed", notes=f"{c['seconds']:.1f} s") for k, c in cases.items()]
        return Outcome("tests", rows=rows, raw=raw)

    # 2 --------------------------------------------------------------------------------------------------------
    def frontend(self) -> Outcome:
        size = (["--clips", "4", "--seconds", "2", "--rounds", "1", "--kinds", "logmel"] if self.quick else
                ["--clips", "32", "--seconds", "10", "--rounds", "2", "--kinds", "logmel", "mfcc"])
        out = self.work / "frontend.json"
        cmd = [sys.executable, "benchmarks/frontend.py", "--device", str(self.device), "--backends", "torch",
               "nnaudio", *size, "--json", str(out)]
        self._child(cmd, self.work / "frontend.log")
        raw = json.loads(out.read_text())
        rows = []
        for kind, res in raw["kinds"].items():
            base = res["methods"]["librosa"]["audio_s_per_s"]
            for name, m in res["methods"].items():
                if name == "librosa":
                    continue
                rows.append(Row("frontend", f"{kind}, {name}, fp32, batched", m["audio_s_per_s"], "audio-s/s", base,
                                m["vs_librosa"], f"baseline librosa per-clip loop (CPU); peak {m['peak_mb']:.0f} MB; "
                                                 f"max diff {m['max_diff']:.1e}"))
            if res["unavailable"]:
                raise RuntimeError(f"front-end back-ends unavailable: {res['unavailable']}")
        raw["command"] = " ".join(cmd)
        return Outcome("frontend", rows=rows, raw=raw)

    # 3 --------------------------------------------------------------------------------------------------------
    def _overrides(self, name: str) -> tuple[str, list[str]]:
        """Which data the recipe trains on, and the overrides that say so (and set the sizes)."""
        recipe, dataset, real_overrides = RECIPES[name]
        common = [*COMMON, f"trainer.device={self.device.type}", f"data.cache_dir={self.work / 'cache'}"]
        sizes = QUICK_TRAIN if self.quick else [f"trainer.epochs={FULL_EPOCHS[name]}"]
        if not self.quick and (self.data_dir / dataset).is_dir():
            os.environ["AUDIOCNN_DATA"] = str(self.data_dir)
            return f"{dataset} ({self.data_dir / dataset})", [*real_overrides, *common, *sizes]
        why = "dry run" if self.quick else f"{self.data_dir / dataset} not found"
        return (f"synthetic ({why})", ["data.name=synthetic", f"data.root={self.work / 'synthetic' / name}",
                                      *SYNTHETIC, *common, *sizes])

    def _train(self, name: str, precision: str) -> dict[str, Any]:
        data, overrides = self._overrides(name)
        overrides += [f"trainer.precision={precision}", f"trainer.output_dir={self.work / 'runs' / precision}"]
        cfg = load_config(ROOT / RECIPES[name][0], overrides)
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        run_dir = train(cfg, quiet=True)
        if self.cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2 ** 20 if self.cuda else None
        return {"recipe": name, "precision": precision, "data": data, "overrides": overrides, "run_dir": str(run_dir),
                "wall_s": wall, "peak_gpu_mb": peak, **epoch_figures(Path(run_dir) / "metrics.csv")}

    def train(self) -> Outcome:
        rows, raw = [], {}
        for name in RECIPES:
            runs = {p: self._train(name, p) for p in ("fp32", "bf16")}
            raw[name] = runs
            self.trained[name] = runs["fp32"]
            for p, r in runs.items():
                base = runs["fp32"]["samples_per_s"] if p == "bf16" else None
                ratio = r["samples_per_s"] / base if base else None
                mem = f"; peak GPU {r['peak_gpu_mb']:.0f} MiB" if r["peak_gpu_mb"] is not None else ""
                rows.append(Row("train", f"{name}.yaml, {p}", r["samples_per_s"], "samples/s", base, ratio,
                                f"data {r['data']}; {r['epochs']} epochs; data_wait {100 * r['data_wait']:.1f} %"
                                f"{mem}" + ("; baseline fp32" if base else "")))
        return Outcome("train", rows=rows, raw=raw)

    def digits_run(self) -> dict[str, Any]:
        """Section 3's digits fp32 run (trained now when that section did not run)."""
        if "digits" not in self.trained:
            self.trained["digits"] = self._train("digits", "fp32")
        return self.trained["digits"]

    # 4 --------------------------------------------------------------------------------------------------------
    def embed(self) -> Outcome:
        try:
            import torchvggish  # noqa: F401  (the reference embed.py times against; test-only)
        except ImportError:
            raise Skipped("torchvggish not installed (pip install --no-deps torchvggish==0.2 resampy==0.4.3)")
        size = ["--files", "2", "--rounds", "1"] if self.quick else ["--files", "64", "--rounds", "2"]
        out = self.work / "embed.json"
        env = dict(os.environ, AUDIOCNN_SHARED=str(self.data_dir))
        cmd = [sys.executable, "benchmarks/embed.py", "--device", str(self.device), *size, "--json", str(out)]
        self._child(cmd, self.work / "embed.log", env=env)
        raw = json.loads(out.read_text())
        ref = raw["paths"]["reference"]["audio_h_per_min"]
        rows = [Row("embed", f"vggish, {p}, batched", raw["paths"][p]["audio_h_per_min"], "audio h/min", ref,
                    raw["paths"][p]["vs_reference"], f"baseline torchvggish one file at a time; {raw['files']} files x "
                                                      f"{raw['rounds']} rounds, {raw['weights']} weights")
                for p in ("fp32", "bf16")]
        raw["command"] = " ".join(cmd)
        return Outcome("embed", rows=rows, raw=raw)

    # 5 --------------------------------------------------------------------------------------------------------
    def hear(self) -> Outcome:
        run = self.digits_run()
        tasks = self.work / "hear-tasks"
        if not self.quick and (self.data_dir / "yesno").is_dir():
            task, make = "yesno", ["yesno", "--root", str(self.data_dir / "yesno")]
        else:
            task, make = "synthetic", ["synthetic", "data.num_classes=2", "data.num_per_class=8", "data.duration=1.0"]
        self._child([sys.executable, "-m", "audiocnn", "hear", "make-task", *make, "--out", str(tasks),
                     "--progress", "never"], self.work / "make-task.log")
        work = self.work / "hear"
        t0 = time.perf_counter()
        emb_dir = hear_compare._embed(SimpleNamespace(module=run["run_dir"], model=None, device=str(self.device),
                                                      tasks_dir=tasks, tasks=None), work)
        embed_s = time.perf_counter() - t0
        folder = next(f for f in emb_dir.iterdir() if (f / "task_metadata.json").is_file()).resolve()
        ours = hear_compare._audiocnn(folder, 42, work, 1)
        raw = {"task": task, "module": run["run_dir"], "embed_s": embed_s, "audiocnn": ours}
        python = Path(self.args.heareval_python)
        if python.is_file():
            theirs = hear_compare._heareval(str(python), folder, 42, work, 1)
            raw["heareval"] = theirs
            base, ratio = theirs["seconds"], theirs["seconds"] / ours["seconds"]
            notes = f"score {ours['score']:.4f} vs heareval {theirs['score']:.4f}; seed 42, CPU, 1 thread"
        else:
            base, ratio = f"skipped: heareval environment not found at {python} (see benchmarks/hear_compare.py)", None
            notes = f"score {ours['score']:.4f}; seed 42, CPU, 1 thread"
        rows = [Row("hear", f"embed {task} task with the digits run", embed_s, "s", notes=f"device {self.device}"),
                Row("hear", f"audiocnn hear-eval, {task}", ours["seconds"], "s", base, ratio, notes)]
        return Outcome("hear", rows=rows, raw=raw)

    # 6 --------------------------------------------------------------------------------------------------------
    def torchrun(self) -> Outcome:
        single = self.digits_run()
        nproc = self.args.nproc or (1 if self.cuda else 2)
        backend = ("nccl" if nproc > 1 else "none: WORLD_SIZE 1 forms no process group") if self.cuda else "gloo"
        if self.cuda and nproc > torch.cuda.device_count():
            raise Skipped(f"--nproc {nproc} but {torch.cuda.device_count()} GPU(s) visible")
        _, overrides = self._overrides("digits")
        overrides += [f"trainer.output_dir={self.work / 'torchrun'}"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", PYTHONUNBUFFERED="1")
        if not self.cuda:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
               f"--master_port={port}", "-m", "audiocnn", "train", RECIPES["digits"][0], *overrides]
        wall = self._child(cmd, self.work / "torchrun.log", env=env)
        metrics = next((self.work / "torchrun").rglob("metrics.csv"))
        figs = epoch_figures(metrics)
        raw = {"command": " ".join(cmd), "nproc": nproc, "backend": backend, "wall_s": wall, **figs}
        rows = [Row("torchrun", f"digits.yaml, {nproc} process(es), {backend.split(':')[0]}", figs["samples_per_s"],
                    "samples/s", single["samples_per_s"], figs["samples_per_s"] / single["samples_per_s"],
                    f"baseline: one process without torchrun (train fp32); backend {backend}; data "
                    f"{single['data']}; data_wait {100 * figs['data_wait']:.1f} %")]
        return Outcome("torchrun", rows=rows, raw=raw)


def epoch_figures(metrics_csv: Path) -> dict[str, Any]:
    """samples/s and data_wait from a run's ``metrics.csv``: medians over the epochs after the first (warm-up)."""
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    steady = rows[1:] or rows
    epoch_s = statistics.median(float(r["train_time_s"]) for r in steady)
    return {"epochs": len(rows), "epoch_s": epoch_s, "samples_per_s": int(steady[-1]["train_samples"]) / epoch_s,
            "data_wait": statistics.median(float(r["data_wait"]) for r in steady),
            "first_epoch_s": float(rows[0]["train_time_s"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (implied by --device cpu)")
    p.add_argument("--out", type=Path, required=True, help="folder receiving gpu.md and gpu.json")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--heareval-python", default="/work/heareval-venv/bin/python",
                   help="python of heareval's environment (see benchmarks/hear_compare.py)")
    p.add_argument("--nproc", type=int, default=0, help="torchrun processes (default: 1 on CUDA, 2 on the CPU)")
    p.add_argument("--work", default=None, help="scratch folder (default: the system's temporary folder)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device; use --device cpu for the dry run")
    args.quick = args.quick or device.type == "cpu"
    bench = Bench(args)
    header = machine_header(device, args.quick)
    outcomes = run_sections([(name, getattr(bench, name)) for name in SECTIONS if name in args.only])
    header["total_s"] = round(sum(o.seconds for o in outcomes), 1)
    table = write_results(args.out, header, outcomes)
    print(table)
    failed = [o.name for o in outcomes if o.status == "error"]
    if failed:
        print(f"[gpu.py] failed: {', '.join(failed)} (scratch files in {bench.work})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
