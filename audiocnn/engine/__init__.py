"""The training engine: the loop, the optimiser and schedule, distributed set-up and run logging."""
from audiocnn.engine.loop import Trained, train

__all__ = ["Trained", "train"]
