"""Transformer building blocks: attention (SDPA), MLP, and the block with three LayerNorm sets.

The CAV-MAE block (spec §3.5) is a pre-norm ViT block whose attention and MLP weights are shared, but
which owns three pairs of LayerNorms: one used when the block runs on the joint (audio + video) token
sequence, one for audio-only input and one for video-only input. The ``modality`` argument picks the pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

MODALITIES = ("joint", "audio", "video")


def check_modality(modality: str | None) -> str:
    """Normalise a modality tag: None / 'joint' -> 'joint'; 'a' / 'audio'; 'v' / 'video'."""
    aliases = {None: "joint", "joint": "joint", "a": "audio", "audio": "audio", "v": "video", "video": "video"}
    if modality not in aliases:
        raise ValueError(f"modality must be one of None, 'joint', 'audio' ('a'), 'video' ('v'); got {modality!r}")
    return aliases[modality]


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v for q, k, v of shape (B, h, N, d).

    PyTorch's fused kernel (SDPA) everywhere except bf16 / fp16 on the CPU, where its flash kernel's backward is
    slow for short sequences (measured: 2-4x slower than two matmuls and a softmax at the tiny config's sizes,
    see ``benchmarks/bench_learning.py``); there the same formula is written out.
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, h, N, N)
        return scores.softmax(dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    """Multi-head self-attention: (B, N, D) -> (B, N, D), qkv laid out [all q | all k | all v]."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        out = attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class MLP(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with one LayerNorm pair per modality tag.

    x <- x + Attn(LN1_m(x));  x <- x + MLP(LN2_m(x)),  m in {joint, audio, video}.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.ModuleDict({m: nn.LayerNorm(dim) for m in MODALITIES})
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.ModuleDict({m: nn.LayerNorm(dim) for m in MODALITIES})
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, modality: str | None = None) -> Tensor:
        m = check_modality(modality)
        x = x + self.attn(self.norm1[m](x))
        return x + self.mlp(self.norm2[m](x))


def run_blocks(blocks: nn.ModuleList, x: Tensor, modality: str | None = None) -> Tensor:
    """Apply ``blocks`` in sequence (chained), all with the same modality tag."""
    for block in blocks:
        x = block(x, modality)
    return x
