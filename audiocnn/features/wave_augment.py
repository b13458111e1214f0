"""Waveform augmentation on the device, batched: ``(batch, time) -> (batch, time)`` transforms registered in
:data:`~audiocnn.features.augment.AUGMENTS` (the ``wave`` stage).

Each transform is active only while ``self.training`` and draws its randomness from torch's global RNG on the
wave's device (CPU or CUDA), which the engine seeds from ``trainer.seed`` and checkpoints, so a resumed run draws
the same. :class:`WaveAugment` applies them in the fixed order :data:`WAVE_ORDER`, before the front-end:

    speed -> stretch -> pitch -> shift -> gain -> eq -> reverb -> noise

Each transform keeps what it drew in ``self.drawn`` (tensors, one row per example) for inspection and tests.

Example:
    >>> aug = WaveAugment([SpeedPerturb(prob=0.5), AddNoise(sample_rate=16000, prob=1.0, snr_low=5, snr_high=20)])
    >>> wave = aug(wave)   # (batch, time) -> (batch, time); the identity in eval mode
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from audiocnn.audio import AUDIO_EXTENSIONS, SincResampler, load_audio
from audiocnn.core.errors import ConfigError
from audiocnn.features.augment import AUGMENT_STAGES, AUGMENTS

__all__ = ["WAVE_ORDER", "AddNoise", "PitchShift", "RandomEQ", "RandomGain", "Reverb", "SpeedPerturb",
           "TimeShift", "TimeStretch", "WaveAugment", "biquad_filter", "factor_grid", "peaking_biquad", "phase_vocoder_stretch"]

WAVE_ORDER = AUGMENT_STAGES["wave"]
"""The order :class:`WaveAugment` applies the registered transforms in (the audio modality builds them so)."""

_LN1000 = 3 * math.log(10)  # amplitude decays by 60 dB (a factor 1000) over one RT60


def _chosen(batch: int, prob: float, device: torch.device) -> Tensor:
    """``(batch,)`` bool: which examples a transform touches this step."""
    return torch.rand(batch, device=device) < prob


def _read_folder(folder: str, key: str, sample_rate: int) -> list[Tensor]:
    """Every audio file under ``folder`` as a 1-D float32 tensor at ``sample_rate``; a clear error when none.

    Read at the first training step, not at construction, so a trained model loads where the folder is absent."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS) if root.is_dir() else []
    if not files:
        why = "is not a folder" if not root.is_dir() else f"holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"
        raise ConfigError(f"augment.{key}={folder!r} {why}; point it at a folder of audio files or set it to ''")
    return [torch.from_numpy(load_audio(p, sample_rate, min_duration=0.0)) for p in files]


@AUGMENTS.register("gain")
class RandomGain(nn.Module):
    """Gain uniform in ``[-gain_db, +gain_db]`` dB per example (every example; 0 disables).

    Args:
        gain_db: largest gain magnitude, dB (>= 0).

    Shape:
        ``(batch, time) -> (batch, time)``.

    Example:
        >>> RandomGain(gain_db=6.0).train()(torch.randn(4, 16000)).shape
        torch.Size([4, 16000])
    """

    def __init__(self, *, gain_db: float = 0.0) -> None:
        super().__init__()
        self.gain_db = float(gain_db)
        self.drawn: dict[str, Tensor] = {}

    def forward(self, wave: Tensor) -> Tensor:
        if not self.training or self.gain_db <= 0:
            return wave
        gain_db = (torch.rand(wave.shape[0], 1, device=wave.device) * 2 - 1) * self.gain_db
        self.drawn = {"gain_db": gain_db[:, 0]}
        return wave * 10 ** (gain_db / 20)


