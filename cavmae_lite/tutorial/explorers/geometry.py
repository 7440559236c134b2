"""Shared, notebooks 05 and 05b: which clips the shipped model saw, and the geometry of its embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .crossmodal import masking_noise

# ---------------------------------------------------------------------------------------------------------
# shared: which clips did the shipped model see?
# ---------------------------------------------------------------------------------------------------------


def split_seen_in_training(data_dir: str | Path, card: dict[str, Any]) -> bool | None:
    """Were the test clips of the synthetic dataset at ``data_dir`` among the clips the zoo model of ``card`` was
    trained on? The generator renders clip k from (seed, k); its stamp records each split's first index (a set made
    before that numbering put a small set's test clips right after its train and val clips, inside the full train
    split; a train split larger than the default one continues after the test block, see
    :func:`cavmae_lite.data.synthetic.train_index`). None when unknown (no ``synthetic.json``: not the synthetic data)."""
    import json

    stamp = Path(data_dir) / "synthetic.json"
    if not stamp.is_file():
        return None
    syn, data = json.loads(stamp.read_text()), card["recipe"]["data"]
    if syn.get("generator") != data.get("generator") or syn.get("seed") != data.get("seed"):
        return False
    from ...data.synthetic import train_index

    first_test = syn.get("first_index", {}).get("test", syn["splits"]["train"] + syn["splits"]["val"])  # test00000
    n_train, n_val, n_test = data["sizes"]
    seen = {train_index(k, n_val, n_test) for k in range(n_train)}  # generator indices of the model's train clips
    return any(first_test + k in seen for k in range(syn["splits"]["test"]))



# ---------------------------------------------------------------------------------------------------------
# 05: embedding geometry
# ---------------------------------------------------------------------------------------------------------


def modality_gap(audio: Tensor, video: Tensor) -> dict[str, float]:
    """Geometry of paired embeddings (N, D) each, after L2 normalisation.

    ``gap``: distance between the mean audio and the mean video embedding, |mean(a) - mean(v)| (0 = the two
    clouds are centred on each other, 2 = opposite poles); ``cos_true``: mean cosine of true pairs a_i . v_i;
    ``cos_random``: mean over i != j of a_i . v_j; ``cos_audio``, ``cos_video``: mean cosine between two different
    clips of the same modality.
    """
    a, v = F.normalize(audio.float(), dim=-1), F.normalize(video.float(), dim=-1)
    n = a.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    s, aa, vv = a @ v.T, a @ a.T, v @ v.T
    return {"gap": float((a.mean(0) - v.mean(0)).norm()), "cos_true": float(s.diagonal().mean()),
            "cos_random": float(s[off].mean()), "cos_audio": float(aa[off].mean()), "cos_video": float(vv[off].mean())}


@torch.no_grad()
def masked_view_embeddings(model, audio: Tensor, video: Tensor, ratio_a: float, ratio_v: float, seed: int = 0,
                           batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """The contrastive embeddings as training computes them: visible tokens only (ratio in [0, 1)), each modality
    through its own stream, mean-pooled; L2-normalised, (N, D) each. Noise from :func:`masking_noise`."""
    if not (0 <= ratio_a < 1 and 0 <= ratio_v < 1):
        raise ValueError(f"masked_view_embeddings needs ratios in [0, 1) (a token to pool), got {ratio_a}, {ratio_v}")
    c, enc = model.config, model.encoder
    was_training = model.training
    model.eval()
    noise_a, noise_v = masking_noise(c, audio.shape[0], seed)
    A, V = [], []
    for s in range(0, audio.shape[0], batch_size):
        e = enc.encode(audio[s:s + batch_size], video[s:s + batch_size], ratio_a, ratio_v, noise_a[s:s + batch_size],
                       noise_v[s:s + batch_size])
        A.append(enc.audio_stream(e.audio).mean(dim=1))
        V.append(enc.video_stream(e.video).mean(dim=1))
    model.train(was_training)
    return F.normalize(torch.cat(A), dim=-1), F.normalize(torch.cat(V), dim=-1)
