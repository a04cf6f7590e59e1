"""Training engine: schedules, checkpoints, logging and the training loop."""

from equireg.engine.checkpoint import CheckpointManager, load_state, save_state
from equireg.engine.schedule import warmup_cosine
from equireg.engine.trainer import DataError, TrainingDiverged, Trainer, TrainResult

__all__ = [
    "CheckpointManager",
    "DataError",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "load_state",
    "save_state",
    "warmup_cosine",
]
