"""``trainer.ema_decay``: the moving average against torch's own AveragedModel, and what a run keeps of it."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from audiocnn.config import load_config
from audiocnn.core.checkpoint import load_checkpoint
from audiocnn.core.errors import ConfigError
from audiocnn.engine.ema import WeightEMA
from audiocnn.evaluation.evaluate import evaluate_run
from audiocnn.pipelines import train

ROOT = Path(__file__).resolve().parents[1]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 3))


def test_matches_torch_averaged_model_with_the_same_schedule():
    decay = 0.8  # reached after 26 warm-up steps
    model = _net()

    def avg_fn(avg, cur, n):  # n: updates before this one, counting AveragedModel's initial copy
        d = min(decay, (1.0 + (int(n) - 1)) / (10.0 + (int(n) - 1)))
        return d * avg + (1 - d) * cur if avg.is_floating_point() else cur

    reference = AveragedModel(model, avg_fn=avg_fn, use_buffers=True)
    reference.update_parameters(model)  # its first update copies: the initial weights, as WeightEMA's copy
    ema = WeightEMA(model, decay=decay)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    for _ in range(40):
        x = torch.randn(5, 2, 8, generator=gen)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update()
        reference.update_parameters(model)
    assert ema.updates == 40 and ema.current_decay() == decay
    ours = ema.state_dict()
    theirs = reference.module.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-6, atol=1e-7, msg=key)
    # and it is not the trained weights: an average that lags them
    assert not torch.allclose(ours["4.weight"], model.state_dict()["4.weight"])


def test_warm_up_then_the_decay():
    ema = WeightEMA(_net(), decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    ema.updates = 10_000
    assert ema.current_decay() == 0.999
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(_net(), decay=1.0)


def _overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [f"data.root={tmp_path / 'synthetic'}", f"data.cache_dir={tmp_path / 'cache'}",
            f"trainer.output_dir={tmp_path / 'runs'}", "data.num_classes=4", "data.num_per_class=12",
            "data.duration=0.5", "data.sample_rate=8000", "data.batch_size=8", "model.name=cnn_tiny",
            "model.args.width=8", "trainer.progress=never", "trainer.threads=1", *extra]


def test_a_run_evaluates_and_keeps_the_averaged_weights(tmp_path):
    cfg = load_config(ROOT / "recipes" / "quickstart.yaml",
                      _overrides(tmp_path, "trainer.epochs=4", "trainer.ema_decay=0.9", "optim.lr=0.01"))
    run = train(cfg, quiet=True)
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"val_accuracy", "val_loss", "raw_val_accuracy", "raw_val_loss"} <= set(rows[0])
    assert any(r["val_loss"] != r["raw_val_loss"] for r in rows)
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["ema_updates"] > 0 and set(best["raw_model"]) == set(best["model"])
    assert any(not torch.equal(best["model"][k], best["raw_model"][k]) for k in best["model"])
    # evaluate loads the averaged weights: its val loss is the val_loss of the best epoch, not raw_val_loss
    row = next(r for r in rows if int(r["epoch"]) == best["best_epoch"])
    got = evaluate_run(run, split="val", quiet=True)
    assert got["loss"] == pytest.approx(float(row["val_loss"]), rel=1e-5)


def test_decay_out_of_range_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="trainer.ema_decay"):
        load_config(ROOT / "recipes" / "quickstart.yaml", _overrides(tmp_path, "trainer.ema_decay=1.5"))
