"""Front-ends: waveform ``(batch, time)`` -> features ``(batch, n_features, frames)`` as ``nn.Module``.

One :class:`Frontend` per backend, all built by :func:`build_frontend` from typed keyword arguments
(:class:`FrontendSettings`, torchaudio's names). Whatever the backend, a front-end

* computes in float32 (also under ``torch.autocast``, and its kernels stay float32 when the
  enclosing model is cast with ``model.half()``);
* keeps its kernels (windows, mel filterbanks, nnAudio's convolution kernels) out of
  ``state_dict()``: they follow from the config and are rebuilt, never loaded;
* moves with ``.to(device)`` as a submodule of the model;
* knows its output size: ``n_features`` rows and ``num_frames(num_samples)`` frames.

Kinds (``frontend.kind``): ``stft`` (``|X|**power``), ``mel`` (mel of ``|X|**power``), ``logmel``
(mel, then ``frontend.log``), ``mfcc`` (mel in dB, then DCT-II ortho, like ``librosa.feature.mfcc``),
``cqt`` (nnAudio ``CQT1992v2``, ``|C|**power``, then ``frontend.log``), ``waveform`` (identity,
``(batch, 1, time)``, for 1-D models) and ``efficientat_mel`` (EfficientAT's input: pre-emphasis, Kaldi mel banks,
``(ln(mel + log_offset) + 4.5) / 5``; :class:`~audiocnn.features.efficientat_input.EfficientATMel`).

Example:
    >>> fe = build_frontend(kind="logmel", n_mels=64, sample_rate=16000)
    >>> fe(torch.randn(8, 16000)).shape        # (batch, n_mels, frames)
    torch.Size([8, 64, 63])
    >>> fe.n_features, fe.num_frames(16000)
    (64, 63)
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
from torch import Tensor, nn

from audiocnn.core.errors import ConfigError
from audiocnn.features.efficientat_input import EfficientATMel
from audiocnn.features.filters import get_window, mel_filters
from audiocnn.features.kernels import FixedKernels, exact_float32
from audiocnn.features.pcen import PCEN, PCEN_INPUT_SCALE


__all__ = ["BACKENDS", "FixedKernels", "Frontend", "FrontendSettings", "KINDS", "MEL_KINDS", "build_frontend",
           "exact_float32"]

KINDS = ("stft", "mel", "logmel", "mfcc", "cqt", "waveform", "efficientat_mel")
"""The audio front-end kinds: the one list (``frontend.kind``; an image run's ``image`` is its modality's own)."""
Backend = Literal["torch", "nnaudio", "librosa", "torchaudio"]
BACKENDS = typing.get_args(Backend)
# torch.stft's padding names; librosa (numpy.pad) spells two of them differently.
PAD_MODES = ("constant", "reflect", "replicate", "circular")
_NUMPY_PAD = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
MEL_KINDS = ("mel", "logmel", "mfcc")
"""The kinds computed through a mel filterbank."""
EFFICIENTAT_FIXED = {"window": "hann", "center": True, "pad_mode": "reflect", "power": 2.0, "norm": None,
                     "mel_scale": "htk", "log": "log"}
"""What ``kind: efficientat_mel`` computes with whatever the settings say: they must say exactly this."""
C1_HZ = 32.70319566257483
"""Lowest CQT bin when ``frontend.f_min`` is 0 (librosa's default, the note C1)."""


@dataclass
class FrontendSettings:
    """What a front-end computes, in torchaudio's names; :func:`build_frontend` takes these as keyword arguments.

    ``center``, ``pad_mode``, ``norm`` and ``mel_scale`` are explicit because librosa, torchaudio and nnAudio
    default differently. A recipe's ``frontend`` section is these fields plus ``normalize``
    (:class:`audiocnn.config.FrontendConfig`).
    """

    kind: str = "logmel"
    """One of :data:`KINDS` (``image``: the image modality's batches are images already; only ``normalize`` applies)."""
    backend: Backend = "torch"
    n_fft: int = 1024
    win_length: Optional[int] = None
    hop_length: int = 256
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    power: float = 2.0
    n_mels: int = 64
    f_min: float = 0.0
    f_max: Optional[float] = None
    norm: Optional[str] = "slaney"
    mel_scale: Literal["slaney", "htk"] = "slaney"
    log: Literal["db", "log", "pcen"] = "db"
    """``db``: 10*log10(max(S, amin)) (librosa.power_to_db, ref=1); ``log``: ln(S + log_offset); ``pcen``:
    per-channel energy normalisation, ``librosa.pcen(S * 2**31, sr=sample_rate, hop_length=hop_length)`` with
    librosa's defaults (gain 0.98, bias 2, power 0.5, time constant 0.4 s), robust to a recording's gain and
    channel (Wang et al., 2017; librosa recommends ``power: 1``, a magnitude spectrogram)."""
    amin: float = 1e-10
    log_offset: float = 1e-6
    top_db: Optional[float] = None
    n_mfcc: int = 20
    n_bins: int = 84
    """CQT: number of bins."""
    bins_per_octave: int = 12
    preemphasis: float = 0.0
    """``efficientat_mel`` only: the coefficient ``c`` of ``x[n + 1] - c x[n]`` (EfficientAT: 0.97); 0 elsewhere."""

    @classmethod
    def of(cls, obj) -> "FrontendSettings":
        """The settings held by any object with these fields (a recipe's ``frontend`` section)."""
        return cls(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)})

    def build(self, sample_rate: int) -> "Frontend":
        """:func:`build_frontend` with these settings."""
        return build_frontend(sample_rate=sample_rate, **dataclasses.asdict(self))


