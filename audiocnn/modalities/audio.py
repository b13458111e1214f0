"""Audio: waveforms through waveform augmentation, a spectrogram front-end, normalisation, deltas and SpecAugment.

    wave (batch, time) -> WaveAugment (training) -> frontend (VTLP's warped mel filters in training)
    -> (batch, n_features, frames)
    -> FrequencyNorm | UtteranceNorm -> mixup -> Deltas (frontend.deltas = d) -> SpecAugment (training)
    -> 2-D network: (batch, 1 + d, n_features, frames) | 1-D network: (batch, (1 + d) * n_features, frames) -> logits
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiocnn.audio import AUDIO_EXTENSIONS, load_audio, sliding_windows
from audiocnn.audio.io import decode_audio
from audiocnn.config import Config
from audiocnn.core.errors import ConfigError
from audiocnn.data import AudioCache, AudioDataset, build_loaders, build_splits, collate, prepare_splits
from audiocnn.data.shards import ShardSet, fit_loader, shard_loaders, shard_set_of
from audiocnn.features import AUGMENT_STAGES, AUGMENTS, KINDS, Deltas, FrequencyNorm, FrontendSettings, UtteranceNorm
from audiocnn.features.vtlp import VTLP
from audiocnn.features.wave_augment import WaveAugment
from audiocnn.models.registry import InputSpec
from audiocnn.modalities.base import Data, InputParts, Modality, register_modality
from audiocnn.modalities.classifier import Classifier, Mix
from audiocnn.plots import thumbnail

__all__ = ["AudioClassifier", "AudioModality"]


class AudioClassifier(Classifier):
    """Waveform in, logits out (see the module docstring).

    Args:
        frontend: waveform -> ``(batch, n_features, frames)``; its kernels are not saved.
        network: a model with ``dims``, ``forward_features`` and ``forward_head`` (a :class:`ConvNet`).
        augment: spectrogram augmentation (the ``spec`` stage: SpecAugment), active only in training mode.
        wave_augment: waveform augmentation before the front-end, active only in training mode.
        norm: the normaliser (``frontend.normalize``); default a :class:`FrequencyNorm` fitted by training.
        deltas: ``frontend.deltas``: a :class:`Deltas` stacking delta features as channels; ``None``: none.
        vtlp: ``augment.vtlp_prob``: a :class:`VTLP` warping the front-end's mel filters in training; ``None``: none.
        mixup: ``augment.mixup_alpha``'s :class:`~audiocnn.features.Mixup`; ``None``: off.
    """

    modality = "audio"

    def __init__(self, frontend: nn.Module, network: nn.Module, augment: nn.Module | None = None,
                 wave_augment: nn.Module | None = None, *, norm: nn.Module | None = None,
                 deltas: Deltas | None = None, vtlp: VTLP | None = None, mixup: nn.Module | None = None):
        super().__init__(frontend, norm if norm is not None else FrequencyNorm(frontend.n_features), network, augment,
                         mixup=mixup)
        self.wave_augment = wave_augment if wave_augment is not None else nn.Identity()
        self.deltas = deltas
        self.vtlp = vtlp

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, time) -> (batch, n_features, frames)``, normalised, float32."""
        return self.norm(self.frontend(wave))

    def network_input(self, wave: torch.Tensor, mix: Mix | None = None) -> torch.Tensor:
        wave = self.wave_augment(wave)
        spec = self.spectrogram(wave) if self.vtlp is None else self.norm(self.vtlp(wave, self.frontend))
        spec = self.mixup(spec, mix)
        maps = spec.unsqueeze(1) if self.deltas is None else self.deltas(spec)  # (batch, 1 + d, n_features, frames)
        maps = self.augment(maps)  # the same masks on each map
        return maps if self.network.dims == 2 else maps.flatten(1, 2)


