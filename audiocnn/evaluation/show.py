"""``audiocnn show AUDIO [--recipe R] [--out fig.png|svg]``: look at a sound as a recipe's front-end sees it.

One figure: the waveform, the STFT spectrogram, the mel spectrogram and the MFCCs, each computed by
:func:`~audiocnn.features.build_frontend` with the recipe's ``frontend`` settings at its
``data.sample_rate`` (without a recipe: the defaults of :class:`~audiocnn.config.FrontendConfig` at
16 kHz). Axes in seconds and Hz, colour bars in dB.

Example:
    >>> show("dog.wav", recipe="recipes/esc10.yaml", out="dog.svg")
    PosixPath('dog.svg')
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from audiocnn.core.errors import ConfigError
from audiocnn.config import Config, load_config
from audiocnn.audio.io import load_audio
from audiocnn.plots import save_figure, signal_figure

__all__ = ["load_for_show", "show"]

FORMATS = (".png", ".svg")


def _recipe(recipe: str | Path | None) -> Config:
    """A recipe YAML, a run folder (its ``config.yaml``), or None for the defaults."""
    if recipe is None:
        return Config()
    path = Path(recipe)
    if path.is_dir():
        path = path / "config.yaml"
    return load_config(path)


def load_for_show(audio: str | Path, recipe: str | Path | None = None) -> tuple[np.ndarray, Config]:
    """The wave ``(time,)`` at the recipe's sample rate, and the recipe."""

    cfg = _recipe(recipe)
    return load_audio(audio, cfg.data.sample_rate), cfg


def show(audio: str | Path, *, recipe: str | Path | None = None, out: str | Path | None = None, dpi: int = 110) -> Path:
    """Write the figure of one audio file and return its path.

    Args:
        audio: any file :func:`~audiocnn.audio.io.load_audio` reads; resampled to ``data.sample_rate``.
        recipe: a recipe YAML or a run folder; None uses the default front-end at 16 kHz.
        out: ``.png`` or ``.svg`` (default: ``<audio stem>.png`` in the current folder).
        dpi: resolution of a PNG.

    Raises:
        ValueError: ``out`` is neither PNG nor SVG; a front-end setting is invalid.
    """

    out = Path(out) if out is not None else Path(Path(audio).stem + ".png")
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {out}: the figure is written as PNG or SVG; end the name with .png or .svg")
    wave, cfg = load_for_show(audio, recipe)
    title = Path(audio).name + (f"  |  recipe {Path(recipe).name}" if recipe else "  |  default front-end")
    fig, _ = signal_figure(wave, cfg.data.sample_rate, cfg.frontend, title=title)
    save_figure(fig, out, dpi=dpi)
    return out