# ----------------------------------------------------------------------------------------------
# Helpers


def _non_persistent(module: nn.Module) -> nn.Module:
    """Re-register every buffer of ``module`` (recursively) as non-persistent.

    Third-party layers (nnAudio, torchaudio) register their kernels as ordinary buffers; they
    still move with ``.to(device)`` but no longer appear in ``state_dict()``.
    """
    for sub in module.modules():
        if any(True for _ in sub.parameters(recurse=False)):
            raise ValueError(f"{type(sub).__name__} has trainable parameters; front-ends are fixed")
        for name, buf in list(sub.named_buffers(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, buf, persistent=False)
    return module


def _power_to_db(S: Tensor, *, amin: float, top_db: Optional[float]) -> Tensor:
    """``librosa.power_to_db(S, ref=1.0, amin=amin, top_db=top_db)`` per example.

    Shape: ``(batch, rows, frames) -> (batch, rows, frames)``; ``top_db`` clips each example at
    its own maximum minus ``top_db``.
    """
    if S.requires_grad:
        S_db = 10.0 * torch.log10(S.clamp(min=amin))
        if top_db is not None:
            S_db = torch.maximum(S_db, S_db.amax(dim=(-2, -1), keepdim=True) - top_db)
        return S_db
    # in place: S is the front-end's own intermediate (no autograd graph needs it), and it is large
    S_db = S.clamp_(min=amin).log10_().mul_(10.0)
    if top_db is not None:
        S_db = S_db.clamp_(min=S_db.amax(dim=(-2, -1), keepdim=True) - top_db)
    return S_db


def _dct_matrix(n_mfcc: int, n_mels: int) -> Tensor:
    """DCT-II, orthonormal, as an ``(n_mfcc, n_mels)`` matrix (``scipy.fft.dct(norm='ortho')``)."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi / n_mels * (n + 0.5) * k) * np.sqrt(2.0 / n_mels)
    basis[0] /= np.sqrt(2.0)
    return torch.from_numpy(basis).float()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ----------------------------------------------------------------------------------------------
# Base class


class Frontend(FixedKernels):
    """Waveform ``(batch, time)`` -> features ``(batch, n_features, frames)``, float32.

    Build one with :func:`build_frontend`; subclasses differ only in the backend computing the
    spectrum. Attributes: ``settings`` (:class:`FrontendSettings`), ``sample_rate``, ``n_features``.
    """

    n_features: int

    def __init__(self, cfg: FrontendSettings, sample_rate: int) -> None:
        super().__init__()
        self.settings = FrontendSettings.of(cfg)
        self.sample_rate = int(sample_rate)
        self.win_length = cfg.win_length or cfg.n_fft
        self.f_max = float(cfg.f_max) if cfg.f_max is not None else sample_rate / 2.0
        self.f_min = float(cfg.f_min) if cfg.kind != "cqt" or cfg.f_min > 0 else C1_HZ
        self.n_features = {
            "stft": cfg.n_fft // 2 + 1, "mel": cfg.n_mels, "logmel": cfg.n_mels,
            "mfcc": cfg.n_mfcc, "cqt": cfg.n_bins, "waveform": 1, "efficientat_mel": cfg.n_mels,
        }[cfg.kind]
        # samples under one frame; centring pads frame_length // 2 on each side
        self.frame_length = cfg.n_fft
        if cfg.kind == "mfcc":
            self.register_buffer("dct", _dct_matrix(cfg.n_mfcc, cfg.n_mels), persistent=False)
        if cfg.kind in ("logmel", "cqt") and cfg.log == "pcen":
            self.pcen = PCEN(sample_rate=self.sample_rate, hop_length=cfg.hop_length)

    # -- public ---------------------------------------------------------------------------------

    def forward(self, wave: Tensor) -> Tensor:
        """Features of a batch of waves.

        Args:
            wave: ``(batch, time)``, any float dtype.

        Returns:
            ``(batch, n_features, num_frames(time))``, float32, on ``wave``'s device.
        """
        if wave.dim() != 2:
            raise ValueError(f"front-end input must be a wave of shape (batch, time), got {tuple(wave.shape)}")
        with torch.autocast(device_type=wave.device.type, enabled=False), exact_float32(wave.device):
            return self._features(wave.float())

    def num_frames(self, num_samples: int) -> int:
        """Number of frames ``forward`` returns for a wave of ``num_samples`` samples."""
        pad = self.frame_length // 2 if self.settings.center else 0
        span = num_samples + 2 * pad - self.frame_length
        if span < 0:
            raise ValueError(
                f"{num_samples} samples are fewer than one frame of {self.frame_length} with "
                f"frontend.center=false; use longer clips or frontend.center=true"
            )
        return 1 + span // self.settings.hop_length

    def extra_repr(self) -> str:
        c = self.settings
        return f"kind={c.kind}, backend={c.backend}, sample_rate={self.sample_rate}, n_features={self.n_features}"

    # -- shared computation ------------------------------------------------------------------

    def _features(self, x: Tensor) -> Tensor:
        return self.finish(self._spectrum(x))

    def _spectrum(self, x: Tensor) -> Tensor:
        """``(batch, time)`` float32 -> linear spectrum: ``|X|**power``, its mel, or ``|C|**power``."""
        raise NotImplementedError

    def finish(self, S: Tensor) -> Tensor:
        """Apply ``frontend.log`` (logmel, cqt) or dB + DCT (mfcc) to a linear spectrum."""
        c = self.settings
        if c.kind == "mfcc":
            return torch.matmul(self.dct, _power_to_db(S, amin=c.amin, top_db=c.top_db))
        if c.kind in ("logmel", "cqt"):
            if c.log == "db":
                return _power_to_db(S, amin=c.amin, top_db=c.top_db)
            if c.log == "pcen":
                return self.pcen(S * PCEN_INPUT_SCALE)
            return torch.log(S + c.log_offset)
        return S


# ----------------------------------------------------------------------------------------------
# Backends


class WaveformFrontend(Frontend):
    """Identity for 1-D models: ``(batch, time) -> (batch, 1, time)``."""

    def num_frames(self, num_samples: int) -> int:
        return num_samples

    def _features(self, x: Tensor) -> Tensor:
        return x.unsqueeze(1)


class EfficientATFrontend(Frontend):
    """``kind: efficientat_mel``: :class:`~audiocnn.features.efficientat_input.EfficientATMel` with these settings.

    It computes with fixed choices, which the settings must state (:func:`_validate` checks them,
    :data:`EFFICIENTAT_FIXED`): a Hann window (symmetric, as the reference's ``torch.hann_window(periodic=False)``),
    centred reflect-padded frames, power 2, mel banks on the HTK/Kaldi scale ``1127 ln(1 + f / 700)`` without
    normalisation (triangles linear in mel, Kaldi's), natural log of ``mel + log_offset``. ``f_max: null`` is
    Nyquist, as for the other kinds (the released models: 15,000 Hz at 32 kHz). Frames: ``1 + (time - 1) // hop``.
    """

    def __init__(self, cfg: FrontendSettings, sample_rate: int) -> None:
        super().__init__(cfg, sample_rate)
        self.mel = EfficientATMel(sample_rate=self.sample_rate, n_fft=cfg.n_fft, win_length=self.win_length,
                                  hop_length=cfg.hop_length, n_mels=cfg.n_mels, f_min=self.f_min, f_max=self.f_max,
                                  preemphasis=cfg.preemphasis, log_offset=cfg.log_offset)

    def num_frames(self, num_samples: int) -> int:
        return self.mel.num_frames(num_samples)

    def _features(self, x: Tensor) -> Tensor:
        return self.mel(x)


def _mel_bands(fb: np.ndarray, group: int) -> list[tuple[int, int, int, int]]:
    """A ``(n_mels, freq)`` filterbank cut into groups of ``group`` filters, each with the FFT bins it uses:
    ``(first filter, last + 1, first bin, last + 1)``. Each bin feeds at most two filters, so the groups'
    products cost about a sixth of the dense ``(freq, n_mels)`` product."""
    bands = []
    for g0 in range(0, fb.shape[0], group):
        g1 = min(g0 + group, fb.shape[0])
        used = np.flatnonzero((fb[g0:g1] != 0).any(axis=0))
        lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
        bands.append((g0, g1, lo, hi))
    return bands


class TorchFrontend(Frontend):
    """``torch.stft`` and librosa's mel filterbank (:func:`~audiocnn.features.filters.mel_filters`, float32).

    On CUDA the whole batch goes through one ``torch.stft``. On the CPU the same numbers are computed
    in blocks of :attr:`CPU_BLOCK_FRAMES` frames (framing, window, ``rfft``, power, and the mel product over the
    few bins each group of filters uses), so each block's intermediates stay in the core's cache: 3-4x faster than
    one batched ``torch.stft`` here, whose ``(batch, freq, frames)`` complex output alone is hundreds of MB for a
    batch of 30 s clips (``benchmarks/frontend.py``).
    """

    CPU_BLOCK_FRAMES = 256
    MEL_GROUP = 16

    def __init__(self, cfg: FrontendSettings, sample_rate: int) -> None:
        super().__init__(cfg, sample_rate)
        window = get_window(cfg.window, self.win_length)
        self.register_buffer("window", torch.from_numpy(window).float(), persistent=False)
        # torch.stft centres a shorter window inside n_fft samples; the blocked path uses it that way directly
        left = (cfg.n_fft - self.win_length) // 2
        framed = np.pad(window, (left, cfg.n_fft - self.win_length - left))
        self.register_buffer("frame_window", torch.from_numpy(framed).float(), persistent=False)
        if cfg.kind in MEL_KINDS:
            fb = mel_filters(sr=sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=self.f_min, fmax=self.f_max,
                             htk=cfg.mel_scale == "htk", norm=cfg.norm)
            self.register_buffer("mel_fb", torch.from_numpy(fb), persistent=False)
            self.mel_bands = _mel_bands(fb, self.MEL_GROUP)
            # each filter weight twice, for a bin's real and imaginary parts squared side by side: the product sums
            # re**2 + im**2 itself (power 2), with no separate squares of the strided halves and no add
            self.register_buffer("mel_fb_pairs", torch.from_numpy(np.repeat(fb.T, 2, axis=0)), persistent=False)

    def _spectrum(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu":
            return self._spectrum_blocked(x)
        c = self.settings
        X = torch.stft(
            x, c.n_fft, hop_length=c.hop_length, win_length=self.win_length, window=self.window,
            center=c.center, pad_mode=c.pad_mode, return_complex=True,
        )
        S = X.real.square() + X.imag.square()  # |X|**2 without a square root
        if c.power != 2.0:
            S = S.pow(c.power / 2.0)
        return torch.matmul(self.mel_fb, S) if c.kind in MEL_KINDS else S

    def _spectrum_blocked(self, x: Tensor) -> Tensor:
        """Same as the ``torch.stft`` path, block by block: ``(batch, time) -> (batch, rows, frames)``."""
        c = self.settings
        pad = c.n_fft // 2 if c.center else 0
        n_frames = self.num_frames(x.shape[-1])
        mel = c.kind in MEL_KINDS
        rows = self.mel_fb.shape[0] if mel else c.n_fft // 2 + 1
        fb_t = self.mel_fb.t() if mel else None                        # (freq, n_mels), a view
        out = x.new_empty(x.shape[0], n_frames, rows)
        for b in range(x.shape[0]):
            # one clip padded at a time: a whole padded batch would be written to fresh memory first
            wave = nn.functional.pad(x[b:b + 1].unsqueeze(1), (pad, pad), mode=c.pad_mode)[0, 0] if pad else x[b]
            frames = wave.unfold(-1, c.n_fft, c.hop_length)             # (frames, n_fft), a view
            for start in range(0, n_frames, self.CPU_BLOCK_FRAMES):
                stop = start + self.CPU_BLOCK_FRAMES
                X = torch.fft.rfft(frames[start:stop] * self.frame_window)      # (block, freq)
                if mel and c.power == 2.0:
                    pairs = torch.view_as_real(X).view(X.shape[0], -1).square_()  # (block, 2 freq)
                    for g0, g1, lo, hi in self.mel_bands:
                        torch.mm(pairs[:, 2 * lo:2 * hi], self.mel_fb_pairs[2 * lo:2 * hi, g0:g1],
                                 out=out[b, start:stop, g0:g1])
                    continue
                S = X.real.square() + X.imag.square()
                if c.power != 2.0:
                    S = S.pow(c.power / 2.0)
                if not mel:
                    out[b, start:stop] = S
                    continue
                for g0, g1, lo, hi in self.mel_bands:
                    torch.mm(S[:, lo:hi], fb_t[lo:hi, g0:g1], out=out[b, start:stop, g0:g1])
        return out.transpose(1, 2).contiguous()


def _nnaudio_layer(cfg: FrontendSettings, sample_rate: int, *, f_min: float, f_max: float) -> nn.Module:
    """The nnAudio layer for ``cfg.kind``: the one place where config names become nnAudio's.

    torchaudio -> nnAudio: ``sample_rate -> sr``, ``f_min -> fmin``, ``f_max -> fmax``,
    ``mel_scale='htk' -> htk=True``, ``norm='slaney' -> norm=1``; nnAudio pads with reflect by
    default, so ``pad_mode`` is always passed.
    """
    from nnAudio import features

    common = dict(sr=sample_rate, hop_length=cfg.hop_length, window=cfg.window, center=cfg.center,
                  pad_mode=cfg.pad_mode, verbose=False)
    if cfg.kind == "cqt":
        return features.CQT1992v2(**common, fmin=f_min, n_bins=cfg.n_bins,
                                  bins_per_octave=cfg.bins_per_octave, output_format="Magnitude")
    stft = dict(n_fft=cfg.n_fft, win_length=cfg.win_length or cfg.n_fft)
    if cfg.kind == "stft":
        return features.STFT(**common, **stft, freq_scale="no", output_format="Magnitude")
    return features.MelSpectrogram(
        **common, **stft, n_mels=cfg.n_mels, power=cfg.power, htk=cfg.mel_scale == "htk",
        fmin=f_min, fmax=f_max, norm=1 if cfg.norm == "slaney" else None,
    )


class NnAudioFrontend(Frontend):
    """nnAudio's convolutional STFT, mel spectrogram and CQT (``CQT1992v2``)."""

    def __init__(self, cfg: FrontendSettings, sample_rate: int) -> None:
        super().__init__(cfg, sample_rate)
        self.layer = _non_persistent(_nnaudio_layer(cfg, sample_rate, f_min=self.f_min, f_max=self.f_max))
        if cfg.kind == "cqt":
            self.frame_length = int(self.layer.kernel_width)

    def _spectrum(self, x: Tensor) -> Tensor:
        S = self.layer(x)
        if self.settings.kind in ("stft", "cqt") and self.settings.power != 1.0:
            S = S.pow(self.settings.power)
        return S


_TORCH_WINDOWS = ("hann", "hamming", "blackman", "bartlett")


class TorchaudioFrontend(Frontend):
    """``torchaudio.transforms.Spectrogram`` / ``MelSpectrogram`` (needs torchaudio)."""

    def __init__(self, cfg: FrontendSettings, sample_rate: int) -> None:
        super().__init__(cfg, sample_rate)
        try:
            import torchaudio
        except Exception as e:  # missing, or built for another torch
            raise ImportError(
                f"frontend.backend=torchaudio needs torchaudio ({e}); install it "
                f"(pip install 'audiocnn[torchaudio]') or use frontend.backend=torch"
            ) from e
        _check(cfg.window in _TORCH_WINDOWS,
               f"frontend.window={cfg.window!r} is not available with frontend.backend=torchaudio "
               f"(one of {', '.join(_TORCH_WINDOWS)}); use frontend.backend=torch")
        common = dict(n_fft=cfg.n_fft, win_length=self.win_length, hop_length=cfg.hop_length, pad=0,
                      window_fn=getattr(torch, f"{cfg.window}_window"), power=cfg.power,
                      normalized=False, center=cfg.center, pad_mode=cfg.pad_mode)
        T = torchaudio.transforms
        if cfg.kind == "stft":
            layer = T.Spectrogram(**common)
        else:
            layer = T.MelSpectrogram(sample_rate=sample_rate, f_min=self.f_min, f_max=self.f_max,
                                     n_mels=cfg.n_mels, norm=cfg.norm, mel_scale=cfg.mel_scale, **common)
        self.layer = _non_persistent(layer)

    def _spectrum(self, x: Tensor) -> Tensor:
        return self.layer(x)


class LibrosaFrontend(Frontend):
    """librosa on the CPU, one example at a time: slow, a reference for the other backends."""

    def _features(self, x: Tensor) -> Tensor:
        import librosa

        c = self.settings
        stft = dict(n_fft=c.n_fft, hop_length=c.hop_length, win_length=self.win_length, window=c.window,
                    center=c.center, pad_mode=_NUMPY_PAD[c.pad_mode])

        def db(S: np.ndarray) -> np.ndarray:
            return librosa.power_to_db(S, ref=1.0, amin=c.amin, top_db=c.top_db)

        def one(y: np.ndarray) -> np.ndarray:
            if c.kind == "stft":
                return np.abs(librosa.stft(y, **stft)) ** c.power
            S = librosa.feature.melspectrogram(
                y=y, sr=self.sample_rate, power=c.power, n_mels=c.n_mels, fmin=self.f_min,
                fmax=self.f_max, htk=c.mel_scale == "htk", norm=c.norm, **stft,
            )
            if c.kind == "mfcc":
                return librosa.feature.mfcc(S=db(S), n_mfcc=c.n_mfcc, dct_type=2, norm="ortho")
            if c.kind == "logmel" and c.log == "pcen":
                return librosa.pcen(S * PCEN_INPUT_SCALE, sr=self.sample_rate, hop_length=c.hop_length)
            if c.kind == "logmel":
                return db(S) if c.log == "db" else np.log(S + c.log_offset)
            return S

        out = np.stack([one(y) for y in x.detach().cpu().numpy()])
        return torch.from_numpy(out).to(device=x.device, dtype=torch.float32)


_BACKEND_CLASSES = {
    "torch": TorchFrontend, "nnaudio": NnAudioFrontend,
    "librosa": LibrosaFrontend, "torchaudio": TorchaudioFrontend,
}
_KIND_BACKENDS = {"cqt": ("nnaudio",), "efficientat_mel": ("torch",)}
"""Kinds that only some backends compute (all others: every backend)."""


# ----------------------------------------------------------------------------------------------
# Factory


def _validate(cfg: FrontendSettings, sample_rate: int) -> None:
    _check(cfg.kind in KINDS, f"frontend.kind={cfg.kind!r} is not one of {', '.join(KINDS)}")
    _check(cfg.backend in BACKENDS, f"frontend.backend={cfg.backend!r} is not one of {', '.join(BACKENDS)}")
    _check(sample_rate > 0, f"sample_rate must be positive, got {sample_rate}")
    if cfg.kind == "waveform":
        return
    allowed = _KIND_BACKENDS.get(cfg.kind, BACKENDS)
    _check(cfg.backend in allowed,
           f"frontend.kind={cfg.kind} is not available with frontend.backend={cfg.backend}; "
           f"use frontend.backend={allowed[0]}")
    _check(cfg.hop_length >= 1, f"frontend.hop_length must be >= 1, got {cfg.hop_length}")
    _check(cfg.pad_mode in PAD_MODES,
           f"frontend.pad_mode={cfg.pad_mode!r} is not one of {', '.join(PAD_MODES)}")
    if cfg.backend == "nnaudio":
        _check(cfg.pad_mode in ("constant", "reflect"),
               f"frontend.pad_mode={cfg.pad_mode} is not available with frontend.backend=nnaudio; "
               f"use constant or reflect")
    _check(cfg.power > 0, f"frontend.power must be positive, got {cfg.power}")
    _check(cfg.preemphasis == 0 or cfg.kind == "efficientat_mel",
           f"frontend.preemphasis={cfg.preemphasis} applies to kind efficientat_mel only; set it to 0")
    if cfg.kind == "efficientat_mel":
        wrong = [f"frontend.{k}={v!r}" for k, v in EFFICIENTAT_FIXED.items() if getattr(cfg, k) != v]
        _check(not wrong, f"frontend.kind=efficientat_mel computes with fixed settings; set {', '.join(wrong)} "
                          f"(null for None)")
        _check(0 <= cfg.preemphasis < 1, f"frontend.preemphasis must be in [0, 1), got {cfg.preemphasis}")
        _check(cfg.n_fft % 2 == 0 and cfg.n_mels >= 4,
               f"frontend.kind=efficientat_mel needs an even n_fft and n_mels >= 4, got n_fft={cfg.n_fft}, "
               f"n_mels={cfg.n_mels}")
    try:  # every backend but torchaudio takes scipy's window names
        get_window(cfg.window, 16)
    except ValueError as e:
        raise ConfigError(f"frontend.window={cfg.window!r} is not a window scipy.signal.get_window knows ({e})") from None
    _check(cfg.log in ("db", "log", "pcen"), f"frontend.log={cfg.log!r} is not one of db, log, pcen")
    _check(cfg.amin > 0, f"frontend.amin must be positive, got {cfg.amin}")
    _check(cfg.top_db is None or cfg.top_db >= 0, f"frontend.top_db must be >= 0 or null, got {cfg.top_db}")
    nyquist = sample_rate / 2.0
    if cfg.kind == "cqt":
        f_min = cfg.f_min if cfg.f_min > 0 else C1_HZ
        top = f_min * 2.0 ** ((cfg.n_bins - 1) / cfg.bins_per_octave)
        _check(top < nyquist,
               f"frontend.n_bins={cfg.n_bins} CQT bins from frontend.f_min={f_min:.2f} Hz reach {top:.0f} Hz, "
               f"above the Nyquist frequency {nyquist:g} Hz at sample_rate={sample_rate}; lower n_bins or f_min")
        return
    _check(cfg.n_fft >= 2, f"frontend.n_fft must be >= 2, got {cfg.n_fft}")
    win = cfg.win_length or cfg.n_fft
    _check(1 <= win <= cfg.n_fft, f"frontend.win_length={cfg.win_length} must be between 1 and n_fft={cfg.n_fft}")
    if cfg.kind in (*MEL_KINDS, "efficientat_mel"):
        f_max = cfg.f_max if cfg.f_max is not None else nyquist
        _check(0 <= cfg.f_min < f_max <= nyquist,
               f"need 0 <= frontend.f_min < frontend.f_max <= {nyquist:g} (sample_rate/2), "
               f"got f_min={cfg.f_min}, f_max={cfg.f_max}")
        _check(cfg.norm in ("slaney", None), f"frontend.norm={cfg.norm!r} must be 'slaney' or null")
        _check(cfg.mel_scale in ("slaney", "htk"), f"frontend.mel_scale={cfg.mel_scale!r} must be slaney or htk")
        _check(cfg.n_mels >= 1, f"frontend.n_mels must be >= 1, got {cfg.n_mels}")
    if cfg.kind == "mfcc":
        _check(1 <= cfg.n_mfcc <= cfg.n_mels,
               f"frontend.n_mfcc={cfg.n_mfcc} must be between 1 and frontend.n_mels={cfg.n_mels}")


def build_frontend(*, sample_rate: int, kind: str = "logmel", backend: Backend = "torch", n_fft: int = 1024,
                   win_length: Optional[int] = None, hop_length: int = 256, window: str = "hann", center: bool = True,
                   pad_mode: str = "constant", power: float = 2.0, n_mels: int = 64, f_min: float = 0.0,
                   f_max: Optional[float] = None, norm: Optional[str] = "slaney",
                   mel_scale: Literal["slaney", "htk"] = "slaney", log: Literal["db", "log", "pcen"] = "db",
                   amin: float = 1e-10, log_offset: float = 1e-6, top_db: Optional[float] = None, n_mfcc: int = 20,
                   n_bins: int = 84, bins_per_octave: int = 12, preemphasis: float = 0.0) -> Frontend:
    """Build a front-end module; the arguments are :class:`FrontendSettings`' fields (torchaudio's names).

    Args:
        sample_rate: sample rate of the waves it will see (``data.sample_rate``).
        kind: one of :data:`KINDS`; the other arguments as in ``torchaudio.transforms.MelSpectrogram``,
            ``librosa.feature.mfcc`` and ``nnAudio``'s ``CQT1992v2`` (``n_bins``, ``bins_per_octave``);
            ``preemphasis`` for ``efficientat_mel`` only.

    Returns:
        A :class:`Frontend`: ``(batch, time) -> (batch, n_features, frames)``, float32.

    Raises:
        ValueError: an invalid setting or an unavailable kind/backend pair, naming the recipe key.
        ImportError: ``backend=torchaudio`` without a working torchaudio.

    Example:
        >>> fe = build_frontend(kind="mfcc", n_mfcc=20, sample_rate=8000)
        >>> fe(torch.randn(2, 8000)).shape
        torch.Size([2, 20, 32])
    """
    settings = FrontendSettings(
        kind=kind, backend=backend, n_fft=n_fft, win_length=win_length, hop_length=hop_length, window=window,
        center=center, pad_mode=pad_mode, power=power, n_mels=n_mels, f_min=f_min, f_max=f_max, norm=norm,
        mel_scale=mel_scale, log=log, amin=amin, log_offset=log_offset, top_db=top_db, n_mfcc=n_mfcc, n_bins=n_bins,
        bins_per_octave=bins_per_octave, preemphasis=preemphasis)
    _validate(settings, sample_rate)
    if kind == "waveform":
        return WaveformFrontend(settings, sample_rate)
    if kind == "efficientat_mel":
        return EfficientATFrontend(settings, sample_rate)
    return _BACKEND_CLASSES[backend](settings, sample_rate)
