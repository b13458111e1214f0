"""Audio files to float32 mono waves, resampling (soxr on the CPU, SincResampler on the device), fixed-length cuts."""
from audiocnn.audio.crop import fix_length, num_windows, sliding_windows
from audiocnn.audio.io import AUDIO_EXTENSIONS, MAX_CHANNELS, AudioError, load_audio, resample
from audiocnn.audio.sinc import SincResampler

__all__ = [
    "AUDIO_EXTENSIONS", "MAX_CHANNELS", "AudioError", "SincResampler", "fix_length", "load_audio", "num_windows", "resample",
    "sliding_windows",
]
