"""``audiocnn probe EMBED_DIR labels.csv``: how much a classifier learns from clip embeddings.

A scikit-learn classifier (standardised features, then logistic regression, or an MLP) is trained on the clip
embeddings written by ``audiocnn embed`` and tested by cross-validation: one fold per value of a ``fold``
column when the labels have one (ESC-50's official folds), else stratified k-fold. Accuracy and macro-F1 are
printed per fold and saved as JSON.

Labels are matched to embeddings by the audio path (relative paths are taken from the labels file's folder),
else by file stem, so ``filename`` columns naming ``.wav`` files still match embedded ``.flac`` files.

Example:
    >>> r = probe("esc10_emb/", "esc10/manifest.csv")        # columns found: flac_path, category, fold
    >>> [f["accuracy"] for f in r["folds"]], r["mean"]["accuracy"]
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from audiocnn.core.errors import AudiocnnError, NotFoundError
from audiocnn.embed import read_clip_embeddings
from audiocnn.core.io import atomic_write_text

__all__ = ["ProbeError", "probe"]

PATH_COLUMNS = ("path", "flac_path", "filepath", "file", "filename", "audio", "wav")
LABEL_COLUMNS = ("label", "category", "class", "target")
FOLD_COLUMNS = ("fold",)


class ProbeError(AudiocnnError, ValueError):
    """The labels do not fit the embeddings; the message names the file and columns."""


def _pick(header: list[str], given: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str | None:
    if given is not None:
        if given not in header:
            raise ProbeError(f"{path} has no column {given!r} for the {what}; its columns: {', '.join(header)}")
        return given
    return next((c for c in candidates if c in header), None)


def _read_labels(path: Path, label_column: str | None, path_column: str | None,
                 fold_column: str | None) -> tuple[list[dict[str, str]], str, str, str | None]:
    if not path.is_file():
        raise NotFoundError(f"labels file {path} not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    pcol = _pick(header, path_column, PATH_COLUMNS, "audio path", path)
    lcol = _pick(header, label_column, LABEL_COLUMNS, "label", path)
    if pcol is None or lcol is None:
        missing = "a path column (--path-column)" if pcol is None else "a label column (--label-column)"
        raise ProbeError(f"{path}: cannot find {missing}; its columns: {', '.join(header)}")
    fcol = None if fold_column == "none" else _pick(header, fold_column, FOLD_COLUMNS, "fold", path)
    return rows, pcol, lcol, fcol


def _match(emb_rows: list[dict[str, Any]], label_rows: list[dict[str, str]], pcol: str,
           base: Path) -> list[tuple[int, int]]:
    """``(embedding index, label row index)`` pairs: by resolved path, else by unique file stem."""
    by_path = {Path(r["source"]).resolve(): i for i, r in enumerate(emb_rows)}
    stems: dict[str, list[int]] = {}
    for i, r in enumerate(emb_rows):
        stems.setdefault(Path(r["source"]).stem, []).append(i)
    pairs, used = [], set()
    for j, row in enumerate(label_rows):
        value = (row.get(pcol) or "").strip()
        if not value:
            continue
        p = Path(value)
        i = by_path.get((p if p.is_absolute() else base / p).resolve())
        if i is None and len(stems.get(p.stem, [])) == 1:
            i = stems[p.stem][0]
        if i is not None and i not in used:
            used.add(i)
            pairs.append((i, j))
    return pairs


def _make_classifier(kind: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        model = LogisticRegression(max_iter=5000, C=1.0)
    elif kind == "mlp":
        # no early stopping: its 10% validation split is a handful of clips on probe-sized data
        model = MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-2, max_iter=2000, random_state=seed)
    else:
        raise ProbeError(f"classifier must be logreg or mlp, got {kind!r}")
    return make_pipeline(StandardScaler(), model)


def probe(embed_dir: str | Path, labels_csv: str | Path, *, label_column: str | None = None,
          path_column: str | None = None, fold_column: str | None = None, classifier: Literal["logreg", "mlp"] = "logreg",
          folds: int = 5, seed: int = 0, out: str | Path | None = None,
          log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Cross-validated classification of clip embeddings.

    Args:
        embed_dir: an ``audiocnn embed --out`` folder.
        labels_csv: a CSV with an audio path column and a label column (and optionally ``fold``).
        label_column / path_column / fold_column: column names (default: found among
            :data:`LABEL_COLUMNS`, :data:`PATH_COLUMNS`, ``fold``); ``fold_column="none"`` ignores a fold column.
        classifier: ``logreg`` (logistic regression) or ``mlp`` (one hidden layer of 256).
        folds: stratified folds when there is no fold column.
        out: JSON path (default: ``embed_dir/probe_<classifier>.json``).

    Returns:
        ``{"folds": [{"fold", "n_train", "n_test", "accuracy", "macro_f1"}...], "mean": {...}, "std": {...}, ...}``.
    """
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    embed_dir, labels_csv = Path(embed_dir), Path(labels_csv)
    emb_rows, X_all = read_clip_embeddings(embed_dir)
    label_rows, pcol, lcol, fcol = _read_labels(labels_csv, label_column, path_column, fold_column)
    pairs = _match(emb_rows, label_rows, pcol, labels_csv.parent)
    if not pairs:
        raise ProbeError(f"no embedding in {embed_dir} matches a row of {labels_csv} (column {pcol!r}); "
                         "check --path-column")
    X = X_all[[i for i, _ in pairs]]
    y = np.asarray([label_rows[j][lcol] for _, j in pairs])
    counts = Counter(y.tolist())
    if len(counts) < 2:
        raise ProbeError(f"{labels_csv} column {lcol!r} has one class among the matched clips; a probe needs two")

    if fcol is not None:
        fold_of = np.asarray([label_rows[j][fcol] for _, j in pairs])
        names = sorted(set(fold_of.tolist()), key=lambda v: (len(v), v))
        splits = [(str(f), np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in names]
        scheme = f"folds from column {fcol!r}"
    else:
        k = min(folds, min(counts.values()))
        if k < 2:
            raise ProbeError(f"the rarest class has {min(counts.values())} clip(s); stratified folds need 2 or more")
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = [(str(i + 1), tr, te) for i, (tr, te) in enumerate(skf.split(X, y))]
        scheme = f"stratified {k}-fold (seed {seed})"

    if log is not None:
        log(f"probe: {len(pairs)} clips, {len(counts)} classes, {X.shape[1]}-d embeddings; {classifier}; {scheme}"
            + (f"; {len(label_rows) - len(pairs)} label rows without an embedding" if len(pairs) < len(label_rows) else ""))
    results = []
    for name, train, test in splits:
        if len(set(y[train].tolist())) < 2 or len(test) == 0:
            raise ProbeError(f"fold {name}: training needs two classes and the test part a clip")
        model = _make_classifier(classifier, seed).fit(X[train], y[train])
        pred = model.predict(X[test])
        r = {"fold": name, "n_train": int(len(train)), "n_test": int(len(test)),
             "accuracy": float(accuracy_score(y[test], pred)),
             "macro_f1": float(f1_score(y[test], pred, average="macro"))}
        results.append(r)
        if log is not None:
            log(f"  fold {name}: accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  "
                f"(train {r['n_train']}, test {r['n_test']})")
    keys = ("accuracy", "macro_f1")
    mean = {k: float(np.mean([r[k] for r in results])) for k in keys}
    std = {k: float(np.std([r[k] for r in results])) for k in keys}
    report = {"embed_dir": str(embed_dir), "labels": str(labels_csv), "columns": {"path": pcol, "label": lcol, "fold": fcol},
              "classifier": classifier, "scheme": scheme, "n_clips": len(pairs), "classes": sorted(counts),
              "dim": int(X.shape[1]), "folds": results, "mean": mean, "std": std,
              "date": dt.datetime.now().isoformat(timespec="seconds")}
    out_path = Path(out) if out is not None else embed_dir / f"probe_{classifier}.json"
    atomic_write_text(out_path, json.dumps(report, indent=2) + "\n")
    if log is not None:
        log(f"  mean: accuracy {mean['accuracy']:.4f} +- {std['accuracy']:.4f}  macro-F1 {mean['macro_f1']:.4f} "
            f"+- {std['macro_f1']:.4f}")
        log(f"wrote {out_path}")
    report["path"] = str(out_path)
    return report
