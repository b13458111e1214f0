"""The run records users expect: env.txt, plain progress lines off a terminal, resume with changed keys,
TensorBoard scalars, and a test target that says why tests were skipped."""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import librosa
import pytest
import soundfile
import soxr
import yaml

import audiocnn
from audiocnn.cli import main
from audiocnn.config import ConfigError, load_config
from audiocnn.core.checkpoint import load_checkpoint
from audiocnn.engine import train as fit
from audiocnn.engine.logging import git_commit, write_env
from test_engine import ROOT, read_metrics, tiny_overrides

RECIPE = ROOT / "recipes" / "quickstart.yaml"
PROGRESS = re.compile(r"^epoch (\d+): step (\d+)/(\d+) \((\d+)%\), \d+\.\d s, loss (\d+\.\d{3})$", re.M)


def tiny_run(tmp_path: Path, *extra: str, out: str = "runs") -> Path:
    """A trained tiny run folder (no test evaluation, no report)."""
    overrides = tiny_overrides(tmp_path, "trainer.report=false", *extra, f"trainer.output_dir={tmp_path / out}")
    cfg = load_config(RECIPE, overrides)
    return fit(cfg, quiet=True).run_dir


def env_of(run_dir: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (run_dir / "env.txt").read_text().splitlines())


# ----------------------------------------------------------------------------------------------
# 1. env.txt


def test_env_txt_records_audiocnn_its_commit_and_the_audio_libraries(tmp_path):
    write_env(tmp_path)
    env = env_of(tmp_path)
    assert env["audiocnn"] == audiocnn.__version__
    assert env["git"] == git_commit(Path(audiocnn.__file__).parent)
    assert env["git"] == "none" or re.fullmatch(r"[0-9a-f]{40}", env["git"])
    assert env["soundfile"] == soundfile.__version__
    assert env["soxr"] == soxr.__version__
    assert env["librosa"] == librosa.__version__


def test_env_txt_without_git_says_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git to run
    write_env(tmp_path)
    assert env_of(tmp_path)["git"] == "none"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_of_a_checkout_and_none_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never the repository tmp_path may sit in
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    (repo / "pkg").mkdir(parents=True)
    (repo / "untracked").mkdir()
    outside.mkdir()
    (repo / "pkg" / "__init__.py").write_text("")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", "pkg")
    git("commit", "-q", "-m", "one")
    assert git_commit(repo / "pkg") == git("rev-parse", "HEAD")
    assert git_commit(repo / "untracked") == "none"  # a package installed into a venv kept in some project
    assert git_commit(outside) == "none"


# ----------------------------------------------------------------------------------------------
# 2. plain progress lines where no bar shows


def test_plain_progress_lines_when_output_is_not_a_terminal(tmp_path, capsys):
    cfg = load_config(RECIPE, tiny_overrides(tmp_path, "trainer.epochs=2", "trainer.log_every_s=1e-6",
                                             "trainer.progress=never"))
    run = fit(cfg).run_dir
    printed, logged = capsys.readouterr().out, (run / "log.txt").read_text()
    lines = PROGRESS.findall(logged)
    assert PROGRESS.findall(printed) == lines
    rows = read_metrics(run)
    for epoch, row in enumerate(rows, 1):
        mine = [line for line in lines if int(line[0]) == epoch]
        steps = int(mine[0][2])
        assert [int(line[1]) for line in mine] == list(range(1, steps + 1))  # a tiny interval: every step
        assert [int(line[3]) for line in mine] == [100 * s // steps for s in range(1, steps + 1)]
        assert mine[-1][4] == f"{float(row['train_loss']):.3f}"  # the epoch's mean loss so far
    assert len(rows) == 2


@pytest.mark.parametrize("settings", [["trainer.progress=always", "trainer.log_every_s=1e-6"],
                                      ["trainer.progress=never", "trainer.log_every_s=0"]],
                         ids=["bar", "disabled"])
def test_no_progress_lines_with_a_bar_or_when_disabled(tmp_path, settings):
    run = tiny_run(tmp_path, "trainer.epochs=1", *settings)
    assert not PROGRESS.findall((run / "log.txt").read_text())


# ----------------------------------------------------------------------------------------------
# 3. resume with keys that change neither model nor data

RNG_HEAVY = ["augment.mixup_alpha=0.3", "augment.time_masks=1", "augment.gain_db=3", "model.args.drop_rate=0.3"]


def test_resume_extends_a_run_as_if_planned_that_long(tmp_path):
    """A step schedule does not depend on the length: 2 epochs extended to 3 equal 3 uninterrupted epochs."""
    schedule = ["optim.scheduler=step", "optim.step_size=1", "optim.gamma=0.5", *RNG_HEAVY]
    run = tiny_run(tmp_path, "trainer.epochs=2", *schedule)
    before = read_metrics(run)
    assert main(["train", "--resume", str(run), "trainer.epochs=3", "trainer.early_stopping=5"]) == 0
    reference = tiny_run(tmp_path, "trainer.epochs=3", *schedule, out="reference")
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and rows[:2] == before
    assert rows == read_metrics(reference)  # restored model, optimizer, scheduler and RNG states
    saved = yaml.safe_load((run / "config.yaml").read_text())["trainer"]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 3
    for trainer in (saved, last["config"]["trainer"]):
        assert (trainer["epochs"], trainer["early_stopping"]) == (3, 5)
    log = (run / "log.txt").read_text()
    assert "resumed at epoch 2" in log
    assert "changed on resume: trainer.epochs 2 -> 3, trainer.early_stopping 0 -> 5" in log
    assert (run / "eval" / "test_metrics.json").is_file()


def test_resume_extends_a_cosine_run_on_the_new_length(tmp_path):
    """Cosine depends on the length: the extended epochs follow the schedule of a run planned that long."""
    run = tiny_run(tmp_path, "trainer.epochs=2", "optim.scheduler=cosine")
    before = read_metrics(run)
    fit(None, resume=run, overrides=["trainer.epochs=3"], quiet=True)
    reference = read_metrics(tiny_run(tmp_path, "trainer.epochs=3", "optim.scheduler=cosine", out="reference"))
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and rows[:2] == before
    assert before[1]["lr"] != reference[1]["lr"]  # the done epochs followed the 2-epoch curve
    assert rows[2]["lr"] == reference[2]["lr"]
    assert float(rows[2]["val_accuracy"]) >= 0 and load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 3


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("resume"), "trainer.epochs=2")