@register_modality
class AudioModality(Modality):
    name = "audio"
    kinds = KINDS
    normalize = ("per_frequency", "per_utterance")
    augment_keys = ("freq_masks", "time_masks", "gain_db", "mixup_alpha", "speed_prob", "stretch_prob", "pitch_prob",
                    "shift_prob", "eq_prob", "reverb_prob", "noise_prob", "noise_dir", "rir_dir", "vtlp_prob")
    extensions = AUDIO_EXTENSIONS
    media_types = ("audio/",)
    waveforms = True

    def load_data(self, cfg: Config) -> Data:
        splits = build_splits(cfg.data)
        if cfg.data.name == "shards":  # streamed from tar shards, decoded in the loader workers, no cache
            shard_set = shard_set_of(splits, cfg.data.root)
            return Data(splits, shard_loaders(cfg.data, shard_set, seed=cfg.trainer.seed), shard_set)
        cache = AudioCache(cfg.data.cache_dir or None, cfg.data.sample_rate, dataset=cfg.data.name)
        # Checked here so Data.splits holds exactly the examples the loaders serve (skipped files removed).
        splits = prepare_splits(splits, cache, on_error=cfg.data.on_error)
        return Data(splits, build_loaders(cfg.data, splits, cache, seed=cfg.trainer.seed), cache)

    def check(self, cfg: Config) -> None:
        super().check(cfg)
        if cfg.frontend.deltas and cfg.frontend.kind == "waveform":
            raise ConfigError(f"frontend.deltas={cfg.frontend.deltas} needs a spectrogram; frontend.kind=waveform has "
                              "none: remove it or choose a spectrogram kind")

    def normalizer_batches(self, cfg: Config, data: Data) -> torch.utils.data.DataLoader:
        d = cfg.data
        if isinstance(data.cache, ShardSet):
            return fit_loader(d, data.cache, seed=cfg.trainer.seed)
        ds = AudioDataset(data.splits.train, data.cache, task=d.task, num_samples=_samples(d.duration, d.sample_rate),
                          mode="center", hop_samples=_samples(d.window_hop, d.sample_rate), seed=cfg.trainer.seed)
        return torch.utils.data.DataLoader(ds, batch_size=d.batch_size, collate_fn=collate)

    def input_parts(self, cfg: Config) -> InputParts:
        frontend = FrontendSettings.of(cfg.frontend).build(cfg.data.sample_rate)
        frames = frontend.num_frames(_samples(cfg.data.duration, cfg.data.sample_rate))
        fe = cfg.frontend
        norm = UtteranceNorm(frontend.n_features) if fe.normalize == "per_utterance" else None
        deltas = Deltas(order=fe.deltas, width=fe.delta_width) if fe.deltas else None
        if deltas is not None and frames < fe.delta_width:
            raise ConfigError(f"frontend.delta_width={fe.delta_width} frames, but a {cfg.data.duration:g} s crop has "
                              f"{frames}: lower frontend.delta_width or lengthen data.duration")
        stages = _augments(cfg, frontend)
        warp, mixup, masks = (stages[s][0] if stages[s] else None for s in ("frontend", "batch", "spec"))  # one each
        return InputParts(frontend, masks, frontend.n_features, (frames,),
                          WaveAugment(stages["wave"]) if stages["wave"] else None, norm=norm,
                          maps=deltas.channels if deltas is not None else 1, stack=deltas, warp=warp, mixup=mixup)

    def network_args(self, parts: InputParts, spec: InputSpec, args: dict) -> dict:
        if spec.rank(args) == 1:  # the features (of every delta order) are the channels
            out = {"in_chans": parts.maps * parts.n_features}
            size = (out["in_chans"], *parts.spatial)
        else:  # the spectrogram (and its deltas) are the channels of an image
            if parts.maps > 1 and args.get("in_chans", parts.maps) != parts.maps:
                raise ConfigError(f"model.args.in_chans={args['in_chans']}, but frontend.deltas gives {parts.maps} "
                                  "input maps: remove model.args.in_chans")
            out = {"in_chans": args.get("in_chans", 1) if parts.maps == 1 else parts.maps}
            size = (out["in_chans"], parts.n_features, *parts.spatial)
        if spec.input_size and "input_size" not in args:
            out["input_size"] = size
        return out

    def classifier(self, parts: InputParts, network: nn.Module) -> AudioClassifier:
        return AudioClassifier(parts.frontend, network, parts.augment, parts.wave_augment, norm=parts.norm,
                               deltas=parts.stack, vtlp=parts.warp, mixup=parts.mixup)

    def example_input(self, cfg: Config, model: Classifier, batch_size: int) -> tuple[torch.Tensor, str]:
        n = _samples(cfg.data.duration, cfg.data.sample_rate)
        return torch.zeros(batch_size, n), f"{cfg.frontend.kind} ({cfg.frontend.backend}) of {n} samples"

    def read_file(self, cfg: Config, path: Path, *, hop: float | None = None) -> tuple[torch.Tensor, dict]:
        """Sliding windows ``(n_windows, samples)`` of the file (a short file: one zero-padded window)."""
        return _windows(cfg, load_audio(path, cfg.data.sample_rate), hop)

    def read_bytes(self, cfg: Config, data: bytes, *, hop: float | None = None, max_duration: float | None = None
                   ) -> tuple[torch.Tensor, dict]:
        """:meth:`read_file` of a file's bytes (an upload), decoded by :func:`decode_audio`."""
        return _windows(cfg, decode_audio(data, cfg.data.sample_rate, name="request body", max_duration=max_duration), hop)

    def describe_input(self, cfg: Config, model: Classifier) -> str:
        fe = cfg.frontend
        mels = f", {fe.n_mels} mels" if fe.kind in ("mel", "logmel", "mfcc") else ""
        return (f"{cfg.data.sample_rate} Hz, {cfg.data.duration:g} s crops · {fe.kind} ({fe.backend}), "
                f"n_fft {fe.n_fft}, hop {fe.hop_length}{mels}")

    def input_name(self, cfg: Config) -> str:
        if cfg.frontend.kind == "waveform":
            return "wave"
        return ("normalised " if cfg.frontend.normalize != "none" else "") + "spectrogram"

    def preview(self, cfg: Config, model: Classifier, x: torch.Tensor):
        fe = model.frontend
        feats = fe(x[None].to(next(model.parameters()).device))[0].cpu().numpy()
        fig = thumbnail(feats, fe.settings, cfg.data.sample_rate, f_min=getattr(fe, "f_min", None),
                        f_max=getattr(fe, "f_max", None))
        return fig, x.cpu().numpy()


