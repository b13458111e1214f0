"""``audiocnn report RUN_DIR``: one self-contained ``report.html`` a person can read without anything else.

The page holds the run's summary, learning curves, confusion matrix, per-class precision/recall/F1,
the weakest classes and most-confused pairs, correctly and wrongly classified examples (their
spectrograms as the recipe's front-end computes them, top-3 predictions and an audio player), the
first-layer filters and the activation maps of one example for every stage, and the resolved config.
Images are PNG and audio is 16-bit WAV, both embedded as base64 ``data:`` URIs; a Content-Security-Policy
forbids every other source, so the page never touches the network. Image recipes
(``frontend.kind: image``) show the pictures instead of spectrograms and no audio players.

Numbers come from the run's ``metrics.csv`` and ``eval/{split}_*`` files (written first by
:func:`~audiocnn.evaluation.evaluate.evaluate_run` when missing); the examples and activations need
the dataset. When it cannot be loaded, the page says so and keeps everything else.

Example:
    >>> write_report("runs/digits/20260101-120000")
    PosixPath('runs/digits/20260101-120000/report.html')
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml
from torch import nn

from audiocnn.build import monitor_of
from audiocnn.config import config_to_dict, load_config
from audiocnn.core.io import atomic_write_text
from audiocnn.evaluation.evaluate import Evaluation, evaluate_model
from audiocnn.inference import evaluate_loader
from audiocnn.modalities import Classifier, modality_of
from audiocnn.plots import activation_figure, filters_figure, learning_curves, palette_png, to_png
from audiocnn.runs import load_data, load_run, read_skipped

__all__ = ["write_report"]

MAX_AUDIO_SECONDS = 5.0
"""Audio players carry at most this much of an example (the crop the model sees)."""
THUMB_DPI = 100


@dataclass
class _Example:
    index: int
    name: str
    truth: str
    top: list[tuple[str, float]]
    """The top-3 labels with probabilities (regression: every target with its predicted value)."""
    correct: bool | None
    """None where right and wrong do not apply (regression)."""
    image: bytes = b""
    audio: bytes = b""


@dataclass
class _Page:
    """What the page shows; sections are skipped (with a line saying why) when their part is missing."""

    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    best_epoch: int | None = None
    curves: bytes = b""
    confusion: bytes = b""
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    weakest: list[tuple[str, float, int]] = field(default_factory=list)
    confused: list[tuple[str, str, int, float]] = field(default_factory=list)
    groups: list[tuple[str, str, list[_Example]]] = field(default_factory=list)
    regression: bool = False
    filters: bytes = b""
    filters_note: str = ""
    activations: bytes = b""
    activations_note: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def write_report(run_dir: str | Path, *, split: str = "test", n_examples: int = 4, checkpoint: str | None = None,
                 data: Any = None, device: str | torch.device | None = None, out: str | Path | None = None,
                 model: Classifier | None = None, evaluation: Evaluation | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` (or ``out``) and return its path.

    Args:
        run_dir: a run folder made by ``audiocnn train``.
        split: the split whose evaluation, examples and activations are shown (``test``, ``val``, ``train``).
        n_examples: correctly and wrongly classified examples shown, each.
        checkpoint: ``best``, ``last`` or a ``.pt`` path (default: the one ``eval/{split}_metrics.json`` used,
            else ``best``).
        data: the :class:`~audiocnn.modalities.Data` of a training run, to skip decoding the dataset again.
        model: the run's model at ``checkpoint``, already loaded (after training: the best one).
        evaluation: ``split``'s :class:`~audiocnn.evaluation.evaluate.Evaluation` of that model, so the examples
            are chosen from its outputs without another pass over the split.
        device: where the model runs (default: the best available).
        out: where to write the page.

    Raises:
        CheckpointError: ``run_dir`` has no checkpoint.
    """
    run_dir = Path(run_dir)
    metrics_path = run_dir / "eval" / f"{split}_metrics.json"
    if checkpoint is None:
        checkpoint = json.loads(metrics_path.read_text()).get("checkpoint", "best") if metrics_path.exists() else "best"
    loaded = load_run(run_dir, checkpoint=checkpoint, device=device) if model is None else None
    if loaded is None:  # the caller's model: its recipe and labels are the run's
        saved = json.loads((run_dir / "labels.json").read_text())
        cfg, labels, task = load_config(run_dir / "config.yaml"), saved["labels"], saved["task"]
    else:
        model, cfg, labels, task = loaded
    page = _Page(title=f"{cfg.name or run_dir.parent.name} · {run_dir.name}", config=config_to_dict(cfg))

    if data is None:
        try:
            data = load_data(cfg, log=lambda *_: None)
        except Exception as e:  # noqa: BLE001 - the page is still useful without the audio
            page.notes["data"] = (f"the dataset could not be loaded ({type(e).__name__}: {e}); examples and "
                                  "activation maps need it (run `audiocnn report` where the recipe's data.root resolves)")
    if evaluation is None and not metrics_path.exists() and data is not None and split in data.loaders:
        evaluation = evaluate_model(model, cfg, labels, data, run_dir, split=split, checkpoint=checkpoint, quiet=True)

    rows = _read_csv(run_dir / "metrics.csv")
    _summary(page, run_dir, cfg, model, labels, task, rows, data, split, checkpoint)
    _curves(page, rows, cfg)
    _evaluation(page, run_dir / "eval", split)
    loader = None
    if data is not None and split not in data.loaders:
        page.notes["data"] = f"the {split} split is empty for data.name={cfg.data.name!r}"
    elif data is not None:
        loader = _in_order(data.loaders[split])
        _examples(page, model, cfg, labels, task, loader, n_examples, split, evaluation)
    _network(page, model, cfg, loader, page.groups)

    out = Path(out) if out is not None else run_dir / "report.html"
    atomic_write_text(out, _render(page, split), setting="--out")
    return out


