"""Exported models on real data: onnxruntime against torch eager, parity and speed, one markdown table.

    AUDIOCNN_DATA=/work/shared/datasets python benchmarks/export.py              # train short runs, export, measure
    python benchmarks/export.py --run cnn_small/fsdd=runs/digits/<run> ...       # use given runs instead
    python benchmarks/export.py --only cnn_small/fsdd lenet5/mnist --markdown export.md

Rows: cnn_small, resnet_small, tcn and vggish_tiny on FSDD (8 kHz; vggish_tiny at 16 kHz as
``recipes/vggish_fsdd.yaml``) and ESC-10 (16 kHz, 5 s clips), lenet5 on MNIST. Each run is trained for one short
epoch (``trainer.max_steps_per_epoch``; parity needs no accuracy), exported to ONNX with ``audiocnn export``'s
code, and then:

* parity: max abs logit deviation, onnxruntime against the run's own model in torch eager, on the first window of
  real test-split recordings (test images for MNIST), batch 16;
* speed: milliseconds per batch at batch 1 and batch 16, with 2 threads, for torch eager (``torch.no_grad``,
  float32) and onnxruntime (``CPUExecutionProvider``, ``intra_op_num_threads=2``). Each timing runs in a fresh
  process of its own (an onnxruntime process imports no torch), after two warm-up calls; the median of
  ``--repeats`` calls is kept. The ratio is torch / onnxruntime from the same run of this script: above 1 means
  onnxruntime is faster.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = {  # name -> (recipe, overrides)
    "cnn_small/fsdd": ("digits.yaml", ["model.name=cnn_small"]),
    "resnet_small/fsdd": ("digits.yaml", ["model.name=resnet_small"]),
    "tcn/fsdd": ("digits_tcn.yaml", []),
    "vggish_tiny/fsdd": ("vggish_fsdd.yaml", ["trainer.precision=fp32"]),
    "cnn_small/esc10": ("esc10.yaml", ["model.name=cnn_small"]),
    "resnet_small/esc10": ("esc10.yaml", ["model.name=resnet_small"]),
    "tcn/esc10": ("esc10.yaml", ["model.name=tcn"]),
    "vggish_tiny/esc10": ("esc10.yaml", ["model.name=vggish_tiny"]),
    "lenet5/mnist": ("mnist_lenet.yaml", []),
}
THREADS = 2


# --- one timing, in its own process ------------------------------------------------------------------------------

def _time_one(engine: str, target: str, shape: list[int], repeats: int) -> float:
    """Median milliseconds per call of ``engine`` (torch | ort) on a zero-mean random batch of ``shape``."""
    import numpy as np

    x = (0.1 * np.random.default_rng(0).standard_normal(shape)).astype(np.float32)
    if engine == "ort":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = THREADS, 1
        session = ort.InferenceSession(target, opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def call():
            session.run(None, {name: x})
    else:
        import torch

        from audiocnn.runs import load_run

        torch.set_num_threads(THREADS)
        model = load_run(target, device="cpu").model
        xt = torch.from_numpy(x)

        def call():
            with torch.no_grad():
                model(xt)
    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def timed(engine: str, target: str, shape: list[int], repeats: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, __file__, "--time-one", engine, target, json.dumps(shape), str(repeats)],
                         capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# --- the rows ----------------------------------------------------------------------------------------------------

def train_run(name: str, work: Path, steps: int) -> Path:
    from audiocnn.config import load_config
    from audiocnn.pipelines import train

    recipe, overrides = ROWS[name]
    cfg = load_config(ROOT / "recipes" / recipe, [
        *overrides, "trainer.epochs=1", f"trainer.max_steps_per_epoch={steps}", "trainer.progress=never",
        "trainer.report=false", f"trainer.output_dir={work / 'runs' / name.replace('/', '_')}",
        f"data.cache_dir={work / 'cache'}"])
    return train(cfg, quiet=True)


def real_batch(cfg, n: int):
    """The first window of ``n`` test-split recordings (or ``n`` test images): the model's input, float32."""
    import torch

    from audiocnn.modalities import modality_of

    modality = modality_of(cfg)
    if modality.name == "image":
        from audiocnn.data.images import ImageDataset, build_image_splits, image_collate

        splits, store = build_image_splits(cfg.data)
        ds = ImageDataset(splits.test[:n], store, task=cfg.data.task)
        return image_collate([ds[i] for i in range(len(ds))]).wave
    from audiocnn.data import build_splits

    test = build_splits(cfg.data).test[:n]
    return torch.stack([modality.read_file(cfg, Path(ex.path))[0][0] for ex in test])


def measure(name: str, run: Path, work: Path, repeats: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    from audiocnn.deploy.export import export_run
    from audiocnn.runs import load_run

    model, cfg, _, _ = load_run(run, device="cpu")
    real = real_batch(cfg, 16)
    path = work / f"{name.replace('/', '_')}.onnx"
    t = time.perf_counter()
    result = export_run(run, fmt="onnx", out=path, probes=real)
    export_s = time.perf_counter() - t
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(real).numpy()
    (logits,) = session.run(None, {session.get_inputs()[0].name: real.numpy()})
    row = {"name": name, "input": "x".join(map(str, real.shape[1:])), "n_real": len(real),
           "parity": float(np.abs(logits - ref).max()), "logit_range": float(np.abs(ref).max()),
           "export_s": export_s, "fixed": json.loads(result.metadata["fixed_length"])}
    for batch in (1, 16):
        shape = [batch, *real.shape[1:]]
        row[f"torch_{batch}"] = timed("torch", str(run), shape, repeats)
        row[f"ort_{batch}"] = timed("ort", str(path), shape, repeats)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model / data | input | max abs dev, ORT vs torch (real, batch 16) | max abs logit | torch b1 ms | "
             "ORT b1 ms | torch/ORT b1 | torch b16 ms | ORT b16 ms | torch/ORT b16 | export s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['input']}{' (fixed)' if r['fixed'] else ''} | {r['parity']:.2e} | "
                     f"{r['logit_range']:.2f} | {r['torch_1']:.2f} | {r['ort_1']:.2f} | {r['torch_1'] / r['ort_1']:.2f} | "
                     f"{r['torch_16']:.1f} | {r['ort_16']:.1f} | {r['torch_16'] / r['ort_16']:.2f} | "
                     f"{r['export_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--run", nargs="+", default=[], metavar="NAME=RUN_DIR", help="use these runs instead of training")
    p.add_argument("--steps", type=int, default=8, help="training steps of the short runs (default 8)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--work", default=None, help="folder for runs, cache and .onnx files (default: a temporary one)")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    p.add_argument("--time-one", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.time_one:
        engine, target, shape, repeats = args.time_one
        print(_time_one(engine, target, json.loads(shape), int(repeats)))
        return
    given = dict(item.split("=", 1) for item in args.run)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        rows = []
        for name in args.only:
            t = time.perf_counter()
            run = Path(given[name]) if name in given else train_run(name, work, args.steps)
            rows.append(measure(name, run, work, args.repeats))
            print(f"{name}: {time.perf_counter() - t:.0f} s\n{table(rows[-1:]).splitlines()[-1]}", file=sys.stderr,
                  flush=True)
    md = table(rows)
    print(md)
    if args.markdown:
        Path(args.markdown).write_text(md + "\n")


if __name__ == "__main__":
    main()
