"""Checkpoints: weights, resolved config, labels and training state, in one file.

Serialised in memory, then written atomically (temporary file, then rename): a full disk is a
:class:`~audiocnn.core.io.WriteFailure` naming the size needed, and the previous file stays whole.
Read with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects, so loading a
checkpoint never executes code from it.
Front-end kernels are not part of the model's ``state_dict`` and so never stored.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

import audiocnn
from audiocnn.core.errors import CheckpointError
from audiocnn.core.io import atomic_write

__all__ = ["CheckpointError", "capture_rng", "clean_state_dict", "load_checkpoint", "restore_rng", "save_checkpoint"]

FORMAT = "audiocnn-checkpoint"
VERSION = 1


def capture_rng(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Python, NumPy, torch (CPU and CUDA) and DataLoader RNG states as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def restore_rng(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


def clean_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the wrappers' prefixes so any checkpoint loads into the plain model.

    ``module.`` (DDP, DataParallel) and ``_orig_mod.`` (torch.compile) are removed only as whole leading path
    components, and ``_orig_mod`` wherever it stands (a compiled submodule); a layer whose own name contains them
    (``enc.submodule.weight``) keeps its key.
    """
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        while len(parts) > 1 and parts[0] in ("module", "_orig_mod"):
            parts = parts[1:]
        out[".".join(p for p in parts if p != "_orig_mod")] = value
    return out


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, config: dict, labels: list[str], task: str,
                    epoch: int, **extra: Any) -> None:
    """Write a checkpoint atomically. ``extra`` holds optimizer/scheduler/rng state, metrics, best.

    Raises:
        WriteFailure: the disk is full (the message says how many MB the checkpoint needs) or the folder is
            read-only; the file at ``path``, if any, is unchanged.
    """
    payload = {
        "format": FORMAT, "version": VERSION, "audiocnn_version": audiocnn.__version__,
        "torch_version": str(torch.__version__), "model": clean_state_dict(model.state_dict()), "config": config,
        "labels": list(labels), "task": task, "epoch": int(epoch), **extra,
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; a file that is not an audiocnn checkpoint gets a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling refusal or corruption
        raise CheckpointError(f"{path}: cannot be read as an audiocnn checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an audiocnn checkpoint (no '{FORMAT}' marker)")
    payload["model"] = clean_state_dict(payload["model"])
    return payload