# ----------------------------------------------------------------------------------------------
# Gathering


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _png(fig, dpi: int = 100) -> bytes:
    return to_png(fig, dpi=dpi, palette=True)


def _summary(page: _Page, run_dir: Path, cfg, model, labels, task, rows, data, split, checkpoint) -> None:
    n_params = sum(p.numel() for p in model.parameters())
    env = dict(line.split(": ", 1) for line in _lines(run_dir / "env.txt") if ": " in line)
    tr = cfg.trainer
    best = None
    monitor, mode = monitor_of(cfg)
    values = [(int(r["epoch"]), float(r[monitor])) for r in rows if r.get(monitor) not in (None, "")]
    if values:
        best = (max if mode == "max" else min)(values, key=lambda v: v[1])
    sizes = ""
    if data is not None:
        sizes = " / ".join(f"{len(examples)} {name}" for name, examples in data.splits.parts().items())
    source = modality_of(cfg).describe_input(cfg, model)
    page.facts = [
        ("run folder", str(run_dir)),
        ("started", env.get("date", "")),
        ("data", f"{cfg.data.name}, {len(labels)} {'targets' if task == 'regression' else 'classes'}, {task}"
                 + (f" · {sizes}" if sizes else "")),
        ("input", source),
        ("model", f"{cfg.model.name} · {n_params:,} parameters"),
        ("training", f"{len(rows)} of {tr.epochs} epochs · {cfg.optim.name} lr {cfg.optim.lr:g} ({cfg.optim.scheduler})"
                     + (f" · best {monitor} {best[1]:.4f} at epoch {best[0]}" if best else "")),
        ("evaluated", f"{split} split, {checkpoint} checkpoint"),
        ("environment", ", ".join(f"{k} {env[k]}" for k in ("torch", "cuda") if k in env)),
    ]
    skipped = read_skipped(run_dir)
    if skipped:
        shown = "; ".join(f"{r['split']} {Path(r['path']).name}: {r['reason']}" for r in skipped[:5])
        page.notes["skipped"] = (f"{len(skipped)} bad file(s) were skipped (data.on_error: skip), listed in "
                                 f"skipped.csv: {shown}" + (" ..." if len(skipped) > 5 else ""))
    page.best_epoch = best[0] if best else None


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _curves(page: _Page, rows: list[dict[str, str]], cfg) -> None:

    if not rows:
        page.notes["curves"] = "metrics.csv is missing or empty: no epoch has finished"
        return
    page.curves = _png(learning_curves(rows, monitor=monitor_of(cfg)[0], best_epoch=page.best_epoch))


