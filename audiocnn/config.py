"""Recipes: plain YAML validated against typed dataclasses.

A recipe has the sections ``data``, ``frontend``, ``augment``, ``model``,
``optim`` and ``trainer``. Every field has a visible default below. Unknown
keys are errors that name the key and suggest the closest valid one; values
are coerced to the declared type (so ``lr: 1e-3`` is a float even though YAML
1.1 reads it as a string); strings may use ``${VAR}`` and ``${VAR:-default}``.

Example:
    >>> cfg = load_config("recipes/digits.yaml", ["optim.lr=3e-4"])
    >>> cfg.optim.lr
    0.0003
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from audiocnn.core.errors import ConfigError
from audiocnn.core.io import atomic_write_text
from audiocnn.core.runtime import parse_device
from audiocnn.features import FRONTEND_KINDS, FrontendSettings
from audiocnn.tasks import TASKS

__all__ = [
    "AugmentConfig", "Config", "ConfigError", "DataConfig", "FrontendConfig", "ModelConfig",
    "OptimConfig", "TrainerConfig", "config_from_dict", "config_to_dict", "data_config", "expand_env",
    "RESUME_KEYS", "load_config", "resume_changes", "resume_config", "save_config",
]

Task = Literal[tuple(TASKS.names())]  # the registered task kinds (audiocnn.tasks)


@dataclass
class DataConfig:
    """Where the audio comes from, how it is split, cut and batched."""

    name: str = "synthetic"
    """Registered dataset: synthetic, folder, manifest, fsdd, esc10, esc50, ravdess, gtzan, speech_commands;
    with ``frontend.kind: image``: mnist, imagefolder."""
    root: str = ""
    """Dataset folder (``${AUDIOCNN_DATA:-data}/fsdd``)."""
    manifest: str = ""
    """CSV for ``name: manifest`` (columns path, label(s), optional split/fold/group)."""
    task: Task = "multiclass"
    label_columns: list[str] = field(default_factory=lambda: ["label"])
    """Manifest columns holding labels (multilabel: several 0/1 columns or one ';'-separated column;
    regression: numeric target columns)."""
    sample_rate: int = 16000
    duration: float = 1.0
    """Seconds per example: random crop in training, zero-padded when shorter."""
    eval_crop: Literal["center", "windows"] = "center"
    """Evaluation: one centre crop, or sliding windows aggregated per clip."""
    window_hop: float = 0.5
    """Seconds between sliding windows (``eval_crop: windows``, ``predict``)."""
    test_fold: Optional[int] = None
    """Fold-based datasets (ESC): the held-out fold."""
    val_fold: Optional[int] = None
    """Fold-based datasets: validation fold (default: the fold after ``test_fold``)."""
    test_groups: list[str] = field(default_factory=list)
    """Group-held-out test set (e.g. RAVDESS actors ``["13", "14", "15", "16"]``)."""
    val_fraction: float = 0.1
    """Share of the training groups (speakers, actors) kept for validation when no official one exists."""
    test_fraction: float = 0.1
    """Share held out for testing when a dataset has no official test split (folder, GTZAN, manifest)."""
    split_seed: int = 0
    batch_size: int = 32
    num_workers: int = 0
    cache_dir: str = "${AUDIOCNN_CACHE:-~/.cache/audiocnn}"
    """Decoded, resampled audio is cached here (``""`` disables the disk cache)."""
    on_error: Literal["raise", "skip"] = "raise"
    """A bad audio file: stop before training with a list of bad files, or skip them with a warning."""
    num_classes: int = 8
    """``synthetic`` only: number of classes."""
    num_per_class: int = 60
    """``synthetic`` only: clips per class."""
    image_size: list[int] = field(default_factory=list)
    """Images: ``[height, width]`` (or one number for a square) they are resized to when decoded; empty keeps
    MNIST's 28x28 (an image folder needs a size)."""
    channels: int = 0
    """Images: 1 (grayscale) or 3 (RGB); 0 takes the dataset's own (MNIST 1, image folder 3)."""
    add_inverted: bool = False
    """Images: the training and validation splits also hold every image inverted (pixel -> 255 - pixel)."""
    streams: int = 0
    """``name: shards``: the epoch's training order is this many interleaved streams over the shuffled shards
    (see :mod:`audiocnn.data.shards`); it must be a multiple of processes x loader workers and divide
    ``batch_size``. 0: processes x max(workers, 1), fixed in config.yaml when the run starts."""
    shuffle_buffer: int = 1000
    """``name: shards``: examples each stream holds (compressed) to shuffle within its range."""
    fit_examples: int = 1000
    """``name: shards``: training examples (the first in index order) the normaliser is fitted on."""
    extra_tests: list[str] = field(default_factory=list)
    """More test sets, each evaluated after training into ``eval/<name>_metrics.json``: ``test_inverted``
    (images: the test split with every pixel inverted)."""


