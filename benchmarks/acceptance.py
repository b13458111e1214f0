"""Acceptance runs on real data: train each recipe end to end, report test metrics and wall time.

    AUDIOCNN_DATA=../shared/datasets python benchmarks/acceptance.py              # all, writes ACCEPTANCE.md
    AUDIOCNN_DATA=../shared/datasets python benchmarks/acceptance.py --only digits --check

Each run is a separate ``audiocnn train`` process so the wall time includes everything a user waits for
(decoding, caching, training, test evaluation). The data cache is cold for every run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# recipe, overrides, metric, threshold, time limit (s), what the issue asks for
RUNS = {
    "quickstart": ("recipes/quickstart.yaml", [], "accuracy", 0.5, 180, "well above chance (12.5 %), < 3 min"),
    "digits": ("recipes/digits.yaml", [], "accuracy", 0.98, 600, ">= 98 %, < 10 min"),
    "esc10": ("recipes/esc10.yaml", ["data.test_fold=1"], "accuracy", 0.80, 1200, ">= 80 % (fold 1), < 20 min"),
    "emotion": ("recipes/emotion.yaml", [], "accuracy", None, None, "report (chance 12.5 %), aim >= 55 %"),
}


def run_one(name: str, output_dir: Path, extra: list[str]) -> dict:
    recipe, overrides, metric, threshold, limit, goal = RUNS[name]
    env = dict(os.environ)
    shared = env.get("AUDIOCNN_DATA", "")
    if name == "emotion" and shared and "AUDIOCNN_RAVDESS" not in env and (Path(shared) / "ravdess_speech16").is_dir():
        env["AUDIOCNN_RAVDESS"] = str(Path(shared) / "ravdess_speech16")
    cache = Path(tempfile.mkdtemp(prefix="audiocnn-cache-"))
    env["AUDIOCNN_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "audiocnn", "train", recipe, f"trainer.output_dir={output_dir}", *overrides, *extra]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True)
    wall = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    sys.stdout.write(proc.stdout[-4000:])
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return {"name": name, "ok": False, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"], "wall_s": wall}
    run_dir = Path(proc.stdout.strip().splitlines()[-1].split("run folder: ")[-1])
    if not run_dir.is_absolute():
        run_dir = ROOT / run_dir
    metrics = json.loads((run_dir / "eval" / "test_metrics.json").read_text())
    value = metrics[metric]
    ok = (threshold is None or value >= threshold) and (limit is None or wall <= limit)
    return {"name": name, "ok": ok, "metric": metric, "value": value, "threshold": threshold, "wall_s": wall,
            "limit_s": limit, "goal": goal, "run_dir": str(run_dir), "metrics": metrics}


def markdown(results: list[dict]) -> str:
    import torch
    lines = [f"# Acceptance runs ({dt.date.today().isoformat()})", "",
             f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
             f"threads {torch.get_num_threads()}, CUDA {'yes' if torch.cuda.is_available() else 'no'}.",
             "Reproduce: `AUDIOCNN_DATA=../shared/datasets python benchmarks/acceptance.py`.", "",
             "| recipe | test metric | value | goal | wall time | pass |", "|---|---|---|---|---|---|"]
    for r in results:
        if "value" not in r:
            lines.append(f"| {r['name']} | - | failed: {r.get('error')} | | {r['wall_s']:.0f} s | no |")
            continue
        lines.append(f"| {r['name']} | {r['metric']} | {100 * r['value']:.1f} % | {r['goal']} | "
                     f"{r['wall_s'] / 60:.1f} min | {'yes' if r['ok'] else 'no'} |")
    lines.append("")
    for r in results:
        if "metrics" in r:
            m = r["metrics"]
            extras = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float) and k != r["metric"])
            lines.append(f"- **{r['name']}**: {extras}")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=list(RUNS), help="run only these")
    p.add_argument("--output-dir", default="runs-acceptance")
    p.add_argument("--check", action="store_true", help="exit 1 if a run misses its goal")
    p.add_argument("--write", default=None, help="markdown file for the results (default: ACCEPTANCE.md when all run)")
    p.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = p.parse_args()
    if not os.environ.get("AUDIOCNN_DATA"):
        print("set AUDIOCNN_DATA to the folder holding fsdd/, esc10/, ravdess_speech16/", file=sys.stderr)
        return 2
    names = args.only or list(RUNS)
    results = [run_one(n, Path(args.output_dir).resolve(), args.overrides) for n in names]
    text = markdown(results)
    print(text)
    out = args.write or (str(ROOT / "benchmarks" / "ACCEPTANCE.md") if not args.only else None)
    if out:
        Path(out).write_text(text)
        print(f"wrote {out}")
    return 1 if args.check and not all(r["ok"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
