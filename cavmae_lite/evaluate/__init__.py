"""Evaluation: embeddings and retrieval (embeddings), metrics (retrieval ranks, accuracy, AP / mAP, AUC, d-prime),
the linear probe (probe) and the reconstruction report (reconstruction)."""

from .embeddings import FEATURES, Embeddings, compute_embeddings, probe_embeddings, probe_features, retrieval
from .metrics import (
    accuracy,
    accuracy_vs_targets,
    average_precision,
    classification_metrics,
    d_prime,
    mean_average_precision,
    retrieval_metrics,
    retrieval_ranks,
    roc_auc,
)
from .probe import linear_probe
from .reconstruction import STATS, reconstruction_report, unnormalize_patches

__all__ = [
    "FEATURES", "STATS", "Embeddings", "accuracy", "accuracy_vs_targets", "average_precision",
    "classification_metrics", "compute_embeddings", "d_prime", "linear_probe", "mean_average_precision",
    "probe_embeddings", "probe_features", "reconstruction_report", "retrieval", "retrieval_metrics",
    "retrieval_ranks", "roc_auc", "unnormalize_patches",
]