def _evaluation(page: _Page, eval_dir: Path, split: str) -> None:
    metrics_path = eval_dir / f"{split}_metrics.json"
    if not metrics_path.exists():
        page.notes["evaluation"] = (f"no {eval_dir.name}/{split}_metrics.json; "
                                    f"run `audiocnn evaluate RUN_DIR --split {split}`")
        return
    page.metrics = {k: v for k, v in json.loads(metrics_path.read_text()).items() if k not in ("split", "checkpoint")}
    report_path = eval_dir / f"{split}_report.json"
    if report_path.exists():
        page.per_class = json.loads(report_path.read_text())
        page.weakest = sorted(((name, r["recall"], r["support"]) for name, r in page.per_class.items()
                               if r["support"] and r["recall"] < 1.0), key=lambda t: t[1])[:5]
    png = eval_dir / f"{split}_confusion.png"
    if png.exists():
            page.confusion = palette_png(png.read_bytes())
    rows = _read_csv(eval_dir / f"{split}_confusion.csv")
    if rows:
        names = [k for k in rows[0] if k != "true\\pred"]
        cm = np.array([[int(r[n]) for n in names] for r in rows])
        totals = np.maximum(cm.sum(1), 1)
        pairs = [(names[i], names[j], int(cm[i, j]), cm[i, j] / totals[i])
                 for i in range(len(names)) for j in range(len(names)) if i != j and cm[i, j]]
        page.confused = sorted(pairs, key=lambda p: (-p[2], -p[3]))[:5]


def _top(task: str, out: np.ndarray, labels: list[str], k: int = 3) -> list[tuple[str, float]]:
    """The k most probable labels of one clip (binary: both; regression: the values)."""
    out = np.ravel(out)
    if task == "binary":
        p = float(out[0])
        return sorted([(labels[1], p), (labels[0], 1.0 - p)], key=lambda t: -t[1])
    if task == "regression":
        return [(name, float(v)) for name, v in zip(labels, out)]
    order = np.argsort(-out)[:k]
    return [(labels[i], float(out[i])) for i in order]


def _truth(task: str, target: np.ndarray, labels: list[str]) -> str:
    t = np.ravel(target)
    if task == "multiclass":
        return labels[int(t[0])]
    if task == "binary":
        return labels[int(t[0] >= 0.5)]
    if task == "multilabel":
        return ", ".join(n for n, v in zip(labels, t) if v >= 0.5) or "(none)"
    return ", ".join(f"{n} {v:.3g}" for n, v in zip(labels, t))


def _choose(task: str, outputs: np.ndarray, targets: np.ndarray,
            n: int) -> list[tuple[str, str, list[int], bool | None]]:
    """Groups of example indices: ``(title, note, indices, correct)``."""
    if task == "regression":
        err = np.abs(outputs.reshape(len(outputs), -1) - targets.reshape(len(targets), -1)).mean(1)
        order = np.argsort(err)
        return [("Closest predictions", "smallest mean absolute error", order[:n].tolist(), None),
                ("Furthest predictions", "largest mean absolute error", order[::-1][:n].tolist(), None)]
    if task == "multiclass":
        pred, conf, y = outputs.argmax(1), outputs.max(1), targets.astype(int).reshape(-1)
    elif task == "binary":
        p = outputs.reshape(-1)
        pred, conf, y = (p >= 0.5).astype(int), np.maximum(p, 1 - p), (targets.reshape(-1) >= 0.5).astype(int)
    else:  # multilabel: right when the predicted set is the true set
        hits = ((outputs >= 0.5) == (targets >= 0.5)).all(1)
        pred, y = hits.astype(int), np.ones(len(hits), int)
        conf = np.abs(outputs - 0.5).min(1) + 0.5
    right = np.flatnonzero(pred == y)
    wrong = np.flatnonzero(pred != y)
    # correct ones: the most confident of each class in turn, so several classes appear
    by_class: dict[int, list[int]] = {}
    for i in right[np.argsort(-conf[right], kind="stable")]:
        by_class.setdefault(int(y[i]), []).append(int(i))
    picked: list[int] = []
    while len(picked) < n and any(by_class.values()):
        for c in sorted(by_class):
            if by_class[c] and len(picked) < n:
                picked.append(by_class[c].pop(0))
    groups = [("Correctly classified", f"{len(right)} of {len(y)}; the most confident, one class after another",
               picked, True)]
    if len(wrong):
        worst = wrong[np.argsort(-conf[wrong], kind="stable")][:n]
        groups.append(("Misclassified", f"{len(wrong)} of {len(y)}; the most confident mistakes first",
                       worst.tolist(), False))
    else:
        closest = [int(i) for i in right[np.argsort(conf[right], kind="stable")] if int(i) not in picked][:n]
        groups.append(("Misclassified", f"none of {len(y)}; below are the closest calls (least confident correct "
                                        "predictions)", closest, True))
    return groups


