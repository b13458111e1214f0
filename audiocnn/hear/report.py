"""The reports in the results folder: ``scores.json`` (every record, merged with those of other models and tasks)
and ``scores.md`` (the primary score per model and task), and how scores and grid points are written in logs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audiocnn.core.io import atomic_write_text

__all__ = ["markdown_table"]


def conf_text(conf: dict[str, Any]) -> str:
    return f"hidden_layers={conf['hidden_layers']} {conf['initialization']} lr={conf['lr']:g}"


def mean_pm(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "nan"
    return f"{s['mean']:.4f}" + (f" ± {s['std']:.4f}" if s.get("std") is not None else "")


def markdown_table(doc: dict[str, Any]) -> str:
    """One row per model, one column per task (the primary score, mean ± std over splits)."""
    models = doc.get("models", {})
    tasks = sorted({t for m in models.values() for t in m.get("tasks", {})})
    primary = {}
    for m in models.values():
        for t, rec in m.get("tasks", {}).items():
            primary.setdefault(t, rec.get("primary", ""))
    lines = ["| model | " + " | ".join(f"{t} ({primary[t]})" for t in tasks) + " |",
             "|---|" + "---|" * len(tasks)]
    for name in sorted(models):
        cells = []
        for t in tasks:
            rec = models[name].get("tasks", {}).get(t)
            cells.append(mean_pm(rec["scores"][rec["primary"]]) if rec else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_reports(out: Path, model_name: str, entry: dict[str, Any]) -> None:
    path = out / "scores.json"
    doc: dict[str, Any] = {"models": {}}
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            doc = {"models": {}}
        doc.setdefault("models", {})
    old = doc["models"].get(model_name, {})
    tasks = {**old.get("tasks", {}), **entry.get("tasks", {})}
    errors = {k: v for k, v in {**old.get("errors", {}), **entry.get("errors", {})}.items() if k not in entry["tasks"]}
    doc["models"][model_name] = {**old, **entry, "tasks": tasks, "errors": errors}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / "scores.md", "# HEAR scores\n\nPrimary score per task, mean ± standard deviation over "
                                         "splits.\n\n" + markdown_table(doc))