@pytest.mark.parametrize("override, message", [
    ("optim.lr=1e-2", "optim.lr cannot change, it would change the model or the data"),
    ("data.batch_size=4", "data.batch_size cannot change, it would change the model or the data"),
    ("trainer.seed=1", "trainer.seed cannot change"),
    ("trainer.epoch=3", "did you mean 'epochs'"),
    ("trainer.epochs=1", "the run has trained 2 epochs already"),
    ("trainer.log_every_s=soon", "trainer.log_every_s: expected a number"),
    ("recipes/quickstart.yaml", "--resume takes the run folder, not a recipe"),
])
def test_resume_refuses_what_would_change_the_model_or_data(two_epoch_run, capsys, override, message):
    config = (two_epoch_run / "config.yaml").read_bytes()
    assert main(["train", "--resume", str(two_epoch_run), override]) == 2
    assert message in capsys.readouterr().err
    assert (two_epoch_run / "config.yaml").read_bytes() == config


def test_resume_cannot_extend_a_onecycle_run(tmp_path):
    run = tiny_run(tmp_path, "trainer.epochs=1", "optim.scheduler=onecycle")
    with pytest.raises(ConfigError, match="onecycle schedule is laid out over 1 epochs"):
        fit(None, resume=run, overrides=["trainer.epochs=2"])


# ----------------------------------------------------------------------------------------------
# 4. TensorBoard


def test_tensorboard_scalars_equal_metrics_csv(tmp_path):
    pytest.importorskip("tensorboard", reason="pip install audiocnn[tensorboard]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tiny_run(tmp_path, "trainer.epochs=2", "trainer.loggers=[csv,tensorboard]")
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    columns = [k for k in rows[0] if k != "epoch"]  # every column is a number here, lr included
    assert "lr" in columns and sorted(events.Tags()["scalars"]) == sorted(columns)
    for column in columns:
        got = [(e.step, e.value) for e in events.Scalars(column)]
        assert got == [(int(r["epoch"]), pytest.approx(float(r[column]), rel=1e-6, abs=1e-12)) for r in rows], column


def test_tensorboard_not_installed_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if it were missing
    cfg = load_config(RECIPE, tiny_overrides(tmp_path, "trainer.loggers=[csv,tensorboard]"))
    with pytest.raises(ConfigError, match=r"pip install audiocnn\[tensorboard\]"):
        fit(cfg)
    assert not (tmp_path / "runs").exists()  # before any folder is made


def test_tensorboard_is_an_optional_extra_that_tests_install():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads pyproject.toml")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["tensorboard"] == ["tensorboard>=2.10"]
    assert "tensorboard>=2.10" in extras["test"]


# ----------------------------------------------------------------------------------------------
# 5. make test


def test_make_test_shows_skip_reasons():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    pytest_line = next(line for line in recipe.splitlines() if "pytest" in line)
    assert "-rs" in pytest_line.split()
