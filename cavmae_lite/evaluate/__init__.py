"""Evaluation: embeddings and retrieval (embeddings), metrics (retrieval ranks, accuracy, AP / mAP, AUC, d-prime),
the linear probe (probe), the reconstruction report (reconstruction), and CAV-MAE Sync's clip scores, retrieval,
localisation (clip_scores, sync_retrieval) and single-clip path (sync_clip)."""

from .clip_scores import clip_scores, frame_localisation
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
from .sync_clip import sync_clip_inputs, sync_clip_similarity
from .sync_retrieval import localisation_report, pair_embeddings, sync_retrieval

__all__ = [
    "Embeddings", "FEATURES", "STATS", "accuracy", "accuracy_vs_targets", "average_precision",
    "classification_metrics", "clip_scores", "compute_embeddings", "d_prime", "frame_localisation", "linear_probe",
    "localisation_report", "mean_average_precision", "pair_embeddings", "probe_embeddings", "probe_features",
    "reconstruction_report", "retrieval", "retrieval_metrics", "retrieval_ranks", "roc_auc", "sync_clip_inputs", "sync_clip_similarity", "sync_retrieval",
    "unnormalize_patches",
]
