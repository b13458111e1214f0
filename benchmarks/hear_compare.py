"""``audiocnn hear-eval`` against heareval 2021.1.3 on the same embeddings: primary test scores and time.

Both evaluators read one embedding folder per task, in heareval's on-disk layout (``audiocnn hear-eval`` writes
its cache that way: ``OUT/embeddings/<model>/<task>/``). For each task and seed this runs

- heareval: ``python -m heareval.predictions.runner`` in heareval's environment, on a copy of the folder (it
  writes its checkpoints and results there), through ``benchmarks/hear/heareval_seeded.py`` so that the seed
  can be other than its built-in 42;
- audiocnn: ``audiocnn hear-eval --embeddings FOLDER --seed SEED`` in this environment;

each as a fresh process with the same thread count, timed by the wall clock around the process, and reports
both primary scores (mean over seeds), their difference and the time ratio. Downstream scores have run-to-run
randomness (weight initialisation and dropout draw from different random streams in the two programs), so
use several seeds where the difference matters.

heareval's environment (once, outside the repository; heareval pins numpy 1.19 and tensorflow, which its
prediction step does not need)::

    python -m venv /work/heareval-venv
    /work/heareval-venv/bin/pip install heareval==2021.1.3 --no-deps
    /work/heareval-venv/bin/pip install -c constraints.txt torch==2.13.0 click dcase-util intervaltree \\
        more-itertools numpy pandas pynvml python-slugify sed-eval soundfile torchinfo tqdm scikit-learn \\
        "setuptools<81" pytorch-lightning==1.8.6 torchmetrics==1.9.0

(run with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which this script sets: Lightning 1.8 checkpoints hold more
than tensors).

Usage::

    # tasks (audiocnn hear make-task fsdd|yesno --out /work/hear-tasks) and a model (a digits run) first
    python benchmarks/hear_compare.py --module /work/runs-hear/digits/<run> --tasks-dir /work/hear-tasks \\
        --tasks fsdd yesno --seeds 42 43 44 --out hear-compare
    python benchmarks/hear_compare.py --embeddings results/embeddings/<model> --tasks yesno

Writes ``OUT/compare.json`` (every run) and ``OUT/compare.md`` (the table), and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from audiocnn.core.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SEEDED = ROOT / "benchmarks" / "hear" / "heareval_seeded.py"
HEAREVAL_OUTPUTS = ("prediction-done.json", "test.predicted-scores.json", "prediction.log")


def _embed(args: argparse.Namespace, work: Path) -> Path:
    """Embed the tasks with a HEAR module into ``work/embeddings/<model>/`` (reused when unchanged)."""
    from audiocnn.hear.embeddings import embed_task, load_hear_module
    from audiocnn.hear.tasks import find_tasks, read_task

    hm = load_hear_module(args.module, args.model, device=args.device)
    dest = work / "embeddings" / hm.label
    for task_dir in find_tasks(args.tasks_dir):
        if not args.tasks or task_dir.name in args.tasks:
            folder, seconds = embed_task(hm, read_task(task_dir), dest, progress="never", log=None)
            print(f"{folder.name}: embeddings {'reused' if seconds == 0 else f'made in {seconds:.1f} s'}")
    return dest


def _narrow(folder: Path, hidden_dim: int, work: Path) -> Path:
    """A copy of a task's embedding folder whose metadata narrows the predictor (both evaluators read
    ``evaluation_params.task_specific_param_grid``): the same protocol with little arithmetic, which shows
    what each evaluator spends besides the predictor's matrix products."""
    dest = work / "variants" / f"hidden{hidden_dim}" / folder.name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns(*HEAREVAL_OUTPUTS, "*.predictions.pkl"))
    meta = json.loads((dest / "task_metadata.json").read_text())
    meta.setdefault("evaluation_params", {}).setdefault("task_specific_param_grid", {})["hidden_dim"] = [hidden_dim]
    atomic_write_text(dest / "task_metadata.json", json.dumps(meta, indent=2) + "\n")
    return dest


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1",
               PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES=env.get("CUDA_VISIBLE_DEVICES", ""))
    env.pop("PYTHONPATH", None)
    return env


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); the end of {log}:\n{tail}")
    return seconds


def _heareval(python: str, folder: Path, seed: int, work: Path, threads: int) -> dict:
    copy = work / f"heareval-seed{seed}" / folder.name
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(*HEAREVAL_OUTPUTS, "*.predictions.pkl"))
    seconds = _run([python, str(SEEDED), str(seed), str(copy)], cwd=copy.parent, env=_env(threads),
                   log=copy.parent / f"{folder.name}.log")
    res = json.loads((copy / "test.predicted-scores.json").read_text())
    done = json.loads((copy / "prediction-done.json").read_text())
    splits = {k: v for k, v in res.items() if isinstance(v, dict) and "test_score" in v}
    score = float(np.mean([v["test_score"] for v in splits.values()]))
    return {"score": score, "splits": {k: v["test_score"] for k, v in splits.items()}, "seconds": seconds,
            "inner_seconds": done["time"], "hparams": res.get("hparams"), "postprocessing": res.get("postprocessing"),
            "epochs": {k: v.get("epoch") for k, v in splits.items()}}