def _in_order(loader: torch.utils.data.DataLoader) -> torch.utils.data.DataLoader:
    """The loader's dataset in index order (a training loader shuffles, and its sampler moves the epoch on)."""
    if hasattr(loader, "ordered_view"):  # streamed shards
        return loader.ordered_view()
    return torch.utils.data.DataLoader(loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn)


def _model_input(loader, index: int) -> torch.Tensor:
    """Example ``index`` as the model gets it, through the loader's own collate: a wave ``(time,)`` (the
    middle window when evaluating with sliding windows) or an image ``(C, H, W)``."""
    batch = loader.collate_fn([loader.item(index) if hasattr(loader, "ordered_view") else loader.dataset[index]])
    return batch.wave[len(batch.wave) // 2]


@torch.no_grad()
def _examples(page: _Page, model, cfg, labels, task, loader, n: int, split: str,
              evaluation: Evaluation | None) -> None:
    if evaluation is not None and evaluation.split == split:  # computed once, by the evaluation
        outputs, targets = evaluation.outputs, evaluation.targets
    else:
        device = next(model.parameters()).device
        outputs, targets, _ = evaluate_loader(model, loader, task, device, precision=cfg.trainer.precision)
    modality = modality_of(cfg)
    sr = cfg.data.sample_rate
    page.regression = task == "regression"
    examples = getattr(loader.dataset, "examples", None)
    for title, note, indices, correct in _choose(task, outputs, targets, n):
        shown = []
        for i in indices:
            x = _model_input(loader, i)
            name = Path(str(examples[i].path)).name if examples is not None else f"#{i}"
            ex = _Example(i, name, _truth(task, targets[i], labels), _top(task, outputs[i], labels), correct)
            figure, audio = modality.preview(cfg, model, x)
            ex.image = _png(figure, dpi=THUMB_DPI)
            if audio is not None:
                ex.audio = _wav(audio, sr)
            shown.append(ex)
        page.groups.append((title, note, shown))
    if cfg.data.eval_crop == "windows" and modality.waveforms:
        page.notes["examples"] = (f"{split} clips are scored over sliding windows; each example shows and plays "
                                  "its middle window")


def _wav(wave: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of at most :data:`MAX_AUDIO_SECONDS`."""
    import soundfile as sf

    buf = io.BytesIO()
    wave = np.clip(wave[: int(MAX_AUDIO_SECONDS * sample_rate)], -1.0, 1.0)
    sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _first_conv(network: nn.Module) -> nn.Module | None:
    return next((m for m in network.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))), None)


def _stages(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the stem (when it has layers) and of every stage."""
    out = []
    stem = getattr(network, "stem", None)
    if stem is not None and len(stem):
        out.append(("stem", stem))
    out += [(f"stage {i + 1}", s) for i, s in enumerate(getattr(network, "stages", []))]
    return out


@torch.no_grad()
def _network(page: _Page, model, cfg, loader, groups) -> None:
    network = getattr(model, "network", model)
    conv = _first_conv(network)
    if conv is None:
        page.filters_note = "the network has no convolution layer"
    else:
        page.filters = _png(filters_figure(conv.weight), dpi=90)
        w = conv.weight
        colours = ("RGB, grey is 0" if w.dim() == 4 and w.shape[1] == 3 else
                   "curves over time" if w.dim() == 3 and w.shape[1] == 1 else "blue negative, white 0, red positive")
        layer = type(conv).__name__.removeprefix("Parametrized")  # weight-normalised layers
        page.filters_note = (f"{layer}({conv.in_channels}, {conv.out_channels}, "
                             f"kernel_size={tuple(conv.kernel_size)}): one tile per output channel, each scaled to its "
                             f"own largest |weight| ({colours})")
    stages = _stages(network)
    if loader is None or not stages:
        page.activations_note = ("the dataset is not available" if loader is None
                                 else "the network has no stages to look into")
        return
    examples = [e for _, _, exs in groups for e in exs]
    if not examples:
        page.activations_note = "no example to show"
        return
    ex = examples[0]
    captured: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, name=name: captured.__setitem__(name, o)) for name, m in stages]
    first = stages[0][1]
    hooks.append(first.register_forward_pre_hook(lambda _m, args: captured.__setitem__("_input", args[0])))
    try:
        x = _model_input(loader, ex.index).to(next(model.parameters()).device)
        model.eval()
        model(x[None])
    finally:
        for h in hooks:
            h.remove()
    modality = modality_of(cfg)
    what = modality.input_name(cfg)
    one_d = getattr(network, "dims", 2) == 1
    per_stage = "every channel (rows) over time" if one_d else "the 8 channels with the highest mean activation"
    fig = activation_figure(captured["_input"][0], [(name, captured[name][0]) for name, _ in stages],
                            image=not modality.waveforms,
                            input_title=f"network input ({what}): {ex.name}, true {ex.truth}")
    page.activations = _png(fig, dpi=90)
    predicted = f", predicted {ex.top[0][0]}" if ex.correct is not None else ""
    page.activations_note = (f"{ex.name} (true {ex.truth}{predicted}): the {what} the network gets, "
                             f"then per stage {per_stage}"
                             + (", frequency up and time across" if modality.waveforms and not one_d else ""))


