"""Explorers for notebooks 04, 05, 05b and 08 (one module per question): measurements as plain functions, figures as
``render_*`` functions, and thin ipywidgets panels (:class:`cavmae_lite.tutorial.widgets.Panel`) that only wire
controls to them.

Notebook 04 — does the joint decoder use the other modality?
  split_seen_in_training     whether a synthetic set's test clips were training clips of the shipped model
  cross_modal_forward        the reconstruction branch with separate audio / video mask ratios, 1.0 included
                             (a fully masked modality reaches the decoder as mask tokens only)
  cross_modal_study          masked-patch loss of one modality against the other's mask ratio, with fixed noise,
                             next to the same with a wrong partner;  plot_cross_modal draws it
  render_cross_modal, cross_modal_panel   the four MAE panels with both ratios, the audio mask mode, seed

Notebook 05 — L_c, the temperature and retrieval
  masked_view_embeddings                  the training-time (masked) view of the embeddings
  top_k, partner_rank, plot_retrieval     one query's top-k candidates (reusable for any score vector, e.g. a
                                          clip of your own against the test set in notebook 08)
  render_retrieval, retrieval_sounds, retrieval_gallery    the gallery with playable sounds

Notebook 05b — what the embeddings know
  modality_gap                            geometry of the paired embeddings
  ATTRIBUTE_PAIRS, load_attributes, plot_attribute_gallery the default data's generative factors
  attribute_classes, attribute_probes     4-way probes of each factor (notebook 07's protocol: linear_probe)
  clip_features, ideal_perceiver_r1       pooled audio / video / joint features; the retrieval ceiling
  patch_similarity, joint_attention, object_fraction, source_map_stats, render_source_maps, source_map_panel
"""

from __future__ import annotations

from .crossmodal import (
    CrossModalOutput,
    cross_modal_forward,
    cross_modal_panel,
    cross_modal_study,
    masking_noise,
    plot_cross_modal,
    reconstruct_cross_modal,
    render_cross_modal,
)
from .factors import (
    ATTRIBUTE_PAIRS,
    CONTINUOUS,
    DISCRETE,
    PROBED,
    RANGES,
    attribute_classes,
    attribute_groups,
    attribute_probes,
    attribute_table_markdown,
    clip_features,
    describe_clip,
    ideal_perceiver_r1,
    load_attributes,
    plot_attribute_gallery,
    ridge_r2,
)
from .gallery import (
    GalleryPanel,
    audio_player,
    clip_waveform,
    partner_rank,
    plot_retrieval,
    render_retrieval,
    retrieval_gallery,
    retrieval_sounds,
    top_k,
)
from .geometry import (
    masked_view_embeddings,
    modality_gap,
    split_seen_in_training,
)
from .sources import (
    joint_attention,
    object_fraction,
    patch_similarity,
    render_source_maps,
    source_map_panel,
    source_map_stats,
)

__all__ = [
    "ATTRIBUTE_PAIRS", "CONTINUOUS", "CrossModalOutput", "DISCRETE", "GalleryPanel", "PROBED", "RANGES",
    "attribute_classes", "attribute_groups", "attribute_probes", "attribute_table_markdown", "audio_player", "clip_features",
    "clip_waveform", "cross_modal_forward", "cross_modal_panel", "cross_modal_study", "describe_clip",
    "ideal_perceiver_r1", "joint_attention", "load_attributes", "masked_view_embeddings", "masking_noise",
    "modality_gap", "object_fraction", "partner_rank", "patch_similarity", "plot_attribute_gallery",
    "plot_cross_modal", "plot_retrieval", "reconstruct_cross_modal", "render_cross_modal", "render_retrieval",
    "render_source_maps", "retrieval_gallery", "retrieval_sounds", "ridge_r2", "source_map_panel",
    "source_map_stats", "split_seen_in_training", "top_k",
]