@AUGMENTS.register("shift")
class TimeShift(nn.Module):
    """Shift each chosen example by a whole number of samples in ``[-max_s, +max_s]`` seconds, zero fill.

    Args:
        sample_rate: Hz.
        prob: probability per example.
        max_s: largest shift, seconds.

    Shape:
        ``(batch, time) -> (batch, time)``; ``drawn["shift"]`` in samples (positive: later).

    Example:
        >>> TimeShift(sample_rate=16000, prob=1.0, max_s=0.1).train()(torch.randn(4, 16000)).shape
        torch.Size([4, 16000])
    """

    def __init__(self, *, sample_rate: int, prob: float = 0.0, max_s: float = 0.1) -> None:
        super().__init__()
        self.prob, self.max_shift = float(prob), int(round(max_s * sample_rate))
        self.drawn: dict[str, Tensor] = {}

    def forward(self, wave: Tensor) -> Tensor:
        if not self.training or self.prob <= 0 or self.max_shift == 0:
            return wave
        batch, n = wave.shape
        shift = torch.randint(-self.max_shift, self.max_shift + 1, (batch,), device=wave.device)
        shift = shift * _chosen(batch, self.prob, wave.device)
        self.drawn = {"shift": shift}
        src = torch.arange(n, device=wave.device)[None, :] - shift[:, None]
        inside = (src >= 0) & (src < n)
        return torch.gather(wave, 1, src.clamp(0, n - 1)) * inside


def factor_grid(low: float, high: float, steps: int) -> list[float]:
    """``steps`` factors evenly spaced in ``[low, high]``, rounded to 0.01 (each a small rational ratio)."""
    return [round(f, 2) for f in (torch.linspace(low, high, steps).tolist() if steps > 1 else [low])]


def phase_vocoder_stretch(wave: Tensor, rate: float, *, n_fft: int = 512, hop_length: int = 128) -> Tensor:
    """Time stretch by a phase vocoder (Flanagan and Golden, 1966; librosa's ``phase_vocoder``): duration ``/ rate``,
    pitch kept.

    Args:
        wave: ``(batch, time)``.
        rate: speed-up factor (2: half as long).
        n_fft / hop_length: STFT size and hop (Hann window).

    Returns:
        ``(batch, round(time / rate))``, float32.

    Example:
        >>> phase_vocoder_stretch(torch.randn(2, 16000), 1.25).shape
        torch.Size([2, 12800])
    """
    window = torch.hann_window(n_fft, device=wave.device)
    spec = torch.stft(wave.float(), n_fft, hop_length, window=window, center=True, return_complex=True)
    steps = torch.arange(0, spec.shape[-1], rate, device=wave.device, dtype=torch.float64)
    spec = nn.functional.pad(spec, (0, 2))
    left, frac = steps.floor().long(), (steps - steps.floor()).float()
    c0, c1 = spec[..., left], spec[..., left + 1]
    mag = (1 - frac) * c0.abs() + frac * c1.abs()
    advance = 2 * math.pi * hop_length * torch.arange(spec.shape[1], device=wave.device) / n_fft
    dphase = c1.angle() - c0.angle() - advance[:, None]
    dphase = dphase - 2 * math.pi * torch.round(dphase / (2 * math.pi))
    phase = spec[..., :1].angle() + torch.cumsum(advance[:, None] + dphase, -1) - (advance[:, None] + dphase)
    out = torch.polar(mag, phase)
    return torch.istft(out, n_fft, hop_length, window=window, center=True,
                       length=int(round(wave.shape[-1] / rate)))


def _fit(wave: Tensor, n: int) -> Tensor:
    """The first ``n`` samples, zero-padded at the end when shorter."""
    return wave[:, :n] if wave.shape[1] >= n else nn.functional.pad(wave, (0, n - wave.shape[1]))