# ----------------------------------------------------------------------------------------------
# HTML


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
header{background:#1d2430;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b9c2d0}nav{background:#fff;border-bottom:1px solid #dde1e7;padding:8px 28px;
position:sticky;top:0;z-index:1}nav a{margin-right:16px;color:#2a5db0;text-decoration:none}
main{max-width:1220px;margin:0 auto;padding:8px 28px 40px}section{background:#fff;border:1px solid #dde1e7;
border-radius:8px;padding:14px 20px;margin:16px 0}h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
img{max-width:100%;height:auto}.note{color:#5b6575;font-size:13px}.warn{color:#9a4b00}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}td,th{padding:3px 10px;border-bottom:1px solid #eceef2;
text-align:right}th{background:#f0f2f5}td:first-child,th:first-child{text-align:left}
.facts td{text-align:left;border:0;padding:2px 12px 2px 0}.facts td:first-child{color:#5b6575;white-space:nowrap}
.cards{display:flex;flex-wrap:wrap;gap:10px}.metric{background:#f0f4fb;border-radius:6px;padding:8px 14px;min-width:110px}
.metric b{display:block;font-size:20px}.metric span{color:#5b6575;font-size:12px}
.bar{display:inline-block;height:8px;background:#3b78d8;border-radius:2px;vertical-align:middle;margin-left:6px}
.low{color:#b3261e;font-weight:600}.grid2{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}
.ex{border:1px solid #dde1e7;border-radius:6px;padding:8px}.ex.ok{border-top:4px solid #2e7d32}
.ex.bad{border-top:4px solid #c62828}.ex img{width:100%}.ex audio{width:100%;height:32px}
.ex ol{margin:4px 0 6px 20px;padding:0}.ex .name{font-size:12px;color:#5b6575;word-break:break-all}
.config{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px}
pre{background:#f6f8fa;border:1px solid #eceef2;border-radius:6px;padding:8px;margin:0;font-size:12px;overflow:auto}
@media (max-width:800px){.grid2{grid-template-columns:1fr}}
"""

# Records whether every image and audio clip loaded and whether any error happened, in #selfcheck
# (read by the headless-browser test; invisible to a reader).
_SELFCHECK = """
window.__errors = [];
addEventListener('error', e => __errors.push(e.message || ('failed to load ' + (e.target && e.target.tagName))), true);
addEventListener('securitypolicyviolation', e => __errors.push('blocked by the page policy: ' + e.blockedURI));
(function () {
  const original = console.error;
  console.error = function (...args) { __errors.push(args.join(' ')); original.apply(console, args); };
})();
addEventListener('load', async () => {
  const ready = a => a.readyState >= 1 || a.error ? Promise.resolve() : new Promise(done => {
    a.addEventListener('loadedmetadata', done); a.addEventListener('error', done); setTimeout(done, 3000); });
  const audios = [...document.querySelectorAll('audio')];
  await Promise.all(audios.map(ready));
  const images = [...document.images];
  const el = document.getElementById('selfcheck');
  el.dataset.images = images.length;
  el.dataset.brokenImages = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  el.dataset.audios = audios.length;
  el.dataset.brokenAudios = audios.filter(a => a.error || a.readyState < 1).length;
  el.dataset.errors = JSON.stringify(__errors);
  el.dataset.done = '1';
});
"""

_CSP = ("default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _img(payload: bytes, alt: str) -> str:
    return f'<img src="{_data_uri("image/png", payload)}" alt="{_esc(alt)}">'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return _esc(v)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_esc(title)}</h2>\n{body}\n</section>'


def _render(page: _Page, split: str) -> str:
    notes = page.notes
    parts: list[str] = []

    facts = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in page.facts if v)
    cards = "".join(f'<div class="metric"><b>{_fmt(v)}</b><span>{_esc("examples" if k == "n" else k)}</span></div>'
                    for k, v in page.metrics.items() if isinstance(v, (int, float)))
    body = f'<table class="facts">{facts}</table>'
    if cards:
        body += f'<h3>{_esc(split)} metrics</h3><div class="cards">{cards}</div>'
    for key in ("data", "skipped", "evaluation"):
        if key in notes:
            body += f'<p class="note warn">{_esc(notes[key])}</p>'
    parts.append(_section("summary", "Summary", body))

    if page.curves:
        body = (_img(page.curves, "learning curves") + '<p class="note">Solid: training; dashed: validation; the '
                "dotted line marks the epoch of the best checkpoint.</p>")
    else:
        body = f'<p class="note">{_esc(notes["curves"])}</p>'
    parts.append(_section("curves", "Learning curves", body))

    left = (_img(page.confusion, "confusion matrix") if page.confusion
            else '<p class="note">No confusion matrix for this task or split.</p>')
    right = _per_class_table(page.per_class) if page.per_class else '<p class="note">No per-class report.</p>'
    parts.append(_section("classes", f"Confusion matrix and per-class scores ({split})",
                          f'<div class="grid2"><div>{left}</div><div>{right}</div></div>'))

    parts.append(_section("hardest", "Hardest classes", _hardest(page)))

    body = "".join(_group(title, note, exs, values=page.regression) for title, note, exs in page.groups)
    if "examples" in notes:
        body += f'<p class="note">{_esc(notes["examples"])}</p>'
    parts.append(_section("examples", f"Examples from the {split} split",
                          body or f'<p class="note warn">{_esc(notes.get("data", "no examples"))}</p>'))

    body = _img(page.filters, "first-layer filters") if page.filters else ""
    body += f'<p class="note">{_esc(page.filters_note)}</p>'
    body += "<h3>Activation maps, one example</h3>"
    body += (_img(page.activations, "activation maps") if page.activations else "")
    body += f'<p class="note">{_esc(page.activations_note)}</p>'
    parts.append(_section("network", "Inside the network: first-layer filters and activation maps", body))

    top = yaml.safe_dump({k: v for k, v in page.config.items() if not isinstance(v, dict)}, sort_keys=False).strip()
    blocks = "".join(f"<div><h3>{_esc(name)}</h3><pre>{_esc(yaml.safe_dump(value, sort_keys=False).strip())}</pre>"
                     "</div>" for name, value in page.config.items() if isinstance(value, dict))
    parts.append(_section("config", "Resolved config", f'<pre>{_esc(top)}</pre><div class="config">{blocks}</div>'))

    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("summary", "Summary"), ("curves", "Curves"), ("classes", "Classes"), ("hardest", "Hardest"),
        ("examples", "Examples"), ("network", "Network"), ("config", "Config")))
    made = dt.datetime.now().isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>audiocnn report: {_esc(page.title)}</title>
<style>{_CSS}</style>
<script>{_SELFCHECK}</script>
</head><body>
<header><h1>{_esc(page.title)}</h1><p>audiocnn run report · written {made}</p></header>
<nav>{nav}</nav>
<main>
{chr(10).join(parts)}
</main>
<div id="selfcheck" hidden></div>
</body></html>
"""


def _per_class_table(report: dict[str, dict[str, float]]) -> str:
    rows = []
    for name, r in report.items():
        cells = []
        for key in ("precision", "recall", "f1"):
            v = r[key]
            cls = ' class="low"' if v < 0.5 and r["support"] else ""
            cells.append(f'<td{cls}>{v:.3f}<span class="bar" style="width:{40 * v:.0f}px"></span></td>')
        rows.append(f"<tr><td>{_esc(name)}</td>{''.join(cells)}<td>{r['support']}</td></tr>")
    return ('<table class="per-class"><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>'
            f'<th>support</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _hardest(page: _Page) -> str:
    if not page.per_class and not page.confused:
        return '<p class="note">Needs the per-class report and confusion matrix of the split.</p>'
    if page.weakest:
        rows = "".join(f"<tr><td>{_esc(n)}</td><td>{r:.3f}</td><td>{s}</td></tr>" for n, r, s in page.weakest)
        weak = ('<h3>Lowest recall</h3><table><thead><tr><th>class</th><th>recall</th><th>support</th></tr></thead>'
                f"<tbody>{rows}</tbody></table>")
    else:
        weak = '<h3>Lowest recall</h3><p class="note">Every class has recall 1.0.</p>'
    if page.confused:
        rows = "".join(f"<tr><td>{_esc(t)}</td><td>{_esc(p)}</td><td>{n}</td><td>{100 * f:.0f}%</td></tr>"
                       for t, p, n, f in page.confused)
        pairs = ('<h3>Most-confused pairs</h3><table><thead><tr><th>true</th><th>predicted as</th><th>clips</th>'
                 f"<th>of the true class</th></tr></thead><tbody>{rows}</tbody></table>")
    else:
        pairs = '<h3>Most-confused pairs</h3><p class="note">No confusions: the matrix is diagonal.</p>'
    return f'<div class="grid2"><div>{weak}</div><div>{pairs}</div></div>'


def _group(title: str, note: str, examples: Sequence[_Example], *, values: bool = False) -> str:
    """Example cards; ``values``: ``top`` holds regression values, not probabilities."""
    cards = []
    for ex in examples:
        top = "".join(f"<li>{_esc(label)} <b>{f'{p:.4g}' if values else f'{100 * p:.1f}%'}</b></li>"
                      for label, p in ex.top)
        audio = (f'<audio controls preload="metadata" src="{_data_uri("audio/wav", ex.audio)}"></audio>'
                 if ex.audio else "")
        state = {True: "ok", False: "bad", None: ""}[ex.correct]
        cards.append(f'<div class="ex {state}"><div>true: <b>{_esc(ex.truth)}</b></div>'
                     f'{_img(ex.image, "input of " + ex.name)}<ol>{top}</ol>{audio}'
                     f'<div class="name">{_esc(ex.name)}</div></div>')
    body = f'<div class="examples">{"".join(cards)}</div>' if cards else ""
    return f'<h3>{_esc(title)}</h3><p class="note">{_esc(note)}</p>{body}'
