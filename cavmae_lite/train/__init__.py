"""Pretraining: the loop (loop), opening a run (run), the optimiser and every learning-rate schedule of the
package (optim), the objective (objective), the curves (metrics), per-epoch validation (validation).
``load_pretrained`` is re-exported here for code written against the old ``cavmae_lite.train``."""

from ..checkpoints import CHECKPOINT_NAME, load_pretrained
from .loop import PretrainResult, TrainingDiverged, pretrain
from .metrics import require_tensorboard
from .objective import loss_settings, run_config
from .optim import build_optimizer, cosine_lr_factor, lr_factor, set_lr, step_lr_factor
from .run import RESUME_MAY_CHANGE, check_resume_config, run_key
from .validation import BEST_NAME, validate

__all__ = ["BEST_NAME", "CHECKPOINT_NAME", "RESUME_MAY_CHANGE", "PretrainResult", "TrainingDiverged",
           "build_optimizer", "check_resume_config", "cosine_lr_factor", "load_pretrained", "lr_factor", "pretrain",
           "require_tensorboard", "run_config", "run_key", "set_lr", "step_lr_factor", "validate", "loss_settings"]
