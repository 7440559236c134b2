"""Figures for the tutorial: every tensor of CAV-MAE as a picture, one module per topic.

Inputs use the model's conventions (spec §2, §3): an audio clip is a normalised log-mel fbank ``(T, F)``
(10 ms per frame), a frame is an ImageNet-normalised ``(3, H, W)`` image. Plot functions take an optional
matplotlib ``ax`` and return the figure they drew on, with labelled axes, units and colour bars.

Contents
  architecture   multistream_shapes, plot_multistream (the multi-stream pass of a live model, shapes by hooks)
  inputs         plot_waveform, plot_fbank, plot_frame, plot_frames (patch grid + token indices)
  masking        masked_fbank, masked_frame, plot_mask, plot_masking
  reconstruction unnormalize_patches, reconstruct -> Reconstruction, plot_reconstruction
  contrastive    similarity_matrix, plot_similarity, softmax_with_temperature, plot_temperature,
                 pca_2d, plot_embedding_map
  training       plot_loss_curves, plot_masking_tradeoff
  sync           plot_clip_moments, plot_segment_cut, plot_frame_similarity (CAV-MAE Sync, notebook 09)
  attention      attention_weights, capture_attention (hook on one block), plot_frame_map (per-patch values)
  listening      fbank_to_waveform (approximate inversion: inverse mel + Griffin-Lim)
  helpers        to_numpy (tensor -> float32 array), figure_and_axes (the given ax or a new figure),
                 draw_patch_grid, frame_to_rgb
  CLI            ``cavmae-lite reconstruct CLIP --checkpoint CKPT --out fig.png`` (cavmae_lite.cli.reconstruct)

Modules: architecture (the model as boxes and arrows), grids (patch grid, frames, colours), audio (waveform,
fbank, listening), masks (masking and reconstructions), similarity (similarity matrix, temperature), embeddings
(PCA map), curves (training curves), attention (attention weights, maps over a frame), sync (CAV-MAE Sync's
moments, segment cut and frame-by-segment similarities).
"""

from __future__ import annotations

from ..evaluate import STATS, unnormalize_patches  # the math lives there; re-exported for figures
from .architecture import multistream_shapes, plot_multistream
from .attention import attention_weights, capture_attention, plot_frame_map
from .audio import fbank_to_waveform, plot_fbank, plot_waveform
from .curves import plot_loss_curves, plot_masking_tradeoff
from .embeddings import pca_2d, plot_embedding_map
from .grids import (
    FBANK_MEAN,
    FBANK_STD,
    HOP_S,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SIM_CMAP,
    SPEC_CMAP,
    draw_patch_grid,
    figure_and_axes,
    frame_to_rgb,
    plot_frame,
    plot_frames,
    to_numpy,
)
from .masks import (
    Reconstruction,
    masked_fbank,
    masked_frame,
    plot_mask,
    plot_masking,
    plot_reconstruction,
    reconstruct,
)
from .similarity import plot_similarity, plot_temperature, similarity_matrix, softmax_with_temperature
from .sync import plot_clip_moments, plot_frame_similarity, plot_segment_cut

__all__ = [
    "FBANK_MEAN",
    "FBANK_STD",
    "HOP_S",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SIM_CMAP",
    "SPEC_CMAP",
    "STATS",
    "Reconstruction",
    "attention_weights",
    "capture_attention",
    "draw_patch_grid",
    "fbank_to_waveform",
    "figure_and_axes",
    "frame_to_rgb",
    "masked_fbank",
    "masked_frame",
    "multistream_shapes",
    "pca_2d",
    "plot_embedding_map",
    "plot_fbank",
    "plot_frame",
    "plot_frame_map",
    "plot_frames",
    "plot_loss_curves",
    "plot_masking_tradeoff",
    "plot_mask",
    "plot_masking",
    "plot_multistream",
    "plot_reconstruction",
    "plot_clip_moments",
    "plot_frame_similarity",
    "plot_segment_cut",
    "plot_similarity",
    "plot_temperature",
    "plot_waveform",
    "reconstruct",
    "similarity_matrix",
    "softmax_with_temperature",
    "to_numpy",
    "unnormalize_patches",
]
