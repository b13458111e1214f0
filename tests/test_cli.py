"""The command line as a user types it: train, evaluate, predict, summary, data download, errors."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from layouts import quickstart_run
from audiocnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "quickstart.yaml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return quickstart_run(tmp_path_factory.mktemp("cli"))


def test_evaluate_writes_artefacts(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--split", "val", "--checkpoint", "last"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out
    for name in ("val_metrics.json", "val_confusion.png", "val_confusion.csv", "val_report.json"):
        assert (run_dir / "eval" / name).is_file()
    metrics = json.loads((run_dir / "eval" / "val_metrics.json").read_text())
    assert metrics["checkpoint"] == "last" and 0 <= metrics["accuracy"] <= 1


def test_predict_files_folders_long_and_bad(run_dir, tmp_path, capsys):
    sr = 8000
    clips = sorted((run_dir.parents[2] / "syn").rglob("*.wav"))[:2]
    folder = tmp_path / "inbox"
    folder.mkdir()
    long = folder / "long.flac"
    sf.write(long, np.concatenate([sf.read(c)[0] for c in clips] * 20).astype(np.float32), sr)  # 40 s
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    out_json = tmp_path / "preds.json"
    # one bad input of three: the others are predicted, and the exit status and a summary line say so
    assert main(["predict", str(run_dir), str(clips[0]), str(folder), "--top-k", "2", "--json", str(out_json)]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert "broken.wav: ERROR" in out and "%" in out and "1 of 3 inputs failed" in captured.err
    results = {Path(r["path"]).name: r for r in json.loads(out_json.read_text())}
    assert set(results) == {clips[0].name, "long.flac", "broken.wav"}
    assert "error" in results["broken.wav"]
    assert results["long.flac"]["windows"] > 40 and len(results["long.flac"]["top"]) == 2
    probs = [p for _, p in results[clips[0].name]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


def test_predict_matches_label_of_training_clip(run_dir, capsys):
    labels = json.loads((run_dir / "labels.json").read_text())["labels"]
    clip = sorted((run_dir.parents[2] / "syn").rglob("*.wav"))[0]
    assert main(["predict", str(run_dir), str(clip), "--top-k", "3"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert line.split(": ", 1)[1].split(" ")[0] in labels


def test_summary_recipe_and_model(capsys):
    assert main(["summary", str(ROOT / "recipes" / "genre.yaml")]) == 0
    out = capsys.readouterr().out
    assert "total params" in out and "resnet_small" in out and "activations (MB)" in out
    assert main(["summary", "cnn_small", "--input-shape", "2,1,64,100", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "1,175,210" in out  # hand-counted in test_models


@pytest.mark.parametrize("name", ["tcn", "wavenet", "crepe_tiny", "crepe_full", "panns_cnn6", "panns_cnn10",
                                  "panns_cnn14", "panns_cnn14_16k", "efficientat_mn04", "efficientat_mn10",
                                  "efficientat_mn40"])
def test_summary_of_a_model_name_uses_its_declared_example_input(name, capsys):
    # 1-D models used to get the 2-D default (1,1,64,101) and end in a traceback
    assert main(["summary", name]) == 0
    out = capsys.readouterr().out
    want = {"tcn": "1x64x101", "wavenet": "1x64x101", "crepe_tiny": "1x1x16000", "crepe_full": "1x1x16000",
            **{f"efficientat_mn{w}": "1x1x128x101" for w in ("04", "10", "40")}}
    assert f"input {want.get(name, '1x1x64x101')}" in out and "total params" in out


def test_summary_input_shape_that_does_not_fit_is_one_line(capsys):
    assert main(["summary", "tcn", "--input-shape", "1,1,64,101"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tcn takes 3 numbers" in err and "1,64,101" in err
    assert main(["summary", "cnn_small", "--input-shape", "1,1,2,2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cnn_small cannot take it" in err


def test_bad_override_exits_2_with_suggestion(capsys):
    assert main(["train", RECIPE, "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "did you mean 'lr'" in err


def test_missing_dataset_says_what_to_do(tmp_path, capsys):
    recipe = str(ROOT / "recipes" / "digits.yaml")
    assert main(["train", recipe, f"data.root={tmp_path / 'nope'}", f"trainer.output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "audiocnn data download fsdd" in err
    assert not list(tmp_path.rglob("config.yaml")), "a failed start must not leave a run folder"


def test_download_offline_fails_fast_with_instructions(tmp_path, capsys):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["data", "download", "esc10", "--root", str(tmp_path), "--mirror", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "ESC-50-master.zip" in err and str(tmp_path) in err


def test_list_models(capsys):
    assert main(["list-models", "cnn*"]) == 0
    assert capsys.readouterr().out.split() == ["cnn_small", "cnn_tiny"]
