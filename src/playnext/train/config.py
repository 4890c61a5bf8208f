"""The training loop's settings, shared by every neural model (mixed into each model's config)."""

from __future__ import annotations

import dataclasses
import math

from playnext.config import Config
from playnext.errors import ConfigError

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear")
AMP = ("auto", "bf16", "off")
SELECT_METRIC = "NDCG@10"  # what validation reports to the loop for early stopping and the best epoch


@dataclasses.dataclass
class TrainConfig(Config):
    """Optimisation settings shared by every neural model (mixed into each model's config)."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    # Adam's second-moment decay: 0.999 is PyTorch's; the SASRec authors (and RecTools) use 0.98
    adam_beta2: float = 0.999
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    # 0 = the decay ends with `epochs`; else it is laid out over this many epochs and training
    # stops at `epochs` part-way down it: a refit then follows the selection run's learning
    # rates up to the chosen epoch instead of a compressed schedule
    schedule_epochs: int = 0
    clip_norm: float = 1.0  # 0 = no clipping
    # 0 = off; else validation, the kept weights and the saved model are an exponential moving
    # average of the weights over the last ~1 / (1 - ema_decay) steps (WeightAverage)
    ema_decay: float = 0.0
    patience: int = 10  # evaluations without improvement before stopping; 0 = never stop early
    eval_every: int = 1
    max_minutes: float = 0.0  # wall-clock budget; the decay schedule ends with it (not bit-reproducible)
    device: str = "auto"
    amp: str = "auto"  # auto = bf16 on CUDA only; bf16 also on CPU (fast with AMX); off
    checkpoint_dir: str = ""  # "" = no checkpoints
    resume: bool = False
    verbose: bool = True

    def validate_training(self) -> None:
        def require(cond: bool, message: str) -> None:
            if not cond:
                raise ConfigError(message)

        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(0.0 < self.adam_beta2 < 1.0, f"adam_beta2 must be in (0, 1), got {self.adam_beta2}")
        require(
            self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"
        )
        require(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        require(
            self.schedule_epochs == 0 or self.schedule_epochs >= self.epochs,
            f"schedule_epochs must be 0 or >= epochs ({self.epochs}), got {self.schedule_epochs}",
        )
        require(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        require(self.clip_norm >= 0, f"clip_norm must be >= 0, got {self.clip_norm}")
        require(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        require(self.patience >= 0, f"patience must be >= 0, got {self.patience}")
        require(self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}")
        require(self.max_minutes >= 0, f"max_minutes must be >= 0, got {self.max_minutes}")
        require(self.amp in AMP, f"amp must be one of {AMP}, got {self.amp!r}")
        require(
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
            f"device must be auto, cpu, cuda[:n] or mps, got {self.device!r}",
        )
        require(not self.resume or bool(self.checkpoint_dir), "resume=True needs a checkpoint_dir")


# fields that may differ between an interrupted run and its resumption
RUN_ONLY_FIELDS = frozenset({"resume", "verbose", "checkpoint_dir", "device", "max_minutes"})
