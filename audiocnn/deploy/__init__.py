"""From a run to a product: one exported graph from waveform to logits, streaming inference, an HTTP service."""
