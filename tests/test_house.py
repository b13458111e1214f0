"""Issue 11's redesign: the latent bugs it fixed, work done once after training, one error hierarchy."""
from __future__ import annotations

import multiprocessing as mp
import re
from pathlib import Path

import pytest
import torch

from audiocnn.cli import main
from audiocnn.config import load_config
from audiocnn.core.checkpoint import clean_state_dict
from audiocnn.core.errors import AudiocnnError, ConfigError, EnvironmentFailure
from audiocnn.models import create_model
from audiocnn.models.summary import model_summary
from audiocnn.modalities import Classifier
from audiocnn.pipelines import train
from audiocnn.runs import make_run_dir

ROOT = Path(__file__).resolve().parents[1]


def test_clean_state_dict_strips_whole_prefixes_only():
    w = torch.zeros(1)
    cleaned = clean_state_dict({"module.enc.submodule.weight": w, "_orig_mod.module.head.fc.bias": w,
                                "net._orig_mod.layer.weight": w, "modules.x": w})
    assert list(cleaned) == ["enc.submodule.weight", "head.fc.bias", "net.layer.weight", "modules.x"]


def _claim(args):
    out, barrier = args
    barrier.wait()  # every process asks for a folder in the same instant
    return str(make_run_dir(out, "race"))


def test_run_folders_started_in_the_same_second_are_distinct(tmp_path):
    ctx = mp.get_context("fork")
    n = 16
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            made = pool.map(_claim, [(tmp_path, barrier)] * n)
    assert len(set(made)) == n and all((Path(p) / "checkpoints").is_dir() for p in made)


def test_summary_lists_each_block_under_its_parent():
    rows = model_summary(create_model("resnet18", num_classes=10, in_chans=3), torch.zeros(1, 3, 64, 64),
                         max_depth=2)["rows"]
    names = [r.name for r in rows]
    for i, name in enumerate(names):
        parent = name.rpartition(".")[0]
        if parent:  # the parent's row comes before, and every row between them is inside it
            j = names.index(parent)
            assert j < i and all(n.startswith(parent + ".") for n in names[j + 1:i]), (parent, name)
    assert names.index("stages") < names.index("stages.0") < names.index("head")


def test_after_training_the_test_split_is_run_once_and_the_best_checkpoint_loaded_once(tmp_path, monkeypatch):
    forwarded = {"eval": 0}
    loads: list[str] = []
    forward, load = Classifier.forward, torch.load

    def counting_forward(self, x, **kw):
        if not self.training:
            forwarded["eval"] += x.shape[0]
        return forward(self, x, **kw)

    def counting_load(f, *a, **kw):
        loads.append(Path(f).name if isinstance(f, (str, Path)) else "")
        return load(f, *a, **kw)

    monkeypatch.setattr(Classifier, "forward", counting_forward)
    monkeypatch.setattr(torch, "load", counting_load)
    epochs = 2
    cfg = load_config(ROOT / "recipes" / "quickstart.yaml", [
        f"data.root={tmp_path / 'synthetic'}", f"data.cache_dir={tmp_path / 'cache'}",
        f"trainer.output_dir={tmp_path / 'runs'}", "data.num_classes=4", "data.num_per_class=12",
        "data.duration=0.5", "data.sample_rate=8000", "data.batch_size=8", "model.args.width=8",
        "trainer.progress=never", f"trainer.epochs={epochs}"])
    run = train(cfg, quiet=True)
    sizes = dict(re.findall(r"(\w+) (\d+)", (run / "log.txt").read_text().split("data: ")[1].splitlines()[0]))
    val, test = int(sizes["val"]), int(sizes["test"])
    assert (run / "report.html").is_file()
    # validation each epoch, the test split once, and the one example of the report's activation maps
    assert forwarded["eval"] == epochs * val + test + 1
    assert loads.count("best.pt") == 1


def test_expected_errors_are_one_line_with_their_exit_status(capsys):
    assert issubclass(ConfigError, AudiocnnError) and EnvironmentFailure.exit_code == 3
    assert main(["train", str(ROOT / "recipes" / "quickstart.yaml"), "optim.lrate=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean 'lr'?" in err and "Traceback" not in err
    assert main(["summary", "resnet18", "--input-shape", "1,x"]) == 2


def test_an_unexpected_exception_keeps_its_traceback(monkeypatch):
    import audiocnn.cli as cli

    def broken(*args, **kwargs):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(cli, "list_models", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["list-models"])
