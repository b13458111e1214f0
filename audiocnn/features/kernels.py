"""Fixed kernels for front-ends: buffers that keep float32 when a model is cast, and exact float32 on CUDA.

The base of every front-end module (:mod:`audiocnn.features.frontends`, :mod:`audiocnn.features.efficientat_input`).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

__all__ = ["FixedKernels", "exact_float32"]


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """Turn TF32 off for the front-end on CUDA.

    cuDNN convolutions (nnAudio's STFT and CQT) default to TF32 on Ampere and later GPUs, and
    ``torch.set_float32_matmul_precision("high")`` does the same for the mel matmul: a 10-bit
    mantissa, about 1e-3 relative error, i.e. 0.005 dB on loud bins and far more on quiet ones.
    """
    if device.type != "cuda":
        yield
        return
    flags = [(torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32")]
    try:
        saved = [getattr(mod, name) for mod, name in flags]
    except RuntimeError:  # TF32 was set through the newer fp32_precision API: leave it alone
        yield
        return
    for mod, name in flags:
        setattr(mod, name, False)
    try:
        yield
    finally:
        for (mod, name), value in zip(flags, saved):
            setattr(mod, name, value)


class FixedKernels(nn.Module):
    """A module whose buffers (windows, filterbanks) keep their dtype when the enclosing model is cast:
    ``model.half()`` / ``model.to(torch.bfloat16)`` moves them to the new device only."""

    def _apply(self, fn, recurse=True):
        def keep_dtype(t: Tensor) -> Tensor:
            out = fn(t)
            return out if out.dtype == t.dtype else t.to(device=out.device)

        return super()._apply(keep_dtype, recurse)
