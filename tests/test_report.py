"""``audiocnn report``: one self-contained page, checked as a file and as a browser renders it.

The browser tests run Debian's headless ``chromium`` (``.ci/run`` installs it) and are skipped without it.
"""
from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocnn.cli import main
from audiocnn.evaluation.report import _choose, write_report

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "quickstart.yaml")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                                    "(apt-get install -y chromium; .ci/run does this)")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch quickstart run on 4 synthetic classes and its report."""
    tmp = tmp_path_factory.mktemp("report")
    assert main(["train", RECIPE, f"data.root={tmp / 'syn'}", f"data.cache_dir={tmp / 'cache'}",
                 f"trainer.output_dir={tmp / 'runs'}", "data.num_classes=4", "data.num_per_class=10",
                 "trainer.epochs=2", "model.args.width=8", "trainer.progress=never"]) == 0
    (run_dir,) = (tmp / "runs" / "quickstart").iterdir()
    report = run_dir / "report.html"
    if not report.exists():  # until train writes it itself
        write_report(run_dir)
    return run_dir, report


class _Page(HTMLParser):
    """Tags with their attributes, and the text of every per-class table row's first cell."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.class_rows: list[str] = []
        self._in_table = self._first_cell = False
        self._cell = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table" and "per-class" in (a.get("class") or ""):
            self._in_table = True
        elif tag == "tr" and self._in_table:
            self._cell = 0
        elif tag == "td" and self._in_table:
            self._cell += 1
            self._first_cell = self._cell == 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        if tag == "td":
            self._first_cell = False

    def handle_data(self, data):
        if self._first_cell:
            self.class_rows.append(data)

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


def test_report_is_self_contained(run):
    run_dir, report = run
    text = report.read_text()
    page = _Page(text)
    assert 20_000 < len(text) < 3_000_000
    assert "http://" not in text and "https://" not in text
    for tag, attrs in page.tags:
        for key in ("src", "href", "srcset", "poster", "data"):
            value = attrs.get(key)
            if value is not None and not (key == "href" and value.startswith("#")):
                assert value.startswith("data:"), f"<{tag} {key}={value[:60]}> is not embedded"
    assert not page.all("link") and not page.all("iframe")
    assert all(s.get("src") is None for s in page.all("script"))
    csp = [m for m in page.all("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]

    images = page.all("img")
    assert images and all(i["src"].startswith("data:image/png;base64,") for i in images)
    for img in images:
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    alts = [i["alt"] for i in images]
    for alt in ("learning curves", "confusion matrix", "first-layer filters", "activation maps"):
        assert alt in alts


def test_report_content(run):
    run_dir, report = run
    page = _Page(report.read_text())
    labels = json.loads((run_dir / "labels.json").read_text())["labels"]
    assert page.class_rows == labels
    text = report.read_text()
    for heading in ("Learning curves", "Confusion matrix", "Hardest classes", "Lowest recall", "Most-confused pairs",
                    "Correctly classified", "Misclassified", "Inside the network", "Activation maps", "Resolved config"):
        assert heading in text
    # every example card: a spectrogram, three predictions, an audio player holding the crop the model hears
    audios = page.all("audio")
    cards = text.count('<div class="ex ')
    assert cards >= 4 and len(audios) == cards and text.count("<li>") == 3 * cards
    wave, sr = sf.read(io.BytesIO(base64.b64decode(audios[0]["src"].split(",", 1)[1])))
    assert sr == 8000 and len(wave) == 8000


def test_report_without_data_keeps_the_rest(run, tmp_path, monkeypatch):
    import audiocnn.evaluation.report as report

    def missing(*_args, **_kwargs):
        raise FileNotFoundError("data/synthetic is gone")

    monkeypatch.setattr(report, "load_data", missing)
    out = write_report(run[0], out=tmp_path / "page.html")
    text = out.read_text()
    assert "could not be loaded" in text and "data/synthetic is gone" in text
    assert 'alt="confusion matrix"' in text and 'alt="learning curves"' in text and "<audio" not in text


def test_report_cli(run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(run[0]), "--split", "val", "--examples", "1", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert "val metrics" in text and text.count('<div class="ex ') == 2
    assert (run[0] / "eval" / "val_metrics.json").exists()  # evaluated first, since it had not been


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "regression"])
def test_example_choice_every_task(task):
    rng = np.random.default_rng(0)
    if task == "multiclass":
        out, y = rng.dirichlet(np.ones(3), 20), rng.integers(0, 3, 20)
    elif task == "binary":
        out, y = rng.random(20), rng.integers(0, 2, 20).astype(float)
    elif task == "multilabel":
        out, y = rng.random((20, 3)), rng.integers(0, 2, (20, 3)).astype(float)
    else:
        out, y = rng.random((20, 2)), rng.random((20, 2))
    groups = _choose(task, out, y, 3)
    assert len(groups) == 2 and all(0 < len(idx) <= 3 for _, _, idx, _ in groups)
    assert all(0 <= i < 20 for _, _, idx, _ in groups for i in idx)
    assert [ok for *_, ok in groups] == ([None, None] if task == "regression" else [True, False])


def _chromium(user_dir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", f"--user-data-dir={user_dir}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@needs_chromium
def test_report_in_headless_chromium(run, tmp_path):
    """Every image and audio clip loads, nothing errs or is blocked, and the screenshot is not blank."""
    from PIL import Image

    _, report = run
    url = report.resolve().as_uri()
    dom = _chromium(tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    (check,) = [a for t, a in _Page(dom.stdout).tags if a.get("id") == "selfcheck"]
    assert check.get("data-done") == "1", "the page's load handler did not finish"
    expected = len(_Page(report.read_text()).all("img"))
    assert int(check["data-images"]) == expected > 0
    assert int(check["data-broken-images"]) == 0
    assert int(check["data-audios"]) > 0 and int(check["data-broken-audios"]) == 0
    assert json.loads(check["data-errors"]) == []
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console

    shot = tmp_path / "report.png"
    res = _chromium(tmp_path / "profile", "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,4000", url)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape == (4000, 1280, 3)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 200  # drawn, not blank


def _has_image_datasets() -> bool:
    import typing

    from audiocnn.config import FrontendConfig
    import importlib.util
    if importlib.util.find_spec("audiocnn.data.images") is None:
        return False
    return "image" in typing.get_args(typing.get_type_hints(FrontendConfig)["kind"])


@pytest.mark.skipif(not _has_image_datasets(), reason="image datasets (frontend.kind: image) are not in this tree yet")
def test_image_run_report_shows_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("dark", "light")):
        for i in range(12):
            px = np.clip(rng.normal(60 + 130 * c, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
            (tmp_path / "img" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(px).save(tmp_path / "img" / name / f"{i}.png")
    assert main(["train", RECIPE, "data.name=imagefolder", f"data.root={tmp_path / 'img'}", "data.image_size=[12,12]",
                 "data.test_fraction=0.25", "frontend.kind=image", "frontend.normalize=per_channel",
                 f"trainer.output_dir={tmp_path / 'runs'}", "trainer.epochs=1", "model.args.width=4",
                 "trainer.progress=never"]) == 0
    (run_dir,) = (tmp_path / "runs" / "quickstart").iterdir()
    text = write_report(run_dir, out=tmp_path / "image.html").read_text()
    assert "<audio" not in text and "normalised image" in text and 'alt="input of ' in text
