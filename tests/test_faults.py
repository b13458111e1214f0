"""A matrix of commands x faults: no traceback, the documented exit status, a message naming the path or key, and
nothing half-done left behind (train faults make no run folder).

Exit statuses: 0 everything succeeded; 1 some inputs failed (the others were done, "N of M inputs failed");
2 usage or config error, before any work; 3 the environment failed (disk, permissions, device).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "quickstart.yaml")
SR = 8000


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A trained run and a folder of inputs: two good clips, one broken, one NaN, one 1-sample, a folder x.wav."""
    tmp = tmp_path_factory.mktemp("faults")
    base = [f"data.root={tmp / 'syn'}", f"data.cache_dir={tmp / 'cache'}", "data.num_classes=3",
            "data.num_per_class=8", "data.duration=0.5", "trainer.epochs=1", "model.args.width=8",
            "trainer.progress=never", "trainer.report=false"]
    assert main(["train", RECIPE, *base, f"trainer.output_dir={tmp / 'runs'}"]) == 0
    (run,) = (tmp / "runs" / "quickstart").iterdir()
    inputs = tmp / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("good1.wav", "good2.wav"):
        sf.write(inputs / name, rng.uniform(-0.5, 0.5, SR).astype(np.float32), SR)
    (inputs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    nan = rng.uniform(-0.5, 0.5, SR).astype(np.float32)
    nan[SR // 2] = np.nan
    sf.write(inputs / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(inputs / "one.wav", np.zeros(1, np.float32), SR)
    (tmp / "x.wav").mkdir()
    return {"tmp": tmp, "run": run, "inputs": inputs, "base": base}


def _cuda_missing() -> bool:
    return not torch.cuda.is_available()


# (command, fault, argv with {run} {inputs} {tmp} {base} placeholders, exit status, phrases stderr must hold)
MATRIX = [
    ("train", "override not valid YAML", ["train", RECIPE, "{base}", "data.test_groups=[1,"], 2,
     ["data.test_groups=[1,", "not valid YAML"]),
    ("train", "unknown key", ["train", RECIPE, "{base}", "optim.lrate=1"], 2, ["optim.lrate", "did you mean 'lr'"]),
    ("train", "epochs out of range", ["train", RECIPE, "{base}", "trainer.epochs=0"], 2, ["trainer.epochs=0"]),
    ("train", "negative learning rate", ["train", RECIPE, "{base}", "optim.lr=-1"], 2, ["optim.lr=-1"]),
    ("train", "batch size out of range", ["train", RECIPE, "{base}", "data.batch_size=0"], 2, ["data.batch_size=0"]),
    ("train", "device name unknown", ["train", RECIPE, "{base}", "trainer.device=gpu0"], 2, ["gpu0"]),
    ("train", "device missing", ["train", RECIPE, "{base}", "trainer.device=cuda"], 3, ["cuda", "not available"]),
    ("train", "model.pretrained not weights", ["train", RECIPE, "{base}", "model.pretrained={inputs}/good1.wav"], 2,
     ["model.pretrained", "good1.wav"]),
    ("train", "model.pretrained missing", ["train", RECIPE, "{base}", "model.pretrained={tmp}/w.pth"], 2, ["w.pth"]),
    ("train", "recipe not found", ["train", "{tmp}/nope.yaml"], 2, ["nope.yaml"]),
    ("train", "resume a folder that is no run", ["train", "--resume", "{tmp}"], 2, ["last.pt"]),
    ("evaluate", "device name unknown", ["evaluate", "{run}", "--device", "gpu0"], 2, ["gpu0"]),
    ("evaluate", "device missing", ["evaluate", "{run}", "--device", "cuda"], 3, ["cuda", "not available"]),
    ("evaluate", "checkpoint name unknown", ["evaluate", "{run}", "--checkpoint", "worst"], 2, ["worst", "best, last"]),
    ("evaluate", "checkpoint of another format", ["evaluate", "{run}", "--checkpoint", "model.pth"], 2, ["model.pth"]),
    ("evaluate", "checkpoint file missing", ["evaluate", "{run}", "--checkpoint", "{tmp}/gone.pt"], 2, ["gone.pt"]),
    ("evaluate", "not a run folder", ["evaluate", "{inputs}"], 2, ["inputs", "run folder"]),
    ("evaluate", "empty split", ["evaluate", "{run}", "--split", "test_inverted"], 2, ["test_inverted"]),
    ("predict", "top-k negative", ["predict", "{run}", "{inputs}/good1.wav", "--top-k", "-2"], 2, ["-2"]),
    ("predict", "top-k zero", ["predict", "{run}", "{inputs}/good1.wav", "--top-k", "0"], 2, ["0"]),
    ("predict", "hop not positive", ["predict", "{run}", "{inputs}/good1.wav", "--hop", "0"], 2, ["0"]),
    ("predict", "--json names a folder", ["predict", "{run}", "{inputs}/good1.wav", "--json", "{tmp}"], 2,
     ["--json", "is a folder"]),
    ("predict", "partial input failure", ["predict", "{run}", "{inputs}/good1.wav", "{inputs}/broken.wav"], 1,
     ["1 of 2 inputs failed"]),
    ("predict", "a folder named x.wav", ["predict", "{run}", "{inputs}/good1.wav", "{tmp}/x.wav"], 1,
     ["1 of 2 inputs failed"]),
    ("predict", "device missing", ["predict", "{run}", "{inputs}/good1.wav", "--device", "cuda"], 3, ["cuda"]),
    ("predict", "checkpoint name unknown", ["predict", "{run}", "{inputs}/good1.wav", "--checkpoint", "worst"], 2,
     ["worst"]),
    ("embed", "partial input failure", ["embed", "{run}", "{inputs}", "--out", "{tmp}/emb", "--progress", "never"], 1,
     ["3 of 5 inputs failed"]),
    ("embed", "device name unknown", ["embed", "{run}", "{inputs}", "--out", "{tmp}/emb2", "--device", "gpu0"], 2,
     ["gpu0"]),
    ("embed", "not a model or run", ["embed", "{inputs}", "{inputs}", "--out", "{tmp}/emb3"], 2, ["inputs"]),
    ("embed", "batch size zero", ["embed", "{run}", "{inputs}", "--out", "{tmp}/emb4", "--batch-size", "0"], 2,
     ["0"]),
    ("report", "checkpoint name unknown", ["report", "{run}", "--checkpoint", "worst"], 2, ["worst"]),
    ("report", "device name unknown", ["report", "{run}", "--device", "gpu0"], 2, ["gpu0"]),
    ("show", "broken audio", ["show", "{inputs}/broken.wav", "--out", "{tmp}/s.png"], 2, ["broken.wav"]),
    ("show", "figure format unknown", ["show", "{inputs}/good1.wav", "--out", "{tmp}/s.txt"], 2, ["s.txt"]),
    ("show", "1-sample file", ["show", "{inputs}/one.wav", "--out", "{tmp}/s1.png"], 2, ["one.wav", "too short"]),
    ("summary", "bad input shape", ["summary", "resnet18", "--input-shape", "1,x"], 2, ["--input-shape"]),
    ("summary", "unknown model", ["summary", "resnet_nothing"], 2, ["resnet_nothing"]),
    ("hear make-task", "bad override value", ["hear", "make-task", "synthetic", "data.num_per_class=[1,", "--out",
                                              "{tmp}/tasks"], 2, ["data.num_per_class"]),
    ("hear make-task", "unknown dataset", ["hear", "make-task", "nosuch", "--out", "{tmp}/tasks"], 2, ["nosuch"]),
    ("hear-eval", "tasks folder missing", ["hear-eval", "{run}", "--tasks-dir", "{tmp}/notasks"], 2,
     ["notasks"]),
    ("data download", "unknown dataset", ["data", "download", "esc5o", "--root", "{tmp}/d"], 2, ["esc5o"]),
]


@pytest.mark.parametrize("command, fault, argv, status, phrases", MATRIX, ids=[f"{c}: {f}" for c, f, *_ in MATRIX])
def test_fault(env, capsys, command, fault, argv, status, phrases):
    if status == 3 and "cuda" in " ".join(argv) and not _cuda_missing():
        pytest.skip("CUDA is available here: no device fault to make")
    args = []
    for a in argv:
        if a == "{base}":
            args += env["base"] + [f"trainer.output_dir={env['tmp'] / 'fault_runs'}"]
        else:
            args.append(a.format(run=env["run"], inputs=env["inputs"], tmp=env["tmp"]))
    try:
        code = main(args)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err
    assert all(p in err for p in phrases), err
    if command == "train":  # a fault found before any work leaves no run folder
        assert not (env["tmp"] / "fault_runs").exists()


def test_every_input_check_is_the_same_for_predict_embed_and_show(env, capsys):
    """One function decides what is usable: the same reason from predict, embed and show for each bad file."""
    from audiocnn.embed import load_embedder
    from audiocnn.embed.windows import stream_file
    from audiocnn.evaluation.predict import predict_files

    inputs = env["inputs"]
    bad = {"broken.wav": "corrupt or truncated audio header", "one.wav": "too short",
           "nan.wav": "the first at 0.500 s"}
    predicted = {Path(r["path"]).name: r.get("error", "") for r in predict_files(env["run"], [inputs])}
    emb = load_embedder(env["run"], device="cpu")
    for name, phrase in bad.items():
        assert phrase in predicted[name], (name, predicted[name])
        with pytest.raises(Exception) as info:  # an AudioError, from the blocks embed streams
            list(stream_file(inputs / name, emb.sample_rate, block_seconds=0.1))
        assert phrase in str(info.value), (name, str(info.value))
        assert main(["show", str(inputs / name), "--out", str(env["tmp"] / f"{name}.png")]) == 2
        assert phrase in capsys.readouterr().err
    assert predicted["good1.wav"] == "" and predicted["good2.wav"] == ""


def test_skipped_files_are_recorded(tmp_path):
    """data.on_error: skip: the left-out files are in skipped.csv, log.txt, eval/ and the report."""
    import csv
    import json

    from audiocnn.config import load_config
    from audiocnn.pipelines import train

    overrides = [f"data.root={tmp_path / 'syn'}", f"data.cache_dir={tmp_path / 'cache'}", "data.num_classes=3",
                 "data.num_per_class=8", "data.duration=0.5", "trainer.epochs=1", "model.args.width=8",
                 "trainer.progress=never", f"trainer.output_dir={tmp_path / 'runs'}"]
    train(load_config(RECIPE, overrides), quiet=True)  # generates the data
    victim = sorted((tmp_path / "syn").rglob("*.wav"))[0]
    victim.write_bytes(b"not audio at all")
    with pytest.warns(UserWarning, match=victim.name):
        run = train(load_config(RECIPE, overrides + ["data.on_error=skip"]), quiet=True)
    rows = list(csv.DictReader(open(run / "skipped.csv")))
    assert [Path(r["path"]).name for r in rows] == [victim.name] and rows[0]["reason"]
    assert "skipped 1 bad file(s)" in (run / "log.txt").read_text()
    split = rows[0]["split"]
    if (run / "eval" / f"{split}_metrics.json").exists():
        assert json.loads((run / "eval" / f"{split}_metrics.json").read_text())["skipped"] == 1
    assert "skipped.csv" in (run / "report.html").read_text()


# --- the environment: a full disk and read-only folders (faults made as in tests/test_disk.py: a real tmpfs where
# this machine lets the tests mount one, else the error injected at os.replace / os.open) ----------------------------

from test_disk import make_disk, read_only  # noqa: E402,F401  (fixtures)

ENVIRONMENT = [
    ("train", "read-only output folder", "read_only", ["train", RECIPE, "{base_no_out}", "trainer.output_dir={dir}/runs"],
     ["trainer.output_dir"]),
    ("train", "read-only data root", "read_only", ["train", RECIPE, "{base_no_root}", "data.root={dir}/syn"],
     ["data.root"]),
    ("predict", "--json on a full disk", "full", ["predict", "{run}", "{inputs}/good1.wav", "--json", "{dir}/p.json"],
     ["p.json", "disk is full"]),
    ("embed", "--out on a full disk", "full", ["embed", "{run}", "{inputs}/good1.wav", "--out", "{dir}/emb", "--format",
                                               "csv", "--progress", "never"], ["emb", "disk is full"]),
    ("embed", "--out read-only", "read_only", ["embed", "{run}", "{inputs}/good1.wav", "--out", "{dir}/emb"], ["emb"]),
    ("report", "--out on a full disk", "full", ["report", "{run}", "--out", "{dir}/r.html"], ["r.html", "disk is full"]),
    ("show", "--out on a full disk", "full", ["show", "{inputs}/good1.wav", "--out", "{dir}/s.png"], ["s.png"]),
    ("hear make-task", "--out on a full disk", "full", ["hear", "make-task", "synthetic", "data.num_classes=2",
                                                       "data.num_per_class=2", "data.sample_rate=8000",
                                                       "data.duration=0.5", "--root", "{tmp}/hsyn", "--out",
                                                       "{dir}/tasks", "--progress", "never"], ["disk is full"]),
    ("data download", "read-only --root", "read_only", ["data", "download", "fsdd", "--root", "{dir}/d"], ["{dir}"]),
]


def _environment_fault(env, capsys, folder, argv, phrases):
    base = env["base"]
    values = dict(run=env["run"], inputs=env["inputs"], tmp=env["tmp"], dir=folder)
    args = []
    for a in argv:
        if a == "{base_no_out}":
            args += base
        elif a == "{base_no_root}":
            args += [b for b in base if not b.startswith("data.root=")] + [f"trainer.output_dir={env['tmp']}/env_runs"]
        else:
            args.append(a.format(**values))
    code = main(args)
    err = capsys.readouterr().err
    assert code == 3, err
    assert "Traceback" not in err and err.count("error: ") == 1, err
    assert all(p.format(**values) in err for p in phrases), err
    left = [p for p in Path(folder).rglob("*") if p.is_file() and p.name != ".filler"]
    assert left == [], left  # nothing half-written that looks like a result


FULL = [row for row in ENVIRONMENT if row[2] == "full"]
READ_ONLY = [row for row in ENVIRONMENT if row[2] == "read_only"]


@pytest.mark.parametrize("command, fault, kind, argv, phrases", FULL, ids=[f"{c}: {f}" for c, f, *_ in FULL])
def test_full_disk(env, make_disk, capsys, command, fault, kind, argv, phrases):
    disk = make_disk(256 << 10)
    disk.fill()
    _environment_fault(env, capsys, disk.path, argv, phrases)


@pytest.mark.parametrize("command, fault, kind, argv, phrases", READ_ONLY,
                         ids=[f"{c}: {f}" for c, f, *_ in READ_ONLY])
def test_read_only_folder(env, read_only, capsys, command, fault, kind, argv, phrases):
    _environment_fault(env, capsys, read_only, argv, phrases)