def _audiocnn(folder: Path, seed: int, work: Path, threads: int) -> dict:
    out = work / f"audiocnn-seed{seed}"
    seconds = _run([sys.executable, "-m", "audiocnn.cli", "hear-eval", "--embeddings", str(folder), "--out", str(out),
                    "--seed", str(seed), "--device", "cpu", "--progress", "never"],
                   cwd=ROOT, env=_env(threads), log=work / f"audiocnn-seed{seed}-{folder.name}.log")
    doc = json.loads((out / "scores.json").read_text())
    task_name = json.loads((folder / "task_metadata.json").read_text())["task_name"]
    rec = doc["models"][folder.parent.name]["tasks"][task_name]
    primary = rec["scores"][rec["primary"]]
    return {"score": primary["mean"], "splits": primary["splits"], "seconds": seconds,
            "inner_seconds": rec["seconds"]["total"], "grid_point": rec["grid_point"],
            "epochs": {"|".join(s["test"]): s["epoch"] for s in rec["splits"]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--embeddings", type=Path, default=None, help="folder of heareval embedding folders (one per task)")
    p.add_argument("--module", default=None, help="or: embed first with this HEAR module / audiocnn run folder")
    p.add_argument("--model", default=None, help="the module's load_model path")
    p.add_argument("--tasks-dir", type=Path, default=None, help="HEAR task folders to embed (with --module)")
    p.add_argument("--tasks", nargs="+", default=None, help="task names (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--heareval-python", default="/work/heareval-venv/bin/python")
    p.add_argument("--threads", type=int, default=1, help="OMP/MKL threads for both evaluators (default 1)")
    p.add_argument("--hidden-dim", type=int, default=None,
                   help="run both with this predictor width instead of 1024 (set in each task's metadata)")
    p.add_argument("--device", default="cpu", help="for embedding with --module")
    p.add_argument("--out", type=Path, default=Path("hear-compare"))
    args = p.parse_args(argv)
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.embeddings is None:
        if args.module is None or args.tasks_dir is None:
            p.error("give --embeddings, or --module and --tasks-dir")
        args.embeddings = _embed(args, work)
    folders = sorted(f for f in args.embeddings.iterdir() if (f / "task_metadata.json").is_file()
                     and (not args.tasks or f.name in args.tasks))
    if not folders:
        p.error(f"no task embedding folders in {args.embeddings}")

    if args.hidden_dim is not None:
        folders = [_narrow(f, args.hidden_dim, work) for f in folders]
    runs, rows = [], []
    for folder in folders:
        meta = json.loads((folder / "task_metadata.json").read_text())
        per = {"heareval": [], "audiocnn": []}
        for seed in args.seeds:
            h = _heareval(args.heareval_python, folder.resolve(), seed, work, args.threads)
            a = _audiocnn(folder.resolve(), seed, work, args.threads)
            per["heareval"].append(h)
            per["audiocnn"].append(a)
            runs.append({"task": folder.name, "seed": seed, "heareval": h, "audiocnn": a})
            print(f"{folder.name} seed {seed}: heareval {h['score']:.4f} in {h['seconds']:.1f} s, "
                  f"audiocnn {a['score']:.4f} in {a['seconds']:.1f} s", flush=True)
        hs = np.mean([r["score"] for r in per["heareval"]])
        au = np.mean([r["score"] for r in per["audiocnn"]])
        ht = np.mean([r["seconds"] for r in per["heareval"]])
        at = np.mean([r["seconds"] for r in per["audiocnn"]])
        rows.append({"task": folder.name, "type": meta["embedding_type"], "metric": meta["evaluation"][0],
                     "heareval": hs, "audiocnn": au, "difference": au - hs, "heareval_s": ht, "audiocnn_s": at,
                     "ratio": ht / at, "seeds": args.seeds})
    lines = ["| task | metric | heareval | audiocnn | difference | heareval time | audiocnn time | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} ({r['type']}) | {r['metric']} | {r['heareval']:.4f} | {r['audiocnn']:.4f} | "
                     f"{r['difference']:+.4f} | {r['heareval_s']:.1f} s | {r['audiocnn_s']:.1f} s | "
                     f"{r['ratio']:.1f}x |")
    width = f"predictor width {args.hidden_dim} (set in the task metadata)" if args.hidden_dim else "the full protocol"
    note = (f"\n{width}; scores: mean over seeds {args.seeds}; times: wall clock of each evaluator's process, mean "
            f"over seeds, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs.\n")
    table = "\n".join(lines) + "\n" + note
    atomic_write_text(work / "compare.json", json.dumps({"rows": rows, "runs": runs}, indent=2, default=str) + "\n")
    atomic_write_text(work / "compare.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