@dataclass
class FrontendConfig(FrontendSettings):
    """Waveform -> spectrogram, as an ``nn.Module`` on the model's device.

    The fields of :class:`~audiocnn.features.FrontendSettings` (torchaudio's names; ``kind``: an audio kind of
    :data:`audiocnn.features.KINDS`, or ``image`` for image datasets), and how its output is normalised.
    """

    kind: Literal[FRONTEND_KINDS] = "logmel"
    normalize: Literal["none", "per_frequency", "per_utterance", "per_channel"] = "per_frequency"
    """Per-frequency (spectrograms) or per-channel (``kind: image``) mean/std, estimated on the training split only;
    ``per_utterance``: each clip's rows standardised over its own frames (CMVN, spectrograms)."""
    deltas: int = 0
    """Spectrograms: 1 adds delta, 2 delta and delta-delta features (``librosa.feature.delta``, mode ``interp``) of
    the normalised spectrogram, as input channels of a 2-D network (``in_chans`` follows) or more feature rows of
    a 1-D one. 0: the spectrogram alone."""
    delta_width: int = 9
    """Frames in each delta's Savitzky-Golay window (odd, at least 3; librosa's default 9)."""


@dataclass
class AugmentConfig:
    """Augmentation; applied only while the model is training."""

    freq_masks: int = 0
    freq_mask_param: int = 8
    time_masks: int = 0
    time_mask_param: int = 16
    mixup_alpha: float = 0.0
    """Mixup Beta(alpha, alpha) on spectrograms and targets; 0 disables."""
    gain_db: float = 0.0
    """Random gain in [-gain_db, +gain_db] dB on the waveform; 0 disables."""
    # Waveform transforms (audio), on the device, in the order speed, stretch, pitch, shift, gain, eq, reverb, noise;
    # *_prob 0: off.
    speed_prob: float = 0.0
    """Probability of speed perturbation (duration / f, pitch * f), per example."""
    speed_low: float = 0.9
    """Smallest speed factor, in [0.5, 2]."""
    speed_high: float = 1.1
    """Largest speed factor, in [speed_low, 2]."""
    speed_steps: int = 3
    """Factors evenly spaced in [speed_low, speed_high] (3: Kaldi's 0.9, 1.0, 1.1)."""
    stretch_prob: float = 0.0
    """Probability of a time stretch (phase vocoder: duration / f, pitch kept), per example."""
    stretch_low: float = 0.9
    """Smallest stretch factor, in [0.5, 2]."""
    stretch_high: float = 1.1
    """Largest stretch factor, in [stretch_low, 2]."""
    stretch_steps: int = 3
    """Factors evenly spaced in [stretch_low, stretch_high]."""
    pitch_prob: float = 0.0
    """Probability of a pitch shift (pitch * f, duration kept: stretch then resample), per example."""
    pitch_low: float = 0.9
    """Smallest pitch factor, in [0.5, 2] (1.06: about a semitone)."""
    pitch_high: float = 1.1
    """Largest pitch factor, in [pitch_low, 2]."""
    pitch_steps: int = 3
    """Factors evenly spaced in [pitch_low, pitch_high]."""
    shift_prob: float = 0.0
    """Probability of a time shift (zero fill), per example."""
    shift_s: float = 0.1
    """Largest time shift, seconds (>= 0)."""
    eq_prob: float = 0.0
    """Probability of random EQ (peaking biquads), per example."""
    eq_bands: int = 2
    """Peaking bands per example, 1 to 8."""
    eq_gain_db: float = 6.0
    """Largest band gain magnitude, dB, in [0, 24]."""
    eq_f_min: float = 100.0
    """Lowest band centre, Hz."""
    eq_f_max: float = 0.0
    """Highest band centre, Hz (below data.sample_rate / 2); 0: 6000 Hz, or 0.75 x the Nyquist frequency where that
    is lower (3000 Hz at 8 kHz)."""
    eq_q_low: float = 0.5
    """Smallest band Q, in (0, eq_q_high]."""
    eq_q_high: float = 2.0
    """Largest band Q, at most 10."""
    reverb_prob: float = 0.0
    """Probability of reverberation, per example."""
    reverb_rt60_low: float = 0.2
    """Shortest RT60 of the generated room impulse responses, seconds, in (0, reverb_rt60_high]."""
    reverb_rt60_high: float = 0.8
    """Longest RT60, seconds, at most 3."""
    rir_dir: str = ""
    """A folder of room impulse responses to use instead of generated ones; '' generates."""
    noise_prob: float = 0.0
    """Probability of additive noise, per example."""
    noise_snr_low: float = 5.0
    """Lowest SNR, dB, in [-20, noise_snr_high]."""
    noise_snr_high: float = 20.0
    """Highest SNR, dB, at most 80."""
    noise_dir: str = ""
    """A folder of noise files; '' uses the other clips of the batch."""
    # Vocal-tract-length perturbation (audio, torch back-end, mel kinds): the mel filters on a warped axis.
    vtlp_prob: float = 0.0
    """Probability per example of VTLP (Jaitly and Hinton, 2013; :mod:`audiocnn.features.vtlp`); 0: off."""
    vtlp_low: float = 0.9
    """Smallest warp factor, in [0.5, 2] (0.9: formants 10 % lower, as from a longer vocal tract)."""
    vtlp_high: float = 1.1
    """Largest warp factor, in [vtlp_low, 2]."""
    vtlp_steps: int = 5
    """Factors evenly spaced in [vtlp_low, vtlp_high]."""
    # Images (frontend.kind: image), on the device, per example, before normalisation:
    invert: float = 0.0
    """Probability of inverting an image (pixel -> 255 - pixel, i.e. 1 - x on [0, 1])."""
    rotation: float = 0.0
    """Random rotation in [-rotation, +rotation] degrees."""
    translate: float = 0.0
    """Random shift up to this fraction of the width and of the height."""
    shear: float = 0.0
    """Random shear in [-shear, +shear] degrees."""
    zoom: float = 0.0
    """Random resize by a factor in [1 - zoom, 1 + zoom] (about the centre, same output size)."""
    hflip: float = 0.0
    """Probability of a horizontal flip."""


