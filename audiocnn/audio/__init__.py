"""Audio files to float32 mono waves, and fixed-length cuts of them."""
from audiocnn.audio.crop import fix_length, num_windows, sliding_windows
from audiocnn.audio.io import AUDIO_EXTENSIONS, MAX_CHANNELS, AudioError, load_audio, resample

__all__ = [
    "AUDIO_EXTENSIONS", "MAX_CHANNELS", "AudioError", "fix_length", "load_audio", "num_windows", "resample",
    "sliding_windows",
]
