"""``audiocnn show``: PNG and SVG figures whose panels are exactly what the recipe's front-end computes."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.cli import main
from audiocnn.config import load_config
from audiocnn.plots import signal_figure
from audiocnn.evaluation.show import load_for_show
from audiocnn.features import FrontendSettings

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "quickstart.yaml"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 0.8 s chirp from 300 Hz to 3 kHz over noise, at 22.05 kHz (the recipe resamples it to 8 kHz)."""
    sr = 22050
    t = np.arange(int(0.8 * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * (300 * t + 0.5 * (2700 / 0.8) * t ** 2))
    wave += 0.01 * np.random.default_rng(0).standard_normal(len(t))
    path = tmp_path_factory.mktemp("show") / "chirp.wav"
    sf.write(path, wave.astype(np.float32), sr)
    return path


def _panel(fig, title: str):
    (ax,) = [a for a in fig.axes if a.get_title(loc="left").startswith(title)]
    (mesh,) = ax.collections
    return ax, np.asarray(mesh.get_array())


def test_show_writes_png_and_svg(clip, tmp_path, capsys):
    png, svg = tmp_path / "fig.png", tmp_path / "fig.svg"
    assert main(["show", str(clip), "--recipe", str(RECIPE), "--out", str(png)]) == 0
    assert main(["show", str(clip), "--out", str(svg)]) == 0  # default front-end, 16 kHz
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "mel spectrogram" in text
    assert "wrote" in capsys.readouterr().out


def test_show_rejects_other_formats_and_bad_audio(clip, tmp_path, capsys):
    assert main(["show", str(clip), "--out", str(tmp_path / "fig.jpg")]) == 2
    assert ".png or .svg" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really audio")
    assert main(["show", str(bad), "--out", str(tmp_path / "bad.png")]) == 2
    assert "bad.wav" in capsys.readouterr().err


def test_panels_are_the_frontend_outputs(clip):
    wave, cfg = load_for_show(clip, RECIPE)
    sr = cfg.data.sample_rate
    assert sr == 8000 and abs(len(wave) - 0.8 * sr) <= 1
    fig, arrays = signal_figure(wave, sr, cfg.frontend)
    x = torch.from_numpy(wave)[None]
    with torch.no_grad():
        mel = FrontendSettings.of(cfg.frontend).build(sr)(x)[0].numpy()  # the recipe's own kind: logmel in dB
        mfcc = FrontendSettings.of(dataclasses.replace(cfg.frontend, kind="mfcc")).build(sr)(x)[0].numpy()
        power = FrontendSettings.of(dataclasses.replace(cfg.frontend, kind="stft")).build(sr)(x)[0].numpy()

    # the arrays returned and the arrays inside the drawn meshes are the front-end's, bit for bit
    np.testing.assert_array_equal(arrays["mel"], mel)
    ax, drawn = _panel(fig, "mel spectrogram")
    np.testing.assert_array_equal(drawn.reshape(mel.shape), mel)
    assert "model's input" in ax.get_title(loc="left") and ax.get_ylabel() == "Hz"
    ax, drawn = _panel(fig, "MFCCs")
    np.testing.assert_array_equal(drawn.reshape(mfcc.shape), mfcc)
    assert ax.get_xlabel() == "seconds"  # the bottom panel; all panels share the time axis
    # the STFT panel is |X|**2 in dB; its frequency axis runs to Nyquist
    ax, drawn = _panel(fig, "spectrogram (STFT)")
    db = 10 * np.log10(np.maximum(power, cfg.frontend.amin))
    np.testing.assert_allclose(drawn.reshape(power.shape), db, rtol=1e-6)
    assert ax.get_ylim()[1] == pytest.approx(sr / 2, rel=0.05)
    # colour bars in dB, time axes in seconds spanning the clip
    labels = [a.get_ylabel() for a in fig.axes]
    assert labels.count("dB") == 2 and any(label.startswith("dB") for label in labels if label != "dB")
    assert fig.axes[0].get_xlim()[1] == pytest.approx(0.8, abs=0.01)


def test_show_uses_a_run_folder_config(clip, tmp_path):
    cfg = load_config(RECIPE, ["frontend.n_mels=24", "data.sample_rate=16000"])
    from audiocnn.config import save_config
    save_config(cfg, tmp_path / "config.yaml")
    wave, loaded = load_for_show(clip, tmp_path)
    _, arrays = signal_figure(wave, loaded.data.sample_rate, loaded.frontend)
    assert arrays["mel"].shape[0] == 24 and abs(len(wave) - 0.8 * 16000) <= 1
