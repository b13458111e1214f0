"""``audiocnn cv``: folds from the dataset (ESC folds, FSDD speakers), each a run folder, one table, resumable."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocnn.cli import main
from audiocnn.config import load_config
from audiocnn.core.errors import ConfigError, DataError
from audiocnn.cv import cross_validate, plan_folds
from audiocnn.data import build_splits

ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = ("ana", "bo", "cy")


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory) -> Path:
    """An FSDD layout: 3 speakers (each its own pitch), digits 0-3 (each its own tone), takes 0-11."""
    root = tmp_path_factory.mktemp("fsdd")
    rec = root / "recordings"
    rec.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(4000) / 8000
    for s, speaker in enumerate(SPEAKERS):
        for digit in range(4):
            for take in range(12):
                f = 300 * (digit + 1) * (1 + 0.05 * s)
                wave = 0.4 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.size)
                sf.write(rec / f"{digit}_{speaker}_{take}.wav", wave.astype(np.float32), 8000)
    return root


def _cfg(root: Path, tmp_path: Path, *extra: str):
    return load_config(ROOT / "recipes" / "digits.yaml", [
        f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", f"trainer.output_dir={tmp_path / 'runs'}",
        "data.duration=0.5", "model.name=cnn_tiny", "model.args.width=8", "trainer.epochs=2",
        "trainer.progress=never", "trainer.threads=1", "trainer.report=false", *extra])


def test_fsdd_test_groups_hold_out_whole_speakers(fsdd, tmp_path):
    splits = build_splits(_cfg(fsdd, tmp_path, "data.test_groups=[bo]").data)
    assert {ex.group for ex in splits.test} == {"bo"} and len(splits.test) == 4 * 12
    assert {ex.group for ex in splits.train + splits.val} == {"ana", "cy"}
    assert {ex.meta["index"] for ex in splits.val} == set(range(5, 10))
    assert {ex.meta["index"] for ex in splits.train} == set(range(5)) | {10, 11}
    with pytest.raises(DataError, match=r"speaker\(s\) \['zed'\] not found .* speakers present: \['ana', 'bo', 'cy'\]"):
        build_splits(_cfg(fsdd, tmp_path, "data.test_groups=[zed]").data)


def test_plans_leave_one_group_out_and_group_k_fold(fsdd, tmp_path):
    protocol, folds = plan_folds(_cfg(fsdd, tmp_path))
    assert protocol.startswith("leave-one-group-out over 3")
    assert [(f.id, f.overrides) for f in folds] == [(s, {"test_groups": [s]}) for s in SPEAKERS]
    protocol, folds = plan_folds(_cfg(fsdd, tmp_path), folds=2)
    assert [f.overrides["test_groups"] for f in folds] == [["ana", "cy"], ["bo"]]
    with pytest.raises(ConfigError, match="--folds 5: .* has 3 groups"):
        plan_folds(_cfg(fsdd, tmp_path), folds=5)


def test_plans_the_official_esc_folds(tmp_path):
    root = tmp_path / "esc"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = []
    for fold in range(1, 6):
        for target in range(2):
            name = f"{fold}-{100 + target}-A-{target}.wav"
            sf.write(root / "audio" / name, np.zeros(800, np.float32), 8000)
            rows.append({"filename": name, "fold": fold, "target": target, "category": f"c{target}", "esc10": "True",
                         "src_file": str(100 + target), "take": "A"})
    with open(root / "meta" / "esc10.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = load_config(ROOT / "recipes" / "esc10.yaml", [f"data.root={root}"])
    protocol, folds = plan_folds(cfg)
    assert protocol.startswith("5-fold (the dataset's folds")
    assert [f.overrides for f in folds] == [{"test_fold": k, "val_fold": None} for k in range(1, 6)]
    with pytest.raises(ConfigError, match="--folds 3: .* has 5 official folds"):
        plan_folds(cfg, folds=3)


def test_a_dataset_without_folds_or_groups_is_refused(tmp_path):
    cfg = load_config(ROOT / "recipes" / "quickstart.yaml", [f"data.root={tmp_path / 'syn'}"])
    with pytest.raises(ConfigError, match="no folds and 0 group"):
        plan_folds(cfg)


def test_cross_validation_runs_every_fold_writes_the_table_and_resumes(fsdd, tmp_path, capsys):
    cfg = _cfg(fsdd, tmp_path)
    out = tmp_path / "cv"
    cross_validate(cfg, recipe="recipes/digits.yaml", only=["bo"], out=out, quiet=True)
    first = json.loads((out / "cv.json").read_text())
    assert list(first["folds"]) == ["bo"]
    bo_run = out / first["folds"]["bo"]["run"]
    assert (bo_run / "checkpoints" / "best.pt").is_file()  # a normal run folder
    # the fold's own test split is the held-out speaker, all 48 takes
    assert first["folds"]["bo"]["n"] == 48
    assert json.loads((bo_run / "eval" / "test_metrics.json").read_text())["accuracy"] == \
        first["folds"]["bo"]["metrics"]["accuracy"]

    cross_validate(cfg, recipe="recipes/digits.yaml", out=out)  # the rest; bo is kept, not trained again
    said = capsys.readouterr().out
    assert "fold bo (2/3): done before" in said
    state = json.loads((out / "cv.json").read_text())
    assert list(state["folds"]) == ["bo", "ana", "cy"] and state["folds"]["bo"] == first["folds"]["bo"]
    assert len(list(out.glob("fold-*/*/checkpoints/best.pt"))) == 3
    table = (out / "cv.md").read_text()
    accs = [state["folds"][s]["metrics"]["accuracy"] for s in SPEAKERS]
    assert f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f}" in table
    assert "Reproduce: `audiocnn cv recipes/digits.yaml`" in table
    assert (out / "cv.png").read_bytes()[:4] == b"\x89PNG"

    with pytest.raises(ConfigError, match="holds a cross-validation of other settings"):
        cross_validate(_cfg(fsdd, tmp_path, "optim.lr=0.01"), recipe="recipes/digits.yaml", out=out, quiet=True)


def test_cli_cv_reports_a_bad_fold_in_one_line(fsdd, tmp_path, capsys):
    code = main(["cv", str(ROOT / "recipes" / "digits.yaml"), f"data.root={fsdd}", "--only", "zed",
                 "--out", str(tmp_path / "cv")])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: --only zed: not a fold") and "ana, bo, cy" in err
