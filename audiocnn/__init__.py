"""audiocnn: audio classification with convolutional networks on spectrograms."""
__version__ = "0.1.0"
