"""Figures for people: learning curves, what a front-end computes, what a network learned.

Every function returns a matplotlib ``Figure`` made without pyplot (so nothing opens a window and
the caller's backend and settings are left alone); :func:`to_png` and :func:`save_figure` render it
with Agg. Spectrogram panels have time in seconds,
frequency in Hz and a colour bar in dB, whatever the front-end's kind or backend.

Example:
    >>> fig, arrays = signal_figure(wave, 16000, FrontendSettings(kind="logmel"))
    >>> fig.savefig("clip.png"); arrays["mel"].shape       # (n_mels, frames), as the front-end computes it
"""
from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from audiocnn.features import FrontendSettings
from audiocnn.core.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TIMING_COLUMNS = ("time_s", "train_time_s", "train_samples", "samples_per_s", "data_wait", "threads")
"""Columns of metrics.csv that measure speed (written by the engine every epoch), not learning."""

__all__ = [
    "SIGNAL_PANELS", "activation_figure", "display_db", "feature_panel", "filters_figure", "fold_scores",
    "image_thumbnail",
    "learning_curves", "palette_png", "save_figure", "signal_figure", "thumbnail", "to_png",
]

SIGNAL_PANELS = ("waveform", "stft", "mel", "mfcc")
"""Panels of :func:`signal_figure`, top to bottom (a ``cqt`` or ``efficientat_mel`` recipe adds its own panel last)."""
_OWN_PANEL = ("cqt", "efficientat_mel")
_PANEL_KIND = {"stft": "stft", "mel": "logmel", "mfcc": "mfcc", "cqt": "cqt", "efficientat_mel": "efficientat_mel"}
_PANEL_TITLE = {"waveform": "waveform", "stft": "spectrogram (STFT)", "mel": "mel spectrogram",
                "mfcc": "MFCCs", "cqt": "constant-Q transform", "efficientat_mel": "EfficientAT mel"}
_MODEL_PANEL = {"waveform": "waveform", "stft": "stft", "mel": "mel", "logmel": "mel", "mfcc": "mfcc", "cqt": "cqt",
                "efficientat_mel": "efficientat_mel"}
"""Which panel shows what the model gets, by ``frontend.kind``."""
_DB_PER_NEPER = 10.0 / math.log(10.0)


def _figure(**kwargs: Any) -> Figure:
    """A matplotlib ``Figure`` (matplotlib is imported here, on the first figure: a second of every command's
    start-up otherwise)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def to_png(fig: Figure, *, dpi: int = 100, palette: bool = False) -> bytes:
    """The figure as PNG bytes. ``palette=True``: see :func:`palette_png`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return palette_png(buf.getvalue()) if palette else buf.getvalue()


def palette_png(png: bytes) -> bytes:
    """A PNG re-encoded with 256 colours: plots have few, and the file shrinks about 3 times."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
        out, format="PNG", optimize=True)
    return out.getvalue()


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> None:
    """Write the figure atomically in the format its name ends with (``.png``, ``.svg``...)."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lower().lstrip(".") or "png", dpi=dpi)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


# ----------------------------------------------------------------------------------------------
# Learning curves


def learning_curves(rows: Sequence[dict[str, Any]], *, monitor: str = "", best_epoch: int | None = None) -> Figure:
    """Loss, metrics and learning rate per epoch from ``metrics.csv`` rows.

    Args:
        rows: one dict per epoch (``epoch``, ``train_loss``, ``val_loss``, ``train_accuracy``, ``val_*`` ...),
            values as numbers or strings.
        monitor: the column that chose the best checkpoint (drawn thicker).
        best_epoch: a vertical line marks it.
    """
    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])

    epochs = column("epoch")
    keys = [k for k in rows[0] if k not in ("epoch", "lr") + TIMING_COLUMNS] if rows else []
    losses = [k for k in keys if k.endswith("_loss")]
    metrics = [k for k in keys if k not in losses]
    panels = [("loss", losses), ("metrics", metrics)]
    if rows and "lr" in rows[0]:
        panels.append(("learning rate", ["lr"]))
    fig = _figure(figsize=(4.2 * len(panels), 3.3))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels):
        for name in names:
            style = "-" if name.startswith("train_") or name == "lr" else "--"
            ax.plot(epochs, column(name), style, marker="o", markersize=3, label=name,
                    linewidth=2.4 if name == monitor else 1.4)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.6", linestyle=":", linewidth=1, label=f"best epoch {best_epoch}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        elif names:
            ax.legend(fontsize=7, loc="best")
        if len(epochs) and len(epochs) <= 20:
            ax.set_xticks(epochs)
    fig.tight_layout()
    return fig


