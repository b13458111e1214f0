"""Released-model plumbing that needs no reference package: the table, label names, fine-tuning's learning
rates, the recipe check and the verbs' errors."""
from __future__ import annotations

import csv

import pytest
import torch

from audiocnn.build import check_recipe
from audiocnn.config import load_config
from audiocnn.core.errors import ConfigError, UnknownNameError
from audiocnn.embed import EmbedError, load_embedder
from audiocnn.engine.loop import build_optimizer
from audiocnn.models import create_model
from audiocnn.models.panns import to_official_state_dict
from audiocnn.models.released import RELEASED, released
from audiocnn.modalities import AudioClassifier
from audiocnn.features import build_frontend

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_audioset_labels_ship_with_the_package():
    names = released("panns_cnn14").label_names()
    assert len(names) == 527
    # spot checks against the AudioSet ontology's class index
    assert (names[0], names[1], names[74], names[137], names[300], names[500], names[526]) == (
        "Speech", "Male speech, man speaking", "Dog", "Music", "Vehicle", "Silence", "Field recording")
    assert len(set(names)) == 527
    assert set(RELEASED.names("panns_*")) == {"panns_cnn6", "panns_cnn10", "panns_cnn14", "panns_cnn14_16k"}
    with pytest.raises(UnknownNameError):
        released("panns_cnn15")


def test_backbone_lr_scale_gives_the_backbone_a_lower_rate(tmp_path):
    cfg = load_config(ROOT / "recipes" / "esc10_panns.yaml", ["optim.lr=0.01", "optim.backbone_lr_scale=0.1"])
    net = create_model("panns_cnn6", num_classes=10)
    model = AudioClassifier(build_frontend(sample_rate=32000), net)
    opt = build_optimizer(cfg, model)
    head = {id(net.head.fc.weight), id(net.head.fc.bias)}
    seen = 0
    for group in opt.param_groups:
        for p in group["params"]:
            seen += 1
            assert group["lr"] == pytest.approx(0.01 if id(p) in head else 0.001)
    assert seen == len([p for p in model.parameters() if p.requires_grad])
    # fc1 (head.hidden) is pretrained: it learns at the backbone's rate
    fc1 = net.head.hidden[1].weight
    assert next(g["lr"] for g in opt.param_groups if any(p is fc1 for p in g["params"])) == pytest.approx(0.001)
    # one learning rate by default: the two decay groups as before
    cfg = load_config(ROOT / "recipes" / "esc10_panns.yaml", ["optim.lr=0.01", "optim.backbone_lr_scale=1"])
    assert {g["lr"] for g in build_optimizer(cfg, model).param_groups} == {0.01}


def test_recipe_front_end_must_be_the_released_one(tmp_path, monkeypatch):
    weights = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save({"model": to_official_state_dict(create_model("panns_cnn6"), "panns_cnn6")}, weights)
    monkeypatch.setenv("AUDIOCNN_WEIGHTS", str(tmp_path))
    check_recipe(load_config(ROOT / "recipes" / "esc10_panns.yaml"))
    with pytest.raises(ConfigError, match=r"frontend.hop_length=256 \(needs 320\).*"):
        check_recipe(load_config(ROOT / "recipes" / "esc10_panns.yaml", ["frontend.hop_length=256"]))
    with pytest.raises(ConfigError, match=r"data.sample_rate=16000 \(needs 32000\)"):
        check_recipe(load_config(ROOT / "recipes" / "esc10_panns.yaml", ["data.sample_rate=16000"]))


def test_verbs_need_weights_for_a_released_model(tmp_path, capsys):
    with pytest.raises(EmbedError, match="needs --weights"):
        load_embedder("panns_cnn6")
    from audiocnn.cli import main

    assert main(["predict", "panns_cnn6", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "panns_cnn6 needs --weights FILE (e.g. Cnn6_mAP=0.343.pth" in err and len(err.splitlines()) == 1


def test_summary_of_a_released_model():
    from audiocnn.commands import summary

    table = summary("panns_cnn14", input_shape="1,1,64,101", depth=1)
    assert "1x527" in table and "80,753,615" in table  # the published CNN14 trainable count


def test_label_file_format():
    path = ROOT / "audiocnn" / "models" / "labels" / "audioset_class_labels_indices.csv"
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["index", "mid", "display_name"]
    assert [int(r["index"]) for r in rows] == list(range(527))
    assert (rows[0]["mid"], rows[137]["mid"]) == ("/m/09x0r", "/m/04rlf")
