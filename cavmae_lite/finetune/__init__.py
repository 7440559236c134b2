"""Fine-tuning a classifier on a pretrained CAV-MAE, with the official recipes: recipes, augmentation (augment),
the augmenting training set and balanced sampler (dataset), weight averaging (averaging), the training loop and
its one entry point ``finetune`` (loop), prediction and metrics (predict)."""

from .dataset import DrawSampler, FinetuneTrainSet, train_loader
from .loop import FinetuneResult, classifier_from_pretrained, finetune, finetune_loss
from .predict import (
    FUSIONS,
    Predictions,
    classifier_logits,
    classifier_pooled,
    evaluate_classifier,
    head_features,
    predict_classifier,
    prediction_report,
)
from .recipes import METRICS, RECIPES, SCHEDULES, FinetuneRecipe, get_recipe

__all__ = ["FUSIONS", "METRICS", "RECIPES", "SCHEDULES", "DrawSampler", "FinetuneRecipe", "FinetuneResult",
           "FinetuneTrainSet", "Predictions", "classifier_from_pretrained", "classifier_logits", "classifier_pooled",
           "evaluate_classifier", "finetune", "finetune_loss", "get_recipe", "head_features", "predict_classifier",
           "prediction_report", "train_loader"]
