"""An independent, functional model of the *official* CAV-MAE semantics, for parity tests.

Written from the specification (``cavmae-spec.md`` §3, §4, §3.5 numerics) and deliberately **not** from the
package code: it reads an OFFICIAL-layout state dict (``blocks_a.0.norm1_a.weight``, ``pos_embed_a``,
``decoder_pred_v.weight``, ``mlp_head.1.weight``, ...) and evaluates it with plain tensor operations, the way
timm 0.4.5 does (explicit ``q @ k^T * scale`` / softmax / ``@ v``; LayerNorm eps 1e-5; erf GELU).

Where the package chooses a different formulation, this file picks another on purpose so that the two are
not the same code twice:

* masking builds the binary mask by scattering zeros at the kept indices (the package gathers a sorted
  template with ``ids_restore``);
* the decoder puts the visible tokens back by scattering them into a canvas of mask tokens at the kept
  positions (the official code and the package append mask tokens and gather with ``ids_restore``);
* patchify is reshape + permute (the package uses einops);
* the unbiased variance, log-softmax and sin-cos tables are written out by hand.

Official behaviours reproduced as such:

* the audio grid has ``128 // p`` frequency rows (the official class hard-codes 128 mel bins);
* the audio-only and video-only contrastive streams of the pretraining forward do **not** chain the joint
  blocks: each joint block is applied to the modality-specific output and only the last one survives
  (spec §3.7 / §10.1); ``forward_feat`` and the fine-tuning model do chain;
* the returned ``loss_c`` is already multiplied by the contrastive weight, ``loss_mae`` by the MAE weight;
* a zero weight skips its branch and returns zeros; the number of masked tokens the decoder uses is read
  from sample 0 of the batch.

All masking noise is passed in explicitly (``noise_a`` (B, La), ``noise_v`` (B, Lv)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MEL_BINS = 128  # hard-coded in the official class
TEMPERATURE = 0.05  # hard-coded in the official contrastive loss
LN_EPS = 1e-5  # torch default, used by the official model (timm 0.4.5 passes nn.LayerNorm)


# ----------------------------------------------------------------------------------------------------
# State dict helpers
# ----------------------------------------------------------------------------------------------------


def strip_module(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for k, v in sd.items():
        out[k.removeprefix("module.")] = v
    return out


def count_blocks(sd: dict[str, Tensor], prefix: str) -> int:
    idx = set()
    for k in sd:
        if k.startswith(prefix + "."):
            idx.add(int(k.split(".")[1]))
    return 0 if not idx else max(idx) + 1


# ----------------------------------------------------------------------------------------------------
# Fixed 2-D sin-cos table (spec §3.3), written out position by position
# ----------------------------------------------------------------------------------------------------


def sincos_table(dim: int, rows: int, cols: int) -> Tensor:
    """(rows*cols, dim) float32: [code(column) | code(row)], code(p) = [sin(p w_i)..., cos(p w_i)...]."""
    q = dim // 4
    omega = [1.0 / (10000.0 ** (i / q)) for i in range(q)]
    table = torch.empty(rows * cols, dim, dtype=torch.float64)
    for r in range(rows):
        for c in range(cols):
            code_c = [math.sin(c * w) for w in omega] + [math.cos(c * w) for w in omega]
            code_r = [math.sin(r * w) for w in omega] + [math.cos(r * w) for w in omega]
            table[r * cols + c] = torch.tensor(code_c + code_r, dtype=torch.float64)
    return table.float()


# ----------------------------------------------------------------------------------------------------
# Layers (timm 0.4.5 semantics)
# ----------------------------------------------------------------------------------------------------


def layer_norm(sd: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    w, b = sd[name + ".weight"], sd[name + ".bias"]
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)  # biased, as LayerNorm
    return (x - mu) / torch.sqrt(var + LN_EPS) * w + b


def linear(sd: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    return x @ sd[name + ".weight"].t() + sd[name + ".bias"]


def attention(sd: dict[str, Tensor], name: str, x: Tensor, heads: int) -> Tensor:
    B, N, C = x.shape
    hd = C // heads
    qkv = linear(sd, name + ".qkv", x).reshape(B, N, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q @ k.transpose(-2, -1)) * hd**-0.5
    probs = scores.softmax(dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(B, N, C)
    return linear(sd, name + ".proj", out)


def mlp(sd: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    h = linear(sd, name + ".fc1", x)
    h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))  # exact GELU
    return linear(sd, name + ".fc2", h)


def block(sd: dict[str, Tensor], name: str, x: Tensor, heads: int, tag: str = "") -> Tensor:
    """tag '' (joint norms), 'a' or 'v' (the norm1_a/norm2_a or norm1_v/norm2_v sets)."""
    suffix = "" if tag == "" else "_" + tag
    x = x + attention(sd, name + ".attn", layer_norm(sd, f"{name}.norm1{suffix}", x), heads)
    x = x + mlp(sd, name + ".mlp", layer_norm(sd, f"{name}.norm2{suffix}", x))
    return x


def patch_conv(sd: dict[str, Tensor], name: str, img: Tensor) -> Tensor:
    w = sd[name + ".proj.weight"]
    p = w.shape[-1]
    y = F.conv2d(img, w, sd[name + ".proj.bias"], stride=p)  # (B, D, h, w)
    return y.flatten(2).transpose(1, 2)


def patchify_ref(img: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, h*w, p*p*C), values ordered (row offset, column offset, channel)."""
    B, C, H, W = img.shape
    h, w = H // p, W // p
    x = img.reshape(B, C, h, p, w, p).permute(0, 2, 4, 3, 5, 1)  # B h w p q C
    return x.reshape(B, h * w, p * p * C)


