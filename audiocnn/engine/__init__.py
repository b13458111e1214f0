"""The training engine: the loop, checkpoints, logging and task types."""
from audiocnn.engine.checkpoint import load_checkpoint, save_checkpoint
from audiocnn.engine.loop import evaluate_loader, load_data, train

__all__ = ["evaluate_loader", "load_checkpoint", "load_data", "save_checkpoint", "train"]