class _Grouped(nn.Module):
    """A transform that draws one of a few factors per chosen example and processes the batch one factor at a time.

    Each chosen example draws one of ``steps`` factors evenly spaced in ``[low, high]``, rounded to 0.01 so that a
    resampling subclass (``resampled = True``) needs one rational :class:`SincResampler` per factor.

    Args:
        prob: probability per example.
        low / high: factor range, in ``[0.5, 2.0]``.
        steps: number of factors.

    Shape:
        ``(batch, time) -> (batch, time)``; ``drawn["factor"]`` per example (1 when untouched).
    """

    resampled = False

    def __init__(self, *, prob: float = 0.0, low: float = 0.9, high: float = 1.1, steps: int = 3) -> None:
        super().__init__()
        self.prob, self.factors = float(prob), factor_grid(low, high, steps)
        if self.resampled:  # speed f: the wave read as if sampled at 100 f, written at 100
            self.resamplers = nn.ModuleList(SincResampler(int(round(100 * f)), 100, zeros=16) for f in self.factors)
        self.drawn: dict[str, Tensor] = {}

    def _one(self, index: int, wave: Tensor) -> Tensor:
        """The rows ``wave`` ``(rows, time)`` under factor ``self.factors[index]``, same length."""
        raise NotImplementedError

    def forward(self, wave: Tensor) -> Tensor:
        if not self.training or self.prob <= 0:
            return wave
        batch = wave.shape[0]
        pick = torch.randint(0, len(self.factors), (batch,), device=wave.device)
        pick = torch.where(_chosen(batch, self.prob, wave.device), pick, -1)
        factor = torch.ones(batch, device=wave.device)
        out = wave.clone()
        for i, f in enumerate(self.factors):
            rows = (pick == i).nonzero()[:, 0]
            if f == 1.0 or rows.numel() == 0:
                continue
            out[rows] = self._one(i, wave[rows]).to(out.dtype)
            factor[rows] = f
        self.drawn = {"factor": factor}
        return out

    def extra_repr(self) -> str:
        return f"prob={self.prob}, factors={self.factors}"


@AUGMENTS.register("speed")
class SpeedPerturb(_Grouped):
    """Speed perturbation (Ko et al., 2015; Kaldi, SpeechBrain): resample by a factor, then crop or pad back.

    A factor ``f`` plays the clip ``f`` times faster: duration ``/ f``, every frequency ``* f``; the default factors
    are Kaldi's 0.9, 1.0, 1.1. A slowed clip keeps its first ``time`` samples; a sped-up one is zero-padded at the
    end. Arguments and shapes as for the factor-group base class: ``prob``, ``low``, ``high``, ``steps``.

    Example:
        >>> SpeedPerturb(prob=1.0).train()(torch.randn(4, 16000)).shape
        torch.Size([4, 16000])
    """

    resampled = True

    def _one(self, index: int, wave: Tensor) -> Tensor:
        return _fit(self.resamplers[index](wave), wave.shape[1])


@AUGMENTS.register("stretch")
class TimeStretch(_Grouped):
    """Time stretch by a phase vocoder, pitch kept: duration ``/ f``, then cropped or zero-padded back.

    Arguments and shapes as for the factor-group base class: ``prob``, ``low``, ``high``, ``steps``.

    Example:
        >>> TimeStretch(prob=1.0).train()(torch.randn(4, 16000)).shape
        torch.Size([4, 16000])
    """

    def _one(self, index: int, wave: Tensor) -> Tensor:
        return _fit(phase_vocoder_stretch(wave, self.factors[index]), wave.shape[1])


@AUGMENTS.register("pitch")
class PitchShift(_Grouped):
    """Pitch shift by a factor ``f``, duration kept: a phase-vocoder stretch to ``time * f``, resampled by ``f``.

    1.06 is about a semitone up. Arguments and shapes as for the factor-group base class: ``prob``, ``low``,
    ``high``, ``steps``.

    Example:
        >>> PitchShift(prob=1.0).train()(torch.randn(4, 16000)).shape
        torch.Size([4, 16000])
    """

    resampled = True

    def _one(self, index: int, wave: Tensor) -> Tensor:
        stretched = phase_vocoder_stretch(wave, 1 / self.factors[index])
        return _fit(self.resamplers[index](stretched), wave.shape[1])


def peaking_biquad(f0: Tensor, gain_db: Tensor, q: Tensor, sample_rate: int) -> tuple[Tensor, Tensor]:
    """Peaking-EQ biquad coefficients from the RBJ Audio EQ Cookbook, normalised so ``a[..., 0] = 1``.

    Args:
        f0: centre frequencies, Hz, any shape ``S``.
        gain_db: gains at ``f0``, dB, shape ``S``.
        q: quality factors, shape ``S``.
        sample_rate: Hz.

    Returns:
        ``(b, a)``, each ``S + (3,)``.

    Example:
        >>> b, a = peaking_biquad(torch.tensor([1000.0]), torch.tensor([6.0]), torch.tensor([1.0]), 16000)
    """
    amp = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / sample_rate
    alpha = torch.sin(w0) / (2 * q)
    cos = torch.cos(w0)
    b = torch.stack([1 + alpha * amp, -2 * cos, 1 - alpha * amp], -1)
    a = torch.stack([1 + alpha / amp, -2 * cos, 1 - alpha / amp], -1)
    return b / a[..., :1], a / a[..., :1]