@dataclass
class ModelConfig:
    name: str = "cnn_small"
    """A registered model (``audiocnn list-models``)."""
    args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the model constructor (checked against its signature)."""
    pretrained: str = ""
    """A local state-dict file (torchvision key names or an audiocnn checkpoint) to start from; the first conv
    is adapted when ``in_chans`` differs and the head replaced when ``num_classes`` differs."""
    freeze: str = "none"
    """``none``, ``backbone`` (all but the head) or a number N: the stem and the first N stages."""


@dataclass
class OptimConfig:
    name: Literal["adamw", "adam", "sgd", "rmsprop"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-2
    momentum: float = 0.9
    scheduler: Literal["none", "cosine", "onecycle", "step"] = "cosine"
    warmup_epochs: int = 0
    step_size: int = 10
    """``step``: epochs between decays."""
    gamma: float = 0.1
    backbone_lr_scale: float = 1.0
    """Fine-tuning: the learning rate of everything but the output layer (``head.fc``) is ``lr`` times this
    (e.g. 0.1 after ``model.pretrained``); the output layer keeps ``lr``. Schedulers scale both alike."""


@dataclass
class TrainerConfig:
    epochs: int = 30
    device: str = "auto"
    """``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:1`` ..."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Mixed precision for the model (bf16 works on CPUs with AMX); the front-end stays float32."""
    channels_last: bool = False
    threads: int = 0
    """CPU threads for torch (``--threads``); 0: ``AUDIOCNN_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the CPUs
    this process may use (affinity and cgroup quota) shared among torchrun's local processes."""
    grad_clip: float = 0.0
    """Clip the gradient norm to this value; 0 disables."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the weights with this decay (0.999 is usual; warm-up
    ``(1 + n) / (10 + n)`` over the first steps); it becomes the run's model: ``val_*``, ``best.pt`` and
    evaluation use it, the trained weights are logged as ``raw_val_*`` (:mod:`audiocnn.engine.ema`). 0 disables."""
    monitor: str = ""
    """Metric for the best checkpoint and early stopping (a column of metrics.csv); empty: the task's own
    (multiclass and binary ``val_accuracy``, multilabel ``val_mAP``, regression ``val_loss``)."""
    monitor_mode: Literal["auto", "max", "min"] = "auto"
    """``auto``: the task's direction for its own metric; ``min`` for a loss or error; else ``max``."""
    early_stopping: int = 0
    """Stop after this many epochs without improvement of ``monitor``; 0 disables."""
    seed: int = 0
    deterministic: bool = True
    output_dir: str = "runs"
    max_steps_per_epoch: int = 0
    """Cap on training steps per epoch (smoke tests); 0 means a full epoch."""
    checkpoint_every_steps: int = 0
    """Also write ``checkpoints/last.pt`` every this many steps within an epoch (long epochs, preemptible
    machines); ``--resume`` continues from that step with the same batches. 0: at the end of each epoch only."""
    keep_epochs: bool = False
    """Also keep every epoch's checkpoint, ``checkpoints/epoch_NNN.pt`` (learning-curve studies, averaging weights
    afterwards, test accuracy after each epoch: ``audiocnn evaluate RUN --checkpoint RUN/checkpoints/epoch_005.pt``)."""
    progress: Literal["auto", "always", "never"] = "auto"
    """Progress bars: ``auto`` shows them only on a terminal."""
    log_every_s: float = 30.0
    """Seconds between plain progress lines during an epoch when no progress bar shows (output not a terminal,
    or ``progress: never``), on stdout and in log.txt: ``epoch 3: step 120/400 (30%), 12.3 s, loss 0.812`` (the
    mean training loss of the epoch so far); 0 disables."""
    loggers: list[Literal["csv", "tensorboard"]] = field(default_factory=lambda: ["csv"])
    """Where each epoch's metrics go: ``csv`` (metrics.csv, read by ``audiocnn report``), ``tensorboard`` (every
    numeric metrics.csv column as a scalar, step = epoch, in ``RUN/tensorboard/``; needs
    ``pip install audiocnn[tensorboard]``)."""
    top_k: int = 3
    report: bool = True
    """Write ``report.html`` (``audiocnn report``) at the end of training."""
    compile: bool = False
    """``torch.compile`` the network (not the front-end); the first steps are slower while it compiles. Needs a C++
    compiler on CPUs."""


