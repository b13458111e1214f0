"""The CREPE input pipeline (Kim et al., 2018; torchcrepe's ``preprocess``) as a torch module.

    16 kHz mono (batch, time)
    -> [center: zero-pad 512 samples on both sides]
    -> frames of 1024 samples every ``hop_length`` (default 160, 10 ms)     (batch, n_frames, 1024)
    -> each frame minus its mean, divided by max(its standard deviation, 1e-10)

The standard deviation is the unbiased one (``torch.std``'s default, as torchcrepe). A silent frame is
divided by 1e-10 and stays zero; a nearly silent one becomes very large, which is what the released
network saw (torchcrepe keeps it so). With ``center=True`` there are ``1 + time // hop_length`` frames,
frame ``k`` centred on sample ``k * hop_length``; with ``center=False`` ``1 + (time - 1024) // hop_length``
(none for audio shorter than one frame), frame ``k`` starting at ``k * hop_length``.

Example:
    >>> fe = CrepeFrames(hop_length=320)
    >>> fe(torch.randn(2, 16000)).shape        # 1 s, 20 ms hop -> 51 frames
    torch.Size([2, 51, 1024])
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CrepeFrames", "FRAME_LENGTH", "SAMPLE_RATE", "STD_FLOOR", "normalize_frames"]

SAMPLE_RATE = 16000
FRAME_LENGTH = 1024
"""Samples under one CREPE frame (64 ms)."""
HOP_LENGTH = 160
"""torchcrepe's default hop: 10 ms."""
STD_FLOOR = 1e-10
"""torchcrepe divides by ``max(std, 1e-10)``."""


def normalize_frames(frames: Tensor) -> Tensor:
    """``(..., 1024) -> (..., 1024)``: each frame minus its mean, over max(unbiased std, 1e-10)."""
    frames = frames - frames.mean(dim=-1, keepdim=True)
    return frames / frames.std(dim=-1, keepdim=True).clamp_min(STD_FLOOR)


class CrepeFrames(nn.Module):
    """Waveform ``(batch, time)`` (or ``(batch, 1, time)``) at 16 kHz -> normalised frames ``(batch, n_frames, 1024)``.

    Args:
        hop_length: samples between frame starts.
        center: zero-pad half a frame on both sides (torchcrepe's ``pad=True``), so short audio gives frames too.
    """

    def __init__(self, *, hop_length: int = HOP_LENGTH, center: bool = True):
        super().__init__()
        if hop_length < 1:
            raise ValueError(f"hop_length must be >= 1 sample, got {hop_length}")
        self.hop_length = int(hop_length)
        self.center = bool(center)
        self.sample_rate = SAMPLE_RATE

    def num_frames(self, num_samples: int) -> int:
        """Frames :meth:`forward` returns for ``num_samples`` samples (0 when too short without ``center``)."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return max(0, 1 + (num_samples - FRAME_LENGTH) // self.hop_length)

    def forward(self, wave: Tensor) -> Tensor:
        if wave.dim() == 3 and wave.shape[1] == 1:
            wave = wave[:, 0]
        if wave.dim() != 2:
            raise ValueError(f"CREPE input must be a wave of shape (batch, time), got {tuple(wave.shape)}")
        wave = wave.float()
        if self.center:
            wave = F.pad(wave, (FRAME_LENGTH // 2, FRAME_LENGTH // 2))
        n = self.num_frames(wave.shape[-1] - (FRAME_LENGTH if self.center else 0))
        if n == 0:
            return wave.new_zeros(wave.shape[0], 0, FRAME_LENGTH)
        frames = wave.unfold(-1, FRAME_LENGTH, self.hop_length)[:, :n]
        return normalize_frames(frames)

    def extra_repr(self) -> str:
        return f"hop_length={self.hop_length}, center={self.center}"