def biquad_filter(wave: Tensor, b: Tensor, a: Tensor) -> Tensor:
    """A cascade of biquads per example, as a product of frequency responses on a zero-padded FFT grid.

    The grid is at least twice the clip long, so the IIR response wraps only after its tail has decayed
    (stable, damped sections such as peaking EQs of Q up to a few): equal to ``scipy.signal.lfilter`` section by
    section within float32 rounding.

    Args:
        wave: ``(batch, time)``.
        b / a: ``(batch, sections, 3)`` coefficients (``a[..., 0]`` need not be 1).

    Returns:
        ``(batch, time)``, float32.

    Example:
        >>> y = biquad_filter(wave, *peaking_biquad(f0, gain_db, q, 16000))   # f0 etc. (batch, sections)
    """
    n = wave.shape[-1]
    n_fft = 1 << max(1, (2 * n - 1).bit_length())
    k = torch.arange(n_fft // 2 + 1, device=wave.device, dtype=torch.float64)
    z = torch.exp(-2j * math.pi * k / n_fft)[:, None]                          # z^-1 on the grid, (freqs, 1)
    powers = torch.cat([torch.ones_like(z), z, z * z], -1)                     # (freqs, 3)
    num = b.to(torch.complex128) @ powers.T                                    # (batch, sections, freqs)
    den = a.to(torch.complex128) @ powers.T
    response = (num / den).prod(1)                                             # (batch, freqs)
    spec = torch.fft.rfft(wave.to(torch.float64), n_fft) * response
    return torch.fft.irfft(spec, n_fft)[..., :n].to(torch.float32)


@AUGMENTS.register("eq")
class RandomEQ(nn.Module):
    """Random equalisation: ``bands`` peaking biquads per chosen example (RBJ cookbook).

    Each band draws a centre frequency log-uniform in ``[f_min, f_max]`` Hz, a gain uniform in
    ``[-gain_db, +gain_db]`` dB and a Q uniform in ``[q_low, q_high]``; untouched examples get 0 dB bands.

    Args:
        sample_rate: Hz.
        prob: probability per example.
        bands: peaking sections per example.
        gain_db: largest band gain magnitude, dB.
        f_min / f_max: centre frequency range, Hz (``f_max`` below the Nyquist frequency; 0: 6000 Hz, or 0.75 x
            the Nyquist frequency where that is lower).
        q_low / q_high: Q range.

    Shape:
        ``(batch, time) -> (batch, time)``; ``drawn`` holds ``f0``, ``gain_db``, ``q`` as ``(batch, bands)``.

    Example:
        >>> RandomEQ(sample_rate=16000, prob=1.0).train()(torch.randn(4, 16000)).shape
        torch.Size([4, 16000])
    """

    def __init__(self, *, sample_rate: int, prob: float = 0.0, bands: int = 2, gain_db: float = 6.0,
                 f_min: float = 100.0, f_max: float = 0.0, q_low: float = 0.5, q_high: float = 2.0) -> None:
        super().__init__()
        f_max = f_max or min(6000.0, 0.375 * sample_rate)
        if not 0 < f_min < f_max < sample_rate / 2:
            raise ConfigError(f"augment.eq_f_min={f_min}, augment.eq_f_max={f_max}: need 0 < eq_f_min < eq_f_max < "
                              f"{sample_rate / 2:g} Hz (the Nyquist frequency at data.sample_rate={sample_rate})")
        self.sample_rate, self.prob, self.bands, self.gain_db = int(sample_rate), float(prob), int(bands), float(gain_db)
        self.f_min, self.f_max, self.q_low, self.q_high = float(f_min), float(f_max), float(q_low), float(q_high)
        self.drawn: dict[str, Tensor] = {}

    def forward(self, wave: Tensor) -> Tensor:
        if not self.training or self.prob <= 0:
            return wave
        shape, dev = (wave.shape[0], self.bands), wave.device
        f0 = self.f_min * (self.f_max / self.f_min) ** torch.rand(shape, device=dev)
        gain_db = (torch.rand(shape, device=dev) * 2 - 1) * self.gain_db
        q = self.q_low + (self.q_high - self.q_low) * torch.rand(shape, device=dev)
        gain_db = gain_db * _chosen(wave.shape[0], self.prob, dev)[:, None]
        self.drawn = {"f0": f0, "gain_db": gain_db, "q": q}
        return biquad_filter(wave, *peaking_biquad(f0.double(), gain_db.double(), q.double(), self.sample_rate))


@AUGMENTS.register("noise")
class AddNoise(nn.Module):
    """Additive noise at an SNR uniform in ``[snr_low, snr_high]`` dB per chosen example.

    The noise is another clip of the batch (the batch rolled by one) or, with ``noise_dir``, a random stretch of a
    random file from that folder (read once, at the first training step; a file shorter than the clip is repeated). It is
    scaled so that ``10 log10(mean(wave^2) / mean(noise^2))`` is the drawn SNR exactly.

    Args:
        sample_rate: Hz (the folder's files are resampled to it).
        prob: probability per example.
        snr_low / snr_high: SNR range, dB.
        noise_dir: a folder of noise files; ``""`` mixes the batch's own clips.

    Shape:
        ``(batch, time) -> (batch, time)``; ``drawn["snr_db"]`` per example (``inf`` when untouched).

    Example:
        >>> AddNoise(sample_rate=16000, prob=1.0, snr_low=5, snr_high=20).train()(torch.randn(4, 16000)).shape
        torch.Size([4, 16000])
    """

    def __init__(self, *, sample_rate: int, prob: float = 0.0, snr_low: float = 5.0, snr_high: float = 20.0,
                 noise_dir: str = "") -> None:
        super().__init__()
        self.prob, self.snr_low, self.snr_high = float(prob), float(snr_low), float(snr_high)
        self.sample_rate, self.noise_dir = int(sample_rate), noise_dir
        self.noises: list[Tensor] | None = None if noise_dir else []
        self.drawn: dict[str, Tensor] = {}

    def _noise(self, batch: int, n: int, device: torch.device) -> Tensor:
        """``(batch, n)`` stretches of the folder's files."""
        which = torch.randint(0, len(self.noises), (batch,), device=device).tolist()
        where = torch.rand(batch, device=device).tolist()
        rows = []
        for i, u in zip(which, where):
            clip = self.noises[i]
            clip = clip.repeat(-(-n // max(len(clip), 1))) if len(clip) < n else clip
            start = int(u * (len(clip) - n + 1))
            rows.append(clip[start:start + n])
        return torch.stack(rows).to(device)

    def forward(self, wave: Tensor) -> Tensor:
        if not self.training or self.prob <= 0:
            return wave
        batch, n = wave.shape
        if self.noises is None:
            self.noises = _read_folder(self.noise_dir, "noise_dir", self.sample_rate)
        noise = self._noise(batch, n, wave.device) if self.noises else wave.roll(1, 0)
        snr_db = self.snr_low + (self.snr_high - self.snr_low) * torch.rand(batch, device=wave.device)
        on = _chosen(batch, self.prob, wave.device)
        p_wave, p_noise = wave.pow(2).mean(1), noise.pow(2).mean(1)
        scale = torch.where(on & (p_noise > 0), torch.sqrt(p_wave / (p_noise.clamp_min(1e-20) * 10 ** (snr_db / 10))),
                            torch.zeros_like(p_wave))
        self.drawn = {"snr_db": torch.where(on, snr_db, torch.full_like(snr_db, math.inf)), "noise": noise}
        return wave + scale[:, None] * noise


@AUGMENTS.register("reverb")
class Reverb(nn.Module):
    """Reverberation: convolution with a room impulse response by FFT; output as long as the input, same RMS.

    The RIR is exponentially decaying Gaussian noise, ``h(t) = n(t) exp(-3 ln(10) t / RT60)`` (60 dB of energy
    decay over RT60, drawn uniform in ``[rt60_low, rt60_high]`` s, ``rt60_high`` s long), or, with ``rir_dir``,
    a random file from that folder (read once, at the first training step). The output is rescaled to the input's
    RMS.

    Args:
        sample_rate: Hz.
        prob: probability per example.
        rt60_low / rt60_high: RT60 range of the generated RIRs, seconds.
        rir_dir: a folder of RIR files; ``""`` generates them.

    Shape:
        ``(batch, time) -> (batch, time)``; ``drawn`` holds ``rt60`` ``(batch,)`` and ``rir`` ``(batch, taps)``.

    Example:
        >>> Reverb(sample_rate=16000, prob=1.0).train()(torch.randn(4, 16000)).shape
        torch.Size([4, 16000])
    """

    def __init__(self, *, sample_rate: int, prob: float = 0.0, rt60_low: float = 0.2, rt60_high: float = 0.8,
                 rir_dir: str = "") -> None:
        super().__init__()
        self.sample_rate, self.prob = int(sample_rate), float(prob)
        self.rt60_low, self.rt60_high = float(rt60_low), float(rt60_high)
        self.rir_dir = rir_dir
        self.rirs: list[Tensor] | None = None if rir_dir else []
        self.drawn: dict[str, Tensor] = {}

    def _rirs(self, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(batch, taps)`` impulse responses and their RT60s (``nan`` for a folder's)."""
        if self.rirs is None:
            self.rirs = _read_folder(self.rir_dir, "rir_dir", self.sample_rate)
        if self.rirs:
            which = torch.randint(0, len(self.rirs), (batch,), device=device).tolist()
            taps = max(len(self.rirs[i]) for i in which)
            rir = torch.stack([nn.functional.pad(self.rirs[i], (0, taps - len(self.rirs[i]))) for i in which])
            return rir.to(device), torch.full((batch,), math.nan, device=device)
        rt60 = self.rt60_low + (self.rt60_high - self.rt60_low) * torch.rand(batch, device=device)
        taps = max(1, int(math.ceil(self.rt60_high * self.sample_rate)))
        t = torch.arange(taps, device=device) / self.sample_rate
        return torch.randn(batch, taps, device=device) * torch.exp(-_LN1000 * t / rt60[:, None]), rt60

    def forward(self, wave: Tensor) -> Tensor:
        if not self.training or self.prob <= 0:
            return wave
        batch, n = wave.shape
        rir, rt60 = self._rirs(batch, wave.device)
        n_fft = 1 << (n + rir.shape[1] - 2).bit_length()
        wet = torch.fft.irfft(torch.fft.rfft(wave.float(), n_fft) * torch.fft.rfft(rir, n_fft), n_fft)[:, :n]
        wet = wet * torch.sqrt(wave.pow(2).mean(1, keepdim=True) / wet.pow(2).mean(1, keepdim=True).clamp_min(1e-20))
        on = _chosen(batch, self.prob, wave.device)
        self.drawn = {"rt60": rt60, "rir": rir, "on": on}
        return torch.where(on[:, None], wet.to(wave.dtype), wave)


class WaveAugment(nn.Module):
    """The waveform transforms, applied in the given order (the builder uses :data:`WAVE_ORDER`); training only.

    They compute in float32, also under ``torch.autocast`` (as the front-ends do).

    Args:
        transforms: ``(batch, time) -> (batch, time)`` modules.

    Shape:
        ``(batch, time) -> (batch, time)``.

    Example:
        >>> aug = WaveAugment([TimeShift(sample_rate=16000, prob=0.5, max_s=0.1), RandomGain(gain_db=6.0)])
    """

    def __init__(self, transforms: list[nn.Module]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, wave: Tensor) -> Tensor:
        if not self.training:
            return wave
        with torch.autocast(wave.device.type, enabled=False):  # float32 even under mixed precision, as front-ends
            wave = wave.float()
            for transform in self.transforms:
                wave = transform(wave)
        return wave
