"""Shared by the zoo tests: random state dicts for reference layouts (``{key: shape}`` written in a test from a
published architecture), their parameter counts, and one thread for tiny forwards."""
from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny inputs gain nothing from threads, and on a shared CPU they spin-wait for each other
    (autouse in every module that imports it)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fill(shapes: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors for a layout: He-scaled weights, positive running variances, so deep forwards stay finite."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1:  # biases, BN weights and means
            sd[k] = (1.0 if k.endswith("weight") else 0.0) + 0.1 * torch.randn(shape, generator=g)
        else:
            sd[k] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    return sd


def n_learnable(shapes: dict[str, tuple]) -> int:
    """Parameters in a layout (running statistics and batch counters left out)."""
    return sum(math.prod(s) for k, s in shapes.items() if not k.split(".")[-1].startswith(("running", "num_batches")))