def fold_scores(folds: Sequence[str], values: Sequence[float], *, metric: str, title: str = "") -> Figure:
    """Cross-validation: one bar per fold's test ``metric``, the mean as a line (``audiocnn cv``'s cv.png)."""
    fig = _figure(figsize=(max(4.0, 0.6 * len(folds) + 2.0), 3.2))
    ax = fig.subplots()
    ax.bar(list(folds), list(values), color="#4c72b0")
    mean = float(np.mean(values))
    ax.axhline(mean, color="#c44e52", linewidth=1.2, label=f"mean {mean:.3f}")
    ax.set_ylabel(f"test {metric}")
    ax.set_xlabel("fold (held out)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Front-end outputs


def display_db(features: np.ndarray, cfg: FrontendSettings) -> tuple[np.ndarray, str]:
    """A front-end output on a dB colour scale, and the colour bar's label.

    ``logmel``/``cqt`` with ``log: db`` are dB already and come back unchanged, as are ``mfcc``
    (a DCT of dB values). ``log: log`` (natural log) is rescaled by 10/ln 10; linear ``stft``/``mel``
    (``|X|**power``) become ``(20 / power) * log10``.
    """
    if cfg.kind == "mfcc":
        return features, "dB (DCT of log-mel)"
    if cfg.kind in ("logmel", "cqt"):
        return (features, "dB") if cfg.log == "db" else (features * _DB_PER_NEPER, "dB")
    if cfg.kind in ("stft", "mel"):
        return (20.0 / cfg.power) * np.log10(np.maximum(features, cfg.amin)), "dB"
    if cfg.kind == "efficientat_mel":
        return features, "(ln mel + 4.5) / 5"
    return features, ""


def feature_panel(ax, features: np.ndarray, cfg: FrontendSettings, sample_rate: int, *, colorbar_ax=None,
                  title: str = "", colorbar: bool = True, f_min: float | None = None, f_max: float | None = None):
    """Draw one front-end output ``(n_features, frames)``: seconds across, Hz up, colour bar in dB.

    The array drawn is ``display_db(features, cfg)[0]``; returns the ``QuadMesh``.
    """
    import librosa.display

    values, unit = display_db(np.asarray(features, dtype=np.float32), cfg)
    f_min = cfg.f_min if f_min is None else f_min
    f_max = (cfg.f_max or sample_rate / 2) if f_max is None else f_max
    kw: dict[str, Any] = dict(x_axis="s", sr=sample_rate, hop_length=cfg.hop_length, ax=ax, cmap="magma")
    if cfg.kind == "stft":
        kw.update(y_axis="linear", n_fft=cfg.n_fft)
    elif cfg.kind in ("mel", "logmel", "efficientat_mel"):
        kw.update(y_axis="mel", fmin=f_min, fmax=f_max, htk=cfg.mel_scale == "htk")
    elif cfg.kind == "cqt":
        kw.update(y_axis="cqt_hz", fmin=f_min, bins_per_octave=cfg.bins_per_octave)
    elif cfg.kind == "mfcc" and len(values) > 1:
        # c0 (loudness) is far larger than the rest and would wash them out: scale to c1 and up
        m = float(np.abs(values[1:]).max())
        kw.update(cmap="coolwarm", vmin=-m, vmax=m)
    mesh = librosa.display.specshow(values, **kw)
    if cfg.kind == "mfcc":
        ax.set_ylabel("MFCC")
        ax.set_yticks([i + 0.5 for i in range(0, len(values), 5)], [str(i) for i in range(0, len(values), 5)])
    elif cfg.kind != "waveform":
        ax.set_ylabel("Hz")
    ax.set_xlabel("seconds")
    if title:
        ax.set_title(title, loc="left")
    if colorbar:
        cb = ax.figure.colorbar(mesh, ax=None if colorbar_ax is not None else ax, cax=colorbar_ax)
        cb.set_label(unit)
    return mesh


def signal_figure(wave: np.ndarray, sample_rate: int, cfg: FrontendSettings, *,
                  title: str = "") -> tuple[Figure, dict[str, np.ndarray]]:
    """Waveform, STFT spectrogram, mel spectrogram and MFCCs of one wave, as ``cfg`` computes them.

    Each spectral panel comes from :func:`~audiocnn.features.build_frontend` with the recipe's settings
    and ``kind`` set to ``stft``, ``logmel`` or ``mfcc`` (a ``cqt`` or ``efficientat_mel`` recipe adds its own panel); the panel
    the model gets is marked. Shapes: wave ``(time,)``; ``arrays[name]`` is the front-end output
    ``(n_features, frames)`` (``arrays["waveform"]``: ``(time,)``).

    Returns:
        The figure and the arrays it draws (before :func:`display_db`), by panel name.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    names = list(SIGNAL_PANELS) + ([cfg.kind] if cfg.kind in _OWN_PANEL else [])
    arrays: dict[str, np.ndarray] = {"waveform": wave}
    frontends = {}
    for name in names[1:]:
        # pre-emphasis is efficientat_mel's own; the other panels show the plain spectrum
        panel_cfg = dataclasses.replace(cfg, kind=_PANEL_KIND[name],
                                        preemphasis=cfg.preemphasis if name == "efficientat_mel" else 0.0)
        if name != "cqt" and cfg.kind == "cqt":
            panel_cfg.f_min = 0.0  # a CQT recipe's f_min is the lowest note, not a mel band edge
        frontends[name] = FrontendSettings.of(panel_cfg).build(sample_rate)
        with torch.no_grad():
            arrays[name] = frontends[name](torch.from_numpy(wave)[None])[0].numpy()
    heights = [1.0] + [1.6] * (len(names) - 1)
    fig = _figure(figsize=(10, 1.0 + 2.2 * len(names)))
    grid = fig.add_gridspec(len(names), 2, width_ratios=[40, 1], height_ratios=heights, hspace=0.4, wspace=0.03)
    model_panel = _MODEL_PANEL.get(cfg.kind)
    first = None
    for row, name in enumerate(names):
        ax = fig.add_subplot(grid[row, 0], sharex=first)
        first = first or ax
        label = _PANEL_TITLE[name] + ("  (the model's input)" if name == model_panel else "")
        if name == "waveform":
            t = np.arange(len(wave)) / sample_rate
            ax.plot(t, wave, linewidth=0.5, color="tab:blue")
            ax.set_xlim(0, len(wave) / sample_rate)
            ax.set_ylabel("amplitude")
            ax.set_title(label, loc="left")
            ax.grid(alpha=0.3)
            continue
        fe = frontends[name]
        if name == "mfcc":
            label += "  (colours scaled to c1 and up; c0 saturates)"
        feature_panel(ax, arrays[name], fe.settings, sample_rate, colorbar_ax=fig.add_subplot(grid[row, 1]),
                      title=label, f_min=fe.f_min, f_max=fe.f_max)
        if row < len(names) - 1:
            ax.set_xlabel("")
    c = cfg
    settings = (f"{sample_rate} Hz, {len(wave) / sample_rate:.2f} s | backend {c.backend}, n_fft {c.n_fft}, "
                f"hop {c.hop_length}, window {c.window}, n_mels {c.n_mels}, n_mfcc {c.n_mfcc}")
    fig.suptitle(f"{title}\n{settings}" if title else settings, fontsize=10)
    fig.subplots_adjust(left=0.09, right=0.93, top=1 - 0.55 / fig.get_figheight(), bottom=0.45 / fig.get_figheight())
    return fig, arrays


def thumbnail(features: np.ndarray, cfg: FrontendSettings, sample_rate: int, *, f_min: float | None = None,
              f_max: float | None = None) -> Figure:
    """A small spectrogram ``(n_features, frames)`` (or a wave ``(1, time)`` for ``kind: waveform``)."""
    fig = _figure(figsize=(3.6, 2.0))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.2, top=0.96)
    if cfg.kind == "waveform":
        wave = np.asarray(features).reshape(-1)
        ax.plot(np.arange(len(wave)) / sample_rate, wave, linewidth=0.5)
        ax.set_xlabel("seconds")
        ax.set_ylabel("amplitude")
    else:
        feature_panel(ax, features, cfg, sample_rate, f_min=f_min, f_max=f_max)
    for axis in fig.axes:
        for item in (axis.xaxis.label, axis.yaxis.label, *axis.get_xticklabels(), *axis.get_yticklabels()):
            item.set_fontsize(7)
    return fig


def image_thumbnail(image: torch.Tensor | np.ndarray) -> Figure:
    """A small picture of an image input ``(C, H, W)`` with values in [0, 1]."""
    fig = _figure(figsize=(2.4, 2.4))
    ax = fig.subplots()
    img = _as_image(image, scale=False)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    fig.subplots_adjust(0.02, 0.02, 0.98, 0.98)
    return fig


def _as_image(image: torch.Tensor | np.ndarray, *, scale: bool = True, centred: bool = False) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W)`` (one channel) or ``(H, W, 3)`` in [0, 1].

    ``scale``: stretch the values (all channels together, so colours keep their balance) to [0, 1];
    ``centred``: map 0 to grey and the largest magnitude to 0 or 1 (kernels). Otherwise clip.
    """
    x = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    x = x[:3] if x.shape[0] >= 3 else x[:1]
    if centred:
        x = 0.5 + 0.5 * x / max(float(np.abs(x).max()), 1e-12)
    elif scale:
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)
    x = np.clip(x, 0.0, 1.0)
    return x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)


