"""Shared helpers for the training / evaluation tests: a micro config and in-memory paired datasets."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from cavmae_lite.config import CAVMAEConfig, TrainConfig


def micro_config(**overrides) -> CAVMAEConfig:
    """Far smaller than tiny: 16 audio tokens, 16 video tokens, width 32."""
    sizes = {"img_size": 32, "audio_length": 32, "num_mel_bins": 32, "patch_size": 8, "embed_dim": 32,
             "modality_specific_depth": 1, "joint_depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
             "decoder_depth": 1, "decoder_num_heads": 2}
    sizes.update(overrides)
    return CAVMAEConfig(**sizes)


def micro_train(**overrides) -> TrainConfig:
    d = {"batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "max_steps": 6, "checkpoint_every": 2, "log_every": 1,
         "seed": 0, "device": "cpu", "contrast_weight": 0.1, "threads": 1, "amp": "none"}
    d.update(overrides)
    return TrainConfig(**d)


class PairedDataset(Dataset):
    """``n`` clips in ``num_classes`` classes; audio and video of a clip share a class pattern plus noise."""

    def __init__(self, config: CAVMAEConfig, n: int = 64, num_classes: int = 4, seed: int = 0, noise: float = 0.5,
                 augment: bool = False):
        self.augment = augment  # draw per-item noise from torch's global RNG, as a training dataset would
        g = torch.Generator().manual_seed(seed)
        T, F, H = config.audio_length, config.num_mel_bins, config.img_size
        self.labels = torch.randint(0, num_classes, (n,), generator=g)
        pa = torch.randn(num_classes, T, F, generator=g)
        pv = torch.randn(num_classes, 3, H, H, generator=g)
        own_a = torch.randn(n, T, F, generator=g)  # a clip-specific signature shared by its two modalities
        self.audio = pa[self.labels] + noise * own_a
        self.video = pv[self.labels] + noise * torch.nn.functional.interpolate(
            own_a[:, None, :H, :H].repeat(1, 3, 1, 1), size=(H, H))
        self.num_classes = num_classes
        self.class_names = [f"class{i}" for i in range(num_classes)]
        self.video_ids = [f"clip{i:04d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        audio = self.audio[i] + 0.1 * torch.randn_like(self.audio[i]) if self.augment else self.audio[i]
        return {"audio": audio, "video": self.video[i], "label": int(self.labels[i]),
                "video_id": self.video_ids[i], "index": i,
                "labels": torch.nn.functional.one_hot(self.labels[i], self.num_classes).float(),
                "frames": torch.stack([self.video[i], self.video[i] + 0.1 * torch.randn_like(self.video[i])])}
