"""Training engine: run folders, kill-and-resume equivalence, task types, bad data never loses work."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.config import load_config
from audiocnn.pipelines import train
from audiocnn.plots import TIMING_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.num_classes=4", "data.num_per_class=12", "data.duration=0.5", "data.sample_rate=8000",
    "data.batch_size=8", "model.name=cnn_tiny", "model.args.width=8", "trainer.progress=never",
    "trainer.threads=1",  # runs compared bit for bit: the automatic count follows the load (core/threads.py)
]


def tiny_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [f"data.root={tmp_path / 'synthetic'}", f"data.cache_dir={tmp_path / 'cache'}",
            f"trainer.output_dir={tmp_path / 'runs'}", *TINY, *extra]


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def test_run_folder_layout(tmp_path):
    cfg = load_config(ROOT / "recipes" / "quickstart.yaml", tiny_overrides(tmp_path, "trainer.epochs=2"))
    run = train(cfg, quiet=True)
    assert run.parent == tmp_path / "runs" / "quickstart"
    for name in ("config.yaml", "metrics.csv", "log.txt", "labels.json", "env.txt", "checkpoints/best.pt",
                 "checkpoints/last.pt", "eval/test_metrics.json", "eval/test_confusion.png", "eval/test_confusion.csv",
                 "eval/test_report.json"):
        assert (run / name).is_file(), name
    assert len(read_metrics(run)) == 2
    with open(run / "metrics.csv") as f:
        speed = list(csv.DictReader(f))
    for row in speed:  # 4 classes x 12 clips, 80/10/10 split -> whole batches of 8 only
        assert int(row["train_samples"]) % 8 == 0 and int(row["train_samples"]) > 0
        assert 0 <= float(row["data_wait"]) < 1
        assert float(row["train_time_s"]) <= float(row["time_s"])
        assert float(row["samples_per_s"]) == pytest.approx(int(row["train_samples"]) / float(row["train_time_s"]),
                                                              rel=1e-6)
    assert json.loads((run / "labels.json").read_text())["task"] == "multiclass"
    # the working directory never changes
    assert Path.cwd() != run


def test_keep_epochs_writes_each_epochs_weights(tmp_path):
    """``trainer.keep_epochs``: epoch_NNN.pt per epoch; evaluating epoch 1's on val gives epoch 1's val metrics."""
    from audiocnn.core.checkpoint import load_checkpoint
    from audiocnn.evaluation.evaluate import evaluate_run

    cfg = load_config(ROOT / "recipes" / "quickstart.yaml", tiny_overrides(tmp_path, "trainer.epochs=3",
                                                                           "trainer.keep_epochs=true"))
    run = train(cfg, quiet=True)
    kept = sorted(p.name for p in (run / "checkpoints").glob("epoch_*.pt"))
    assert kept == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    states = [load_checkpoint(run / "checkpoints" / name) for name in kept]
    assert [s["epoch"] for s in states] == [1, 2, 3]
    last = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(states[2]["model"][k], last[k]) for k in last)
    assert not all(torch.equal(states[0]["model"][k], last[k]) for k in last)
    row = read_metrics(run)[0]
    got = evaluate_run(run, split="val", checkpoint=str(run / "checkpoints" / kept[0]), quiet=True)
    assert got["accuracy"] == pytest.approx(float(row["val_accuracy"]))
    assert got["loss"] == pytest.approx(float(row["val_loss"]), rel=1e-4)


def _train_cmd(tmp_path, *args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "audiocnn", "train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    recipe = str(ROOT / "recipes" / "quickstart.yaml")
    noise_dir = tmp_path / "noise"  # every waveform augmentation on, the noise read from a folder
    noise_dir.mkdir()
    sf.write(noise_dir / "hum.wav", np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1, 8000)
    common = tiny_overrides(tmp_path, "trainer.epochs=6", "augment.mixup_alpha=0.3", "augment.time_masks=1",
                            "augment.gain_db=3", "model.args.drop_rate=0.3", "augment.speed_prob=0.5",
                            "augment.stretch_prob=0.3", "augment.pitch_prob=0.3",
                            "augment.shift_prob=0.5", "augment.eq_prob=0.5", "augment.eq_f_max=3000",
                            "augment.reverb_prob=0.5", "augment.reverb_rt60_high=0.4", "augment.noise_prob=0.5",
                            "trainer.ema_decay=0.8", "augment.vtlp_prob=0.5",
                            f"augment.noise_dir={noise_dir}")
    ref = _train_cmd(tmp_path, recipe, *common, "trainer.output_dir=ref")
    out, _ = ref.communicate(timeout=300)
    assert ref.returncode == 0, out
    ref_dir = tmp_path / out.strip().splitlines()[-1].split("run folder: ")[-1]

    proc = _train_cmd(tmp_path, recipe, *common, "trainer.output_dir=killed")
    run_dir = None
    deadline = time.time() + 300
    while time.time() < deadline:
        dirs = list((tmp_path / "killed").glob("quickstart/*/metrics.csv"))
        if dirs and len(read_metrics(dirs[0].parent)) >= 3:
            run_dir = dirs[0].parent
            break
        time.sleep(0.05)
    assert run_dir is not None, "training never reached epoch 3"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(read_metrics(run_dir)) < 6, "the run finished before it could be killed"

    resumed = _train_cmd(tmp_path, "--resume", str(run_dir))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resumed at epoch" in out
    assert read_metrics(run_dir) == read_metrics(ref_dir)
    ref_test = json.loads((ref_dir / "eval" / "test_metrics.json").read_text())
    got_test = json.loads((run_dir / "eval" / "test_metrics.json").read_text())
    assert got_test == ref_test


@pytest.mark.parametrize("task", ["binary", "multilabel", "regression"])
def test_manifest_task_types_train(tmp_path, task):
    rng = np.random.default_rng(0)
    rows = []
    sr = 8000
    for i in range(24):
        freq = 300 if i % 2 == 0 else 1200
        t = np.arange(sr // 2) / sr
        wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
        path = tmp_path / "audio" / f"{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wave.astype(np.float32), sr)
        split = "test" if i >= 20 else ("val" if i >= 16 else "train")
        low = int(freq == 300)
        if task == "binary":
            rows.append({"path": f"audio/{i}.wav", "label": "low" if low else "high", "split": split})
        elif task == "multilabel":
            rows.append({"path": f"audio/{i}.wav", "low": low, "high": 1 - low, "any": 1, "split": split})
        else:
            rows.append({"path": f"audio/{i}.wav", "valence": float(low), "arousal": freq / 1000, "split": split})
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    labels = {"binary": ["label"], "multilabel": ["low", "high", "any"], "regression": ["valence", "arousal"]}[task]
    # No trainer.monitor: each task's own metric, one it reports (issue 11: regression and multilabel runs
    # monitored val_accuracy, which they do not have, and kept the last epoch as "best").
    monitor = {"binary": "val_accuracy", "multilabel": "val_mAP", "regression": "val_loss"}[task]
    best_of = min if task == "regression" else max
    cfg = load_config(ROOT / "recipes" / "quickstart.yaml", [
        "data.name=manifest", f"data.manifest={tmp_path / 'm.csv'}", f"data.task={task}",
        f"data.label_columns={json.dumps(labels)}", "data.sample_rate=8000", "data.duration=0.5",
        f"data.cache_dir={tmp_path / 'cache'}", f"trainer.output_dir={tmp_path / 'runs'}", "trainer.epochs=12",
        "model.args.width=8", "data.batch_size=8",
        "optim.lr=0.01", "trainer.progress=never"])
    run = train(cfg, quiet=True)
    assert "not among the epoch metrics" not in (run / "log.txt").read_text()
    values = [float(r[monitor]) for r in read_metrics(run)]
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert state["best_epoch"] == values.index(best_of(values)) + 1  # the first epoch that reached the best value
    metrics = json.loads((run / "eval" / "test_metrics.json").read_text())
    if task == "binary":
        assert metrics["accuracy"] == 1.0
        assert (run / "eval" / "test_confusion.png").is_file()
    elif task == "multilabel":
        assert metrics["mAP"] > 0.9
    else:
        assert "pearson" in metrics and metrics["mse"] < 0.5


def test_bad_file_is_skipped_and_training_finishes(tmp_path):
    overrides = tiny_overrides(tmp_path, "trainer.epochs=1")
    cfg = load_config(ROOT / "recipes" / "quickstart.yaml", overrides)
    train(cfg, quiet=True)  # generates the data
    victim = sorted((tmp_path / "synthetic").rglob("*.wav"))[3]
    victim.write_bytes(b"this is not audio")
    with pytest.raises(Exception) as err:
        train(load_config(ROOT / "recipes" / "quickstart.yaml", overrides), quiet=True)
    assert victim.name in str(err.value) and "on_error=skip" in str(err.value)
    with pytest.warns(UserWarning, match=victim.name):
        run = train(load_config(ROOT / "recipes" / "quickstart.yaml", overrides + ["data.on_error=skip"]), quiet=True)
    assert (run / "checkpoints" / "last.pt").is_file()


def test_checkpoint_has_no_frontend_kernels_and_norm_is_from_train_only(tmp_path):
    import torch

    from audiocnn.data import AudioCache, build_splits
    from audiocnn.audio import fix_length
    from audiocnn.core.checkpoint import load_checkpoint
    from audiocnn.features import FrontendSettings

    cfg = load_config(ROOT / "recipes" / "quickstart.yaml", tiny_overrides(tmp_path, "trainer.epochs=1"))
    run = train(cfg, quiet=True)
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    assert not [k for k in state["model"] if k.startswith("frontend.")]
    assert {"norm.mean", "norm.std"} <= set(state["model"])

    # Independent estimate: log-mel of the centre-cropped training clips only.
    splits = build_splits(cfg.data)
    cache = AudioCache(None, cfg.data.sample_rate)
    fe = FrontendSettings.of(cfg.frontend).build(cfg.data.sample_rate)
    n = int(cfg.data.duration * cfg.data.sample_rate)

    def mean_of(examples):
        waves = torch.stack([torch.from_numpy(fix_length(np.asarray(cache.load(e.path)), n, mode="center"))
                             for e in examples])
        return fe(waves).mean(dim=(0, 2))

    train_mean = mean_of(splits.train)
    everything = mean_of(splits.train + splits.val + splits.test)
    torch.testing.assert_close(state["model"]["norm.mean"].float(), train_mean, atol=1e-3, rtol=1e-4)
    assert not torch.allclose(train_mean, everything, atol=1e-3)