RESUME_KEYS = ("trainer.epochs", "trainer.early_stopping", "trainer.report", "trainer.progress",
               "trainer.log_every_s", "trainer.loggers", "trainer.device", "trainer.top_k",
               "trainer.checkpoint_every_steps", "trainer.threads", "trainer.keep_epochs")
"""The keys ``audiocnn train --resume RUN key=value`` may change: none changes the model or the data."""


@dataclass
class Config:
    name: str = ""
    """Recipe name: the run folder is ``runs/<name>/<timestamp>/`` (default: the recipe file's stem)."""
    data: DataConfig = field(default_factory=DataConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


# ----------------------------------------------------------------------------------------------
# Environment variables

# Innermost ${...} first, so defaults may nest: ${AUDIOCNN_RAVDESS:-${AUDIOCNN_DATA:-data}/ravdess}.
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}")


def expand_env(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (defaults may nest) and a leading ``~``.

    An unset variable without a default is an error, so a recipe never silently reads ``/fsdd``.
    """

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        val = os.environ.get(name)
        if val:
            return val
        if default is not None:
            return default
        raise ConfigError(f"environment variable ${{{name}}} is not set; set it or write ${{{name}:-default}}")

    out, prev = value, None
    while out != prev:
        prev, out = out, _ENV.sub(sub, out)
    return os.path.expanduser(out) if out.startswith("~") else out


# ----------------------------------------------------------------------------------------------
# Dict <-> dataclass with type coercion


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Coerce a YAML value to the annotated type ``tp`` or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("null", "none") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}{hint}")
    if origin is list:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _expand_any(v) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                pass
            else:
                if f.is_integer():
                    return int(f)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return expand_env(str(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _expand_any(value: Any) -> Any:
    if isinstance(value, str):
        return expand_env(value)
    if isinstance(value, list):
        return [_expand_any(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand_any(v) for k, v in value.items()}
    return value


def _unknown_key(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    full = f"{where}.{key}" if where else key
    return ConfigError(f"unknown key '{full}'; {hint}valid keys: {', '.join(valid)}")


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key(str(key), names, where)
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    for f in dataclasses.fields(cls):  # absent sections still get their defaults expanded
        if f.name not in kwargs and dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], {}, f"{where}.{f.name}" if where else f.name)
    obj = cls(**kwargs)
    # defaults that use ${VAR} are expanded too
    for f in dataclasses.fields(cls):
        if f.name not in kwargs and isinstance(getattr(obj, f.name), str):
            setattr(obj, f.name, expand_env(getattr(obj, f.name)))
    return obj


def config_from_dict(data: dict) -> Config:
    """Build a validated :class:`Config` from a plain mapping (a parsed recipe): types, then ranges."""
    cfg = _build(Config, data or {}, "")
    check_ranges(cfg)
    return cfg



def data_config(name: str, root: str | None = None, overrides: typing.Sequence[str] = (), *, command: str,
                defaults: dict[str, Any] | None = None) -> DataConfig:
    """The :class:`DataConfig` of a tool that takes a dataset name rather than a recipe (``hear make-task``,
    ``data shard``): ``data.name`` and ``data.root`` from its arguments, ``defaults`` on top of the
    dataclass's, then the ``data.*`` overrides, validated as a recipe's are.

    Raises:
        ConfigError: an override outside ``data.*`` (naming ``command``), an unknown key or a bad value.
    """
    for item in overrides:
        if not item.startswith("data."):
            raise ConfigError(f"{item!r}: {command} takes data.* settings only (e.g. data.num_per_class=4)")
    data: dict[str, Any] = {"name": name, "root": root or "", **(defaults or {})}
    return config_from_dict(apply_overrides({"data": data}, list(overrides))).data

# (section.key, test, what a valid value is): checked before any work or folder is made.
_RANGES: list[tuple[str, Any, str]] = [
    ("data.sample_rate", lambda v: v > 0, "a positive number of Hz"),
    ("data.duration", lambda v: v > 0, "a positive number of seconds"),
    ("data.window_hop", lambda v: v > 0, "a positive number of seconds"),
    ("data.batch_size", lambda v: v >= 1, "at least 1"),
    ("data.num_workers", lambda v: v >= 0, "0 or more"),
    ("data.val_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data.test_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data.num_classes", lambda v: v >= 2, "at least 2"),
    ("data.num_per_class", lambda v: v >= 1, "at least 1"),
    ("optim.lr", lambda v: v > 0, "a positive number"),
    ("optim.weight_decay", lambda v: v >= 0, "0 or more"),
    ("optim.momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim.warmup_epochs", lambda v: v >= 0, "0 or more"),
    ("optim.step_size", lambda v: v >= 1, "at least 1"),
    ("optim.gamma", lambda v: v > 0, "a positive number"),
    ("optim.backbone_lr_scale", lambda v: v > 0, "a positive number (1 for one learning rate)"),
    ("trainer.epochs", lambda v: v >= 1, "at least 1"),
    ("trainer.top_k", lambda v: v >= 1, "at least 1"),
    ("frontend.deltas", lambda v: v in (0, 1, 2), "0, 1 (delta) or 2 (delta and delta-delta)"),
    ("frontend.delta_width", lambda v: v >= 3 and v % 2 == 1, "an odd number of frames, at least 3"),
    ("trainer.grad_clip", lambda v: v >= 0, "0 (off) or a positive number"),
    ("trainer.ema_decay", lambda v: 0 <= v < 1, "0 (off) or a decay in (0, 1), e.g. 0.999"),
    ("trainer.early_stopping", lambda v: v >= 0, "0 (off) or a number of epochs"),
    ("trainer.max_steps_per_epoch", lambda v: v >= 0, "0 (a full epoch) or a number of steps"),
    ("trainer.checkpoint_every_steps", lambda v: v >= 0, "0 (at epoch ends only) or a number of steps"),
    ("data.streams", lambda v: v >= 0, "0 (processes x workers) or a number of streams"),
    ("data.shuffle_buffer", lambda v: v >= 1, "at least 1 (1: no shuffling within a stream)"),
    ("data.fit_examples", lambda v: v >= 1, "at least 1"),
    ("augment.mixup_alpha", lambda v: v >= 0, "0 (off) or a positive number"),
    ("augment.gain_db", lambda v: v >= 0, "0 (off) or a positive number of dB"),
    *((f"augment.{k}_prob", lambda v: 0 <= v <= 1, "a probability in [0, 1] (0: off)")
      for k in ("speed", "stretch", "pitch", "shift", "eq", "reverb", "noise", "vtlp")),
    ("augment.speed_low", lambda v: 0.5 <= v <= 2, "a factor in [0.5, 2]"),
    ("augment.speed_high", lambda v: 0.5 <= v <= 2, "a factor in [0.5, 2], at least augment.speed_low"),
    ("augment.speed_steps", lambda v: v >= 1, "at least 1"),
    *(rule for k in ("stretch", "pitch", "vtlp") for rule in (
        (f"augment.{k}_low", lambda v: 0.5 <= v <= 2, "a factor in [0.5, 2]"),
        (f"augment.{k}_high", lambda v: 0.5 <= v <= 2, f"a factor in [0.5, 2], at least augment.{k}_low"),
        (f"augment.{k}_steps", lambda v: v >= 1, "at least 1"))),
    ("augment.shift_s", lambda v: v >= 0, "0 or more seconds"),
    ("augment.eq_bands", lambda v: 1 <= v <= 8, "1 to 8 bands"),
    ("augment.eq_gain_db", lambda v: 0 <= v <= 24, "in [0, 24] dB"),
    ("augment.eq_q_low", lambda v: v > 0, "a positive Q"),
    ("augment.eq_q_high", lambda v: 0 < v <= 10, "a Q in (0, 10], at least augment.eq_q_low"),
    ("augment.reverb_rt60_low", lambda v: v > 0, "a positive number of seconds"),
    ("augment.reverb_rt60_high", lambda v: 0 < v <= 3, "in (0, 3] seconds, at least augment.reverb_rt60_low"),
    ("augment.noise_snr_low", lambda v: -20 <= v <= 80, "in [-20, 80] dB"),
    ("augment.noise_snr_high", lambda v: -20 <= v <= 80, "in [-20, 80] dB, at least augment.noise_snr_low"),
]

_ORDERED = [("augment.speed_low", "augment.speed_high"), ("augment.stretch_low", "augment.stretch_high"),
            ("augment.pitch_low", "augment.pitch_high"), ("augment.vtlp_low", "augment.vtlp_high"),
            ("augment.eq_q_low", "augment.eq_q_high"),
            ("augment.reverb_rt60_low", "augment.reverb_rt60_high"), ("augment.noise_snr_low", "augment.noise_snr_high")]
"""Range pairs: the low end may not exceed the high end."""


def check_ranges(cfg: Config) -> None:
    """Values of the right type but out of range are a ConfigError naming the key, the value and the range."""
    for key, ok, what in _RANGES:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is out of range; use {what}")
    for low, high in _ORDERED:
        lo, hi = (getattr(cfg.augment, k.split(".")[1]) for k in (low, high))
        if lo > hi:
            raise ConfigError(f"{low}={lo!r} is above {high}={hi!r}; lower {low} or raise {high}")
    if cfg.trainer.device != "auto":
        parse_device(cfg.trainer.device)


def config_to_dict(cfg: Any) -> dict:
    """The resolved config as plain Python types (for YAML and checkpoints)."""
    return dataclasses.asdict(cfg)


# ----------------------------------------------------------------------------------------------
# Overrides


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested mapping.

    Unknown keys are rejected against the dataclass schema, at any depth; keys under a free-form
    mapping (``model.args.*``) are accepted.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value (for example optim.lr=3e-4)")
        path, raw = item.split("=", 1)
        keys = [k for k in path.strip().split(".") if k]
        if not keys:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            problem = str(getattr(e, "problem", "") or e).strip()
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({problem}); quote it or fix the "
                              "brackets, e.g. data.test_groups=[1,2]") from None
        cls: Any = Config
        node = data
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if cls is not None:
                names = [f.name for f in dataclasses.fields(cls)]
                if key not in names:
                    raise _unknown_key(key, names, ".".join(keys[:depth]))
                tp = typing.get_type_hints(cls)[key]
                cls = tp if dataclasses.is_dataclass(tp) else None
                if not last and cls is None and typing.get_origin(tp) is not dict:
                    raise ConfigError(f"override {item!r}: {'.'.join(keys[:depth + 1])} is not a section")
            if last:
                node[key] = value
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                    node[key] = child
                node = child
    return data


def resume_config(saved: dict, overrides: list[str]) -> Config:
    """A run's saved config (from its checkpoint) with ``overrides`` applied, each one of :data:`RESUME_KEYS`.

    Raises:
        ConfigError: an unknown key, a bad value, or a key that would change the model or the data.
    """
    data = apply_overrides(copy.deepcopy(saved), list(overrides))  # unknown keys first: they get a suggestion
    for item in overrides:
        key = ".".join(k for k in item.split("=", 1)[0].strip().split(".") if k)
        if key not in RESUME_KEYS:
            raise ConfigError(f"--resume: {key} cannot change, it would change the model or the data the run was "
                              f"trained with; start a new run for that (keys that can change on resume: "
                              f"{', '.join(RESUME_KEYS)})")
    return config_from_dict(data)


def resume_changes(saved: dict, cfg: Config) -> list[str]:
    """``key old -> new`` for each of :data:`RESUME_KEYS` that differs between a saved config and ``cfg``."""
    old, new, out = config_to_dict(config_from_dict(saved)), config_to_dict(cfg), []  # keys added since: defaults
    for key in RESUME_KEYS:
        section, name = key.split(".")
        before, after = old[section][name], new[section][name]
        if before != after:
            out.append(f"{key} {before} -> {after}")
    return out


# ----------------------------------------------------------------------------------------------
# Files


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    """Read a YAML recipe (safe loader), apply dotted overrides and validate.

    Raises:
        ConfigError: naming the file and the key when something is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found; recipes live in recipes/ (try recipes/quickstart.yaml)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections (data, frontend, model, ...)")
    try:
        data = apply_overrides(data, list(overrides or []))
        cfg = config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if not cfg.name:
        cfg.name = path.stem
    return cfg


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