def audio_as_image(audio: Tensor) -> Tensor:
    """(B, T, F) -> (B, 1, F, T)."""
    return audio.unsqueeze(1).transpose(2, 3)


# ----------------------------------------------------------------------------------------------------
# The reference model
# ----------------------------------------------------------------------------------------------------


class OfficialReference:
    """Official ``CAVMAE`` / ``CAVMAEFT`` semantics on an official-layout state dict.

    Args:
        state_dict: official keys, with or without a ``module.`` prefix.
        num_heads / decoder_num_heads: not recoverable from the weights.
        norm_pix_loss: the pretraining model's flag.
    """

    def __init__(self, state_dict: dict[str, Tensor], num_heads: int, decoder_num_heads: int = 16,
                 norm_pix_loss: bool = False):
        self.sd = {k: v.detach().float() for k, v in strip_module(state_dict).items()}
        self.heads = num_heads
        self.dec_heads = decoder_num_heads
        self.norm_pix_loss = norm_pix_loss
        self.p = self.sd["patch_embed_v.proj.weight"].shape[-1]
        self.n_spec = count_blocks(self.sd, "blocks_a")
        self.n_joint = count_blocks(self.sd, "blocks_u")
        self.n_dec = count_blocks(self.sd, "decoder_blocks")
        self.freq_rows = MEL_BINS // self.p

    # --- embedding ---------------------------------------------------------------------------------
    def embed_a(self, audio: Tensor) -> Tensor:
        x = patch_conv(self.sd, "patch_embed_a", audio_as_image(audio))
        return x + self.sd["pos_embed_a"] + self.sd["modality_a"]

    def embed_v(self, imgs: Tensor) -> Tensor:
        x = patch_conv(self.sd, "patch_embed_v", imgs)
        return x + self.sd["pos_embed_v"] + self.sd["modality_v"]

    def stack(self, prefix: str, n: int, x: Tensor, heads: int, tag: str = "") -> Tensor:
        for i in range(n):
            x = block(self.sd, f"{prefix}.{i}", x, heads, tag)
        return x

    # --- masking (unstructured, explicit noise) ----------------------------------------------------
    @staticmethod
    def mask_tokens(x: Tensor, ratio: float, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Keep the int(L*(1-ratio)) lowest-noise tokens (in ascending-noise order).

        Returns visible (B, K, D), mask (B, L) float with 1 = removed, ids_keep (B, K).
        """
        B, L = x.shape[:2]
        keep = int(L * (1 - ratio))
        order = torch.argsort(noise, dim=1)
        ids_keep = order[:, :keep]
        visible = torch.stack([x[b, ids_keep[b]] for b in range(B)])
        mask = torch.ones(B, L, dtype=x.dtype)
        mask.scatter_(1, ids_keep, 0.0)
        return visible, mask, ids_keep

    # --- pretraining -------------------------------------------------------------------------------
    def encoder(self, audio, imgs, noise_a, noise_v, mask_ratio_a, mask_ratio_v):
        a = self.embed_a(audio)
        v = self.embed_v(imgs)
        a, mask_a, keep_a = self.mask_tokens(a, mask_ratio_a, noise_a)
        v, mask_v, keep_v = self.mask_tokens(v, mask_ratio_v, noise_v)
        a = self.stack("blocks_a", self.n_spec, a, self.heads)
        v = self.stack("blocks_v", self.n_spec, v, self.heads)
        x = torch.cat([a, v], dim=1)
        x = self.stack("blocks_u", self.n_joint, x, self.heads)
        latent = layer_norm(self.sd, "norm", x)
        # official quirk: not chained, every joint block restarts from the modality-specific output
        ca = a
        for i in range(self.n_joint):
            ca = block(self.sd, f"blocks_u.{i}", a, self.heads, "a")
        latent_c_a = layer_norm(self.sd, "norm_a", ca)
        cv = v
        for i in range(self.n_joint):
            cv = block(self.sd, f"blocks_u.{i}", v, self.heads, "v")
        latent_c_v = layer_norm(self.sd, "norm_v", cv)
        return latent, mask_a, keep_a, mask_v, keep_v, latent_c_a, latent_c_v

    def decoder(self, latent, mask_a, keep_a, mask_v, keep_v):
        sd = self.sd
        x = linear(sd, "decoder_embed", latent)
        B, Dd = x.shape[0], x.shape[2]
        La, Lv = mask_a.shape[1], mask_v.shape[1]
        Ka = La - int(mask_a[0].sum())  # official: count read from sample 0
        tok = sd["mask_token"].reshape(1, 1, Dd)
        canvas_a = tok.repeat(B, La, 1)
        canvas_a = canvas_a.scatter(1, keep_a.unsqueeze(-1).expand(B, keep_a.shape[1], Dd), x[:, :Ka])
        canvas_v = tok.repeat(B, Lv, 1)
        canvas_v = canvas_v.scatter(1, keep_v.unsqueeze(-1).expand(B, keep_v.shape[1], Dd), x[:, Ka:])
        y = torch.cat([canvas_a, canvas_v], dim=1)
        y = y + torch.cat([sd["decoder_pos_embed_a"], sd["decoder_pos_embed_v"]], dim=1)
        y = torch.cat([y[:, :La] + sd["decoder_modality_a"], y[:, La:] + sd["decoder_modality_v"]], dim=1)
        y = self.stack("decoder_blocks", self.n_dec, y, self.dec_heads)
        y = layer_norm(sd, "decoder_norm", y)
        return linear(sd, "decoder_pred_a", y[:, :La]), linear(sd, "decoder_pred_v", y[:, La:])

    def mae_loss(self, inp: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        target = patchify_ref(inp, self.p)
        if self.norm_pix_loss:
            n = target.shape[-1]
            mean = target.sum(dim=-1, keepdim=True) / n
            var = ((target - mean) ** 2).sum(dim=-1, keepdim=True) / (n - 1)  # unbiased
            target = (target - mean) / torch.sqrt(var + 1e-6)
        err = ((pred - target) ** 2).mean(dim=-1)
        return (err * mask).sum() / mask.sum()

    @staticmethod
    def contrastive(ca: Tensor, cv: Tensor, bidirect: bool = False) -> tuple[Tensor, Tensor]:
        ca = ca / ca.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        cv = cv / cv.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        S = ca @ cv.t() / TEMPERATURE  # S[i, j]: audio i vs video j

        def one_direction(M: Tensor) -> tuple[Tensor, Tensor]:
            logp = M - torch.logsumexp(M, dim=0, keepdim=True)  # softmax over the row index, per column
            n = M.shape[0]
            nce = -sum(logp[j, j] for j in range(n)) / n
            acc = sum(float(int(M[:, j].argmax()) == j) for j in range(n)) / n
            return nce, torch.tensor(acc)

        nce, acc = one_direction(S)
        if bidirect:
            nce2, acc2 = one_direction(S.t())
            nce, acc = (nce + nce2) / 2, (acc + acc2) / 2
        return nce, acc

    def forward(self, audio: Tensor, imgs: Tensor, noise_a: Tensor, noise_v: Tensor, mask_ratio_a: float = 0.75,
                mask_ratio_v: float = 0.75, mae_loss_weight: float = 1.0, contrast_loss_weight: float = 0.01,
                bidirect_contrast: bool = False) -> dict[str, Tensor | None]:
        """Official ``CAVMAE.forward`` outputs (plus ``forward_inpaint``'s predictions) as a dict."""
        latent, mask_a, keep_a, mask_v, keep_v, lca, lcv = self.encoder(
            audio, imgs, noise_a, noise_v, mask_ratio_a, mask_ratio_v)
        zero = torch.tensor(0.0)
        pred_a = pred_v = None
        if mae_loss_weight != 0:
            pred_a, pred_v = self.decoder(latent, mask_a, keep_a, mask_v, keep_v)
            loss_mae_a = self.mae_loss(audio_as_image(audio), pred_a, mask_a)
            loss_mae_v = self.mae_loss(imgs, pred_v, mask_v)
            loss_mae = mae_loss_weight * (loss_mae_a + loss_mae_v)
        else:
            loss_mae_a = loss_mae_v = loss_mae = zero
        if contrast_loss_weight != 0:
            nce, c_acc = self.contrastive(lca.mean(dim=1), lcv.mean(dim=1), bidirect_contrast)
            loss_c = contrast_loss_weight * nce
        else:
            loss_c, c_acc = zero, zero
        return {"loss": loss_mae + loss_c, "loss_mae": loss_mae, "loss_mae_a": loss_mae_a, "loss_mae_v": loss_mae_v,
                "loss_c": loss_c, "mask_a": mask_a, "mask_v": mask_v, "c_acc": c_acc, "pred_a": pred_a,
                "pred_v": pred_v}

    def forward_feat(self, audio: Tensor, imgs: Tensor) -> tuple[Tensor, Tensor]:
        """No masking; modality-specific stack, joint blocks tagged and chained, norm_a / norm_v."""
        a = self.stack("blocks_a", self.n_spec, self.embed_a(audio), self.heads)
        a = layer_norm(self.sd, "norm_a", self.stack("blocks_u", self.n_joint, a, self.heads, "a"))
        v = self.stack("blocks_v", self.n_spec, self.embed_v(imgs), self.heads)
        v = layer_norm(self.sd, "norm_v", self.stack("blocks_u", self.n_joint, v, self.heads, "v"))
        return a, v

    # --- fine-tuning (CAVMAEFT.forward) ------------------------------------------------------------
    def classify(self, audio: Tensor | None, imgs: Tensor | None, mode: str) -> Tensor:
        sd = self.sd

        def head(x: Tensor) -> Tensor:
            return linear(sd, "mlp_head.1", layer_norm(sd, "mlp_head.0", x))

        def spec_a() -> Tensor:
            return self.stack("blocks_a", self.n_spec, self.embed_a(audio), self.heads)

        def spec_v() -> Tensor:
            return self.stack("blocks_v", self.n_spec, self.embed_v(imgs), self.heads)

        def joint(x: Tensor, tag: str, norm: str) -> Tensor:
            return layer_norm(sd, norm, self.stack("blocks_u", self.n_joint, x, self.heads, tag)).mean(dim=1)

        if mode == "multimodal":
            return head(joint(torch.cat([spec_a(), spec_v()], dim=1), "", "norm"))
        if mode == "audioonly":
            return head(joint(spec_a(), "a", "norm_a"))
        if mode == "videoonly":
            return head(joint(spec_v(), "v", "norm_v"))
        if mode == "missingaudioonly":
            a = spec_a()
            return head((joint(a, "", "norm") + joint(a, "a", "norm_a")) / 2)
        if mode == "missingvideoonly":
            v = spec_v()
            return head((joint(v, "", "norm") + joint(v, "v", "norm_v")) / 2)
        raise ValueError(mode)
