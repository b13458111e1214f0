"""Layer table: output shape and parameter count per layer, totals and memory sizes.

    audiocnn summary recipes/genre.yaml
    audiocnn summary resnet_small --input-shape 1,1,64,188
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LayerRow", "model_summary", "format_summary"]


@dataclass
class LayerRow:
    name: str
    kind: str
    depth: int
    output_shape: tuple
    params: int
    trainable: int


def _own_params(m: nn.Module) -> tuple[int, int]:
    ps = list(m.parameters(recurse=False))
    return sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)


@torch.no_grad()
def model_summary(model: nn.Module, example: torch.Tensor, *, max_depth: int = 3) -> dict:
    """Run one forward pass on ``example`` with hooks; return rows and totals.

    Modules deeper than ``max_depth`` are folded into their ancestor's row (parameters included).
    """
    rows: list[LayerRow | None] = []
    hooks = []
    activations = 0
    open_rows: dict[int, list[int]] = {}  # module id -> row slots claimed at call time, innermost last

    def fold(m: nn.Module) -> tuple[int, int]:
        total = sum(p.numel() for p in m.parameters())
        return total, sum(p.numel() for p in m.parameters() if p.requires_grad)

    def claim(mod, inp):  # a module's row goes where its call starts, so a parent precedes its children
        open_rows.setdefault(id(mod), []).append(len(rows))
        rows.append(None)

    for name, m in model.named_modules():
        depth = name.count(".") + 1 if name else 0
        if depth == 0 or depth > max_depth:
            continue
        leaf = not any(True for _ in m.children()) or depth == max_depth

        def hook(mod, inp, out, name=name, depth=depth, leaf=leaf):
            nonlocal activations
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else tuple(
                tuple(o.shape) for o in out if isinstance(o, torch.Tensor))
            params, trainable = fold(mod) if leaf else _own_params(mod)
            if leaf and isinstance(out, torch.Tensor):
                activations += out.numel() * out.element_size()
            rows[open_rows[id(mod)].pop()] = LayerRow(name, type(mod).__name__, depth, shape, params, trainable)

        hooks.append(m.register_forward_pre_hook(claim))
        hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    mb = 1024 ** 2
    rows = [r for r in rows if r is not None]  # a call that raised leaves no row
    return {"rows": rows, "total_params": total, "trainable_params": trainable,
            "input_mb": example.numel() * example.element_size() / mb,
            "activations_mb": activations / mb, "params_mb": param_bytes / mb,
            "total_mb": (example.numel() * example.element_size() + activations + param_bytes) / mb}


def format_summary(summary: dict, title: str = "") -> str:
    """A fixed-width text table (forward order)."""
    lines = []
    if title:
        lines.append(title)
    header = f"{'layer':<44} {'type':<18} {'output shape':<24} {'params':>12}"
    lines += [header, "-" * len(header)]
    for r in summary["rows"]:
        name = "  " * (r.depth - 1) + r.name.split(".")[-1] if r.depth > 1 else r.name
        shape = "x".join(map(str, r.output_shape)) if r.output_shape and isinstance(r.output_shape[0], int) else str(r.output_shape)
        params = f"{r.params:,}" if r.params else "-"
        lines.append(f"{name[:44]:<44} {r.kind[:18]:<18} {shape[:24]:<24} {params:>12}")
    lines.append("-" * len(header))
    s = summary
    lines += [f"total params:       {s['total_params']:,}",
              f"trainable params:   {s['trainable_params']:,}",
              f"non-trainable:      {s['total_params'] - s['trainable_params']:,}",
              f"input size (MB):    {s['input_mb']:.2f}",
              f"activations (MB):   {s['activations_mb']:.2f}",
              f"params size (MB):   {s['params_mb']:.2f}",
              f"estimated total (MB): {s['total_mb']:.2f}"]
    return "\n".join(lines)