def _windows(cfg: Config, wave: np.ndarray, hop: float | None) -> tuple[torch.Tensor, dict]:
    """``(n_windows, samples)`` windows of a ``(time,)`` wave at the run's rate, and ``duration_s``, ``windows``."""
    sr = cfg.data.sample_rate
    windows = sliding_windows(wave, _samples(cfg.data.duration, sr),
                              _samples(hop if hop is not None else cfg.data.window_hop, sr))
    info = {"duration_s": round(len(wave) / sr, 3), "windows": len(windows)}
    return torch.from_numpy(np.ascontiguousarray(windows)), info


def _augments(cfg: Config, frontend: nn.Module) -> dict[str, list[nn.Module]]:
    """The recipe's transforms of each stage of :data:`~audiocnn.features.AUGMENT_STAGES`, in order, built from the
    registry; those whose switch (a probability, a size, ``alpha``) is 0 are left out."""
    a, sr = cfg.augment, cfg.data.sample_rate
    args = {  # name: (its switch, 0 for off; its typed keyword arguments)
        "speed": (a.speed_prob, dict(prob=a.speed_prob, low=a.speed_low, high=a.speed_high, steps=a.speed_steps)),
        "stretch": (a.stretch_prob, dict(prob=a.stretch_prob, low=a.stretch_low, high=a.stretch_high,
                                         steps=a.stretch_steps)),
        "pitch": (a.pitch_prob, dict(prob=a.pitch_prob, low=a.pitch_low, high=a.pitch_high, steps=a.pitch_steps)),
        "shift": (a.shift_prob, dict(sample_rate=sr, prob=a.shift_prob, max_s=a.shift_s)),
        "gain": (a.gain_db, dict(gain_db=a.gain_db)),
        "eq": (a.eq_prob, dict(sample_rate=sr, prob=a.eq_prob, bands=a.eq_bands, gain_db=a.eq_gain_db,
                               f_min=a.eq_f_min, f_max=a.eq_f_max, q_low=a.eq_q_low, q_high=a.eq_q_high)),
        "reverb": (a.reverb_prob, dict(sample_rate=sr, prob=a.reverb_prob, rt60_low=a.reverb_rt60_low,
                                       rt60_high=a.reverb_rt60_high, rir_dir=a.rir_dir)),
        "noise": (a.noise_prob, dict(sample_rate=sr, prob=a.noise_prob, snr_low=a.noise_snr_low,
                                     snr_high=a.noise_snr_high, noise_dir=a.noise_dir)),
        "vtlp": (a.vtlp_prob, dict(frontend=frontend, prob=a.vtlp_prob, low=a.vtlp_low, high=a.vtlp_high,
                                   steps=a.vtlp_steps)),
        "mixup": (a.mixup_alpha, dict(alpha=a.mixup_alpha)),
        "masks": (a.freq_masks + a.time_masks, dict(freq_masks=a.freq_masks, freq_mask_param=a.freq_mask_param,
                                                    time_masks=a.time_masks, time_mask_param=a.time_mask_param)),
    }
    return {stage: [AUGMENTS.get(name)(**args[name][1]) for name in names if args[name][0] > 0]
            for stage, names in AUGMENT_STAGES.items()}


def _samples(seconds: float, sample_rate: int) -> int:
    return int(round(seconds * sample_rate))
