"""cavmae-lite: a compact, complete PyTorch CAV-MAE (Gong et al., ICLR 2023) for learning and exploring.

Importing the package loads torch and the model only; data, figures and widgets live in submodules that
import their heavier dependencies (PyAV, matplotlib, ipywidgets) when used.
"""

from .checkpoints import convert_official_state_dict, load_checkpoint, save_checkpoint, to_official_state_dict
from .config import CAVMAEConfig
from .losses import info_nce, reconstruction_loss
from .masking import random_masking
from .model import CAVMAE, CAVMAEClassifier, CAVMAEOutput

__version__ = "0.1.0"

__all__ = [
    "CAVMAE",
    "CAVMAEClassifier",
    "CAVMAEConfig",
    "CAVMAEOutput",
    "convert_official_state_dict",
    "info_nce",
    "load_checkpoint",
    "random_masking",
    "reconstruction_loss",
    "save_checkpoint",
    "to_official_state_dict",
]