# ----------------------------------------------------------------------------------------------
# Inside the network


def filters_figure(weight: torch.Tensor, *, max_filters: int = 64, title: str = "") -> Figure:
    """The kernels of a first conv layer, one tile per output channel.

    Args:
        weight: ``(out, in, kh, kw)`` (Conv2d) or ``(out, in, k)`` (Conv1d). Single-input 2-D kernels are
            drawn on a blue-white-red scale around 0, three-input ones as RGB; 1-D kernels on one input
            are curves, on many inputs (feature frames) images of ``in x k``.
        max_filters: at most this many tiles.
    """
    w = weight.detach().float().cpu().numpy()[:max_filters]
    n = len(w)
    curves = w.ndim == 3 and w.shape[1] == 1
    cols = min(n, 16 if not curves else 8)
    rows = math.ceil(n / cols)
    tile = 0.75 if not curves else 1.2
    fig = _figure(figsize=(max(cols * tile, 3), rows * tile * (0.6 if curves else 1) + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.set_axis_off()
            continue
        k = w[i]
        if curves:
            ax.plot(k[0], linewidth=1)
            ax.axhline(0, color="0.7", linewidth=0.5)
        elif k.ndim == 3 and k.shape[0] == 3:
            ax.imshow(_as_image(k, centred=True), interpolation="nearest")
        else:
            img = k[0] if k.ndim == 3 and k.shape[0] == 1 else k.reshape(-1, k.shape[-1])
            if k.ndim == 3 and k.shape[0] > 1:
                img = k.mean(0)  # several input channels, not RGB: their mean
            m = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest", origin="lower", aspect="auto")
        ax.set_title(str(i), fontsize=6, pad=1)
    fig.suptitle(title or f"first-layer kernels {'x'.join(str(s) for s in weight.shape)}", fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def activation_figure(network_input: torch.Tensor, stages: Sequence[tuple[str, torch.Tensor]], *,
                      channels: int = 8, image: bool = False, input_title: str = "network input") -> Figure:
    """Feature maps of one example: its input, then the strongest channels of every stage.

    Args:
        network_input: ``(in_chans, H, W)`` for 2-D networks (a spectrogram has ``in_chans=1``: frequency
            up, time across) or ``(in_chans, T)`` for 1-D ones (``in_chans=1``: a wave, drawn as a curve).
        stages: ``(name, output)`` per stage: ``(C, H, W)`` or ``(C, T)``.
        channels: per 2-D stage, this many channels with the highest mean activation; 1-D stages
            show all channels as rows of one image.
        image: the input is a picture (drawn top down, grey or RGB), not a spectrogram.
    """
    x = network_input.detach().float().cpu()
    cols = channels if x.dim() == 3 else 1
    rows = len(stages) + 1
    fig = _figure(figsize=(13, 2.2 + 1.55 * len(stages)))
    grid = fig.add_gridspec(rows, cols, height_ratios=[1.6] + [1] * len(stages))

    def show(ax, img: np.ndarray, title: str, cmap: str | None = "viridis", origin: str = "lower") -> None:
        ax.imshow(img, origin="upper" if image else origin, aspect="equal" if image else "auto",
                  interpolation="nearest", cmap=cmap)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=8, pad=2, loc="left")

    head = fig.add_subplot(grid[0, : max(cols // 2, 1)])
    if image:
        show(head, _as_image(x), input_title, cmap="gray" if x.shape[0] != 3 else None)
    elif x.dim() == 2 and x.shape[0] == 1:  # a wave for a 1-D model
        head.plot(x[0].numpy(), linewidth=0.4)
        head.set_xlim(0, x.shape[-1])
        head.set_xticks([])
        head.set_title(input_title, fontsize=8, pad=2, loc="left")
    else:
        show(head, x.reshape(-1, x.shape[-1]).numpy() if x.dim() == 2 else x.mean(0).numpy(), input_title, cmap="magma")
    for r, (name, out) in enumerate(stages, start=1):
        a = out.detach().float().cpu()
        size = "x".join(str(s) for s in a.shape)
        if a.dim() == 2:  # each channel on its own scale: their offsets would hide the changes over time
            lo, hi = a.amin(1, keepdim=True), a.amax(1, keepdim=True)
            scaled = ((a - lo) / (hi - lo).clamp(min=1e-12)).numpy()
            show(fig.add_subplot(grid[r, :]), scaled, f"{name}: {size} (channels x time, each row on its own scale)")
            continue
        strongest = a.flatten(1).mean(1).argsort(descending=True)[:channels].tolist()
        for c, ch in enumerate(strongest):
            show(fig.add_subplot(grid[r, c]), a[ch].numpy(), f"{name} ch {ch}" + (f"  ({size})" if c == 0 else ""))
    fig.tight_layout(pad=0.4, h_pad=0.5)
    return fig
