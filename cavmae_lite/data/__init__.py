"""Data: CAV-MAE preprocessing (spec §2), datasets, prepared caches, ``prepare`` and the synthetic set.

Depends only on :mod:`cavmae_lite.config` (for sizes), never on the model. Heavy libraries (PyAV, soundfile,
PIL, torchvision, tqdm, multiprocessing) are imported inside the functions that use them. The command-line side
(``make-data``, ``prepare``, ``cache``, ``stats``) is :mod:`cavmae_lite.cli.data`.
"""

from .audio import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    SAMPLE_RATE,
    MediaError,
    add_noise_and_roll,
    audio_to_input,
    denormalize_fbank,
    load_audio,
    load_fbank,
    normalize_fbank,
    pad_or_crop,
    read_audio,
    resample,
    wav_to_fbank,
    write_wav,
)
from .cache import build_cache, open_cache
from .datasets import AVDataset, fbank_stats, load_dataset, resolve_split
from .manifest import Manifest, read_labels, read_manifest, write_labels, write_manifest
from .pairs import PairDataset, load_pair_dataset
from .prepare import prepare
from .segments import cut_segments, segment_window, segment_windows
from .synthetic import default_data_dir, ensure_default_dataset, make_synthetic
from .video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    clip_to_inputs,
    denormalize_frame,
    load_frames,
    load_image,
    normalize_frame,
    preprocess_frame,
    resize_center_crop,
)

__all__ = [
    "AUDIOSET_MEAN",
    "AUDIOSET_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SAMPLE_RATE",
    "AVDataset",
    "Manifest",
    "PairDataset",
    "MediaError",
    "add_noise_and_roll",
    "audio_to_input",
    "build_cache",
    "clip_to_inputs",
    "cut_segments",
    "segment_window",
    "segment_windows",
    "default_data_dir",
    "denormalize_fbank",
    "denormalize_frame",
    "ensure_default_dataset",
    "fbank_stats",
    "load_audio",
    "load_pair_dataset",
    "load_dataset",
    "resolve_split",
    "load_fbank",
    "load_frames",
    "load_image",
    "make_synthetic",
    "normalize_fbank",
    "normalize_frame",
    "open_cache",
    "pad_or_crop",
    "prepare",
    "preprocess_frame",
    "read_audio",
    "read_labels",
    "read_manifest",
    "resample",
    "resize_center_crop",
    "wav_to_fbank",
    "write_labels",
    "write_manifest",
    "write_wav",
]

