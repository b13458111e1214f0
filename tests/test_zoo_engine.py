"""Every registered model trains for a few steps through the one training engine (on spectrograms)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from audiocnn.config import load_config
from audiocnn.pipelines import train
from audiocnn.core.checkpoint import load_checkpoint
from audiocnn.models import list_models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo_engine")


WAVEFORM_INPUT = {name: ["frontend.kind=waveform", "data.sample_rate=16000", "model.args.hop_length=1600"]
                  for name in ("crepe_tiny", "crepe_full")}
"""Models that take the waveform itself (CREPE frames 16 kHz audio inside the network; 100 ms hops keep it short)."""
SUB_BANDS_FOR_64_MELS = {f"bc_resnet_{w}": ["model.args.sub_bands=4"] for w in (1, 3, 6, 8)}
"""BC-ResNet's SubSpectral Norm needs bands that divide the 64 mels' stage sizes (32, 16, 8): 4, not the paper's 5."""


@pytest.mark.parametrize("name", list_models())
def test_model_trains_through_engine(name, workdir, tmp_path):
    torch.set_num_threads(1)  # many small steps: one thread avoids spin-waiting on a shared CPU
    overrides = [
        f"data.root={workdir / 'synthetic'}", f"data.cache_dir={workdir / 'cache'}",
        f"trainer.output_dir={tmp_path / 'runs'}", "data.num_classes=3", "data.num_per_class=8",
        "data.sample_rate=8000", "data.duration=1.0", "data.batch_size=2", "frontend.n_mels=64",
        "frontend.hop_length=128", f"model.name={name}", "trainer.epochs=1", "trainer.max_steps_per_epoch=2",
        "trainer.progress=never", "trainer.report=false", "optim.warmup_epochs=0", *WAVEFORM_INPUT.get(name, []),
        *SUB_BANDS_FOR_64_MELS.get(name, []),
    ]
    run = train(load_config(ROOT / "recipes" / "quickstart.yaml", overrides), quiet=True)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and (run / "eval" / "test_metrics.json").is_file()
    trained = {k for k in state["model"] if k.startswith("network.")}
    assert trained, f"{name}: no network weights in the checkpoint"
    del state
    shutil.rmtree(run)  # the large zoo members write checkpoints of ~0.5-1 GB; keep at most one on disk
