"""An independent, functional model of the released CAV-MAE Sync semantics (``cav_mae_sync.py``), for parity tests.

Written from ``cavmae-sync-spec.md`` §3-§4 on top of :mod:`official_reference` (CAV-MAE's layers written out with
plain tensor operations), not from the package code. It reads an official-layout Sync state dict
(``cls_token_a``, ``register_tokens``, ``constrative_head_audio.0...``) and evaluates it with explicit masking
noise. Released behaviours reproduced: global tokens prepended and registers appended after masking; registers
dropped after the modality-specific blocks (or, with ``keep_register_tokens``, after the joint layer and heads);
the fused pass without the global tokens; the modality-only passes not chained (as CAV-MAE's); ``loss_c`` weighted.
Where the release has a bug (B = 1, the fused-stream strip under masking) this reference does what the code means.
"""

from __future__ import annotations

import torch
from official_reference import OfficialReference, block, layer_norm
from torch import Tensor


class OfficialSyncReference(OfficialReference):
    def __init__(self, state_dict: dict[str, Tensor], num_heads: int, decoder_num_heads: int = 16,
                 norm_pix_loss: bool = False, keep_register_tokens: bool = False):
        super().__init__(state_dict, num_heads, decoder_num_heads, norm_pix_loss)
        self.keep = keep_register_tokens
        self.has_global = "cls_token_a" in self.sd
        self.R = self.sd["register_tokens"].shape[0] // 2 if "register_tokens" in self.sd else 0
        self.n_head = 2 if "constrative_head_audio.0.norm1.weight" in self.sd else 0

    def insert(self, x: Tensor, m: str) -> Tensor:
        """[global, x, registers] for modality m in 'a' / 'v'."""
        B = x.shape[0]
        parts = []
        if self.has_global:
            parts.append(self.sd[f"cls_token_{m}"].reshape(1, 1, -1).repeat(B, 1, 1))
        parts.append(x)
        if self.R:
            rows = self.sd["register_tokens"][: self.R] if m == "a" else self.sd["register_tokens"][self.R:]
            parts.append(rows.unsqueeze(0).repeat(B, 1, 1))
        return torch.cat(parts, dim=1)

    def towers(self, a: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        a = self.stack("blocks_a", self.n_spec, self.insert(a, "a"), self.heads)
        v = self.stack("blocks_v", self.n_spec, self.insert(v, "v"), self.heads)
        if self.R and not self.keep:
            a, v = a[:, : a.shape[1] - self.R], v[:, : v.shape[1] - self.R]
        return a, v

    def stream(self, x: Tensor, m: str) -> tuple[Tensor, Tensor | None]:
        c = x
        for i in range(self.n_joint):  # not chained, as released
            c = block(self.sd, f"blocks_u.{i}", x, self.heads, m)
        name = "constrative_head_audio" if m == "a" else "constrative_head_visual"
        for i in range(self.n_head):
            c = block(self.sd, f"{name}.{i}", c, self.heads)
        if self.R and self.keep:
            c = c[:, : c.shape[1] - self.R]
        c = layer_norm(self.sd, f"norm_{m}", c)
        if self.has_global:
            return c[:, 1:], c[:, 0]
        return c, None

    def encoder(self, audio, imgs, noise_a, noise_v, mask_ratio_a, mask_ratio_v):
        a, mask_a, keep_a = self.mask_tokens(self.embed_a(audio), mask_ratio_a, noise_a)
        v, mask_v, keep_v = self.mask_tokens(self.embed_v(imgs), mask_ratio_v, noise_v)
        a, v = self.towers(a, v)
        g = int(self.has_global)
        x = self.stack("blocks_u", self.n_joint, torch.cat([a[:, g:], v[:, g:]], dim=1), self.heads)
        latent = layer_norm(self.sd, "norm", x)
        if self.R and self.keep:  # strip at the visible counts
            Ka = keep_a.shape[1]
            latent = torch.cat([latent[:, :Ka], latent[:, Ka + self.R: latent.shape[1] - self.R]], dim=1)
        return latent, mask_a, keep_a, mask_v, keep_v, self.stream(a, "a"), self.stream(v, "v")

    def forward(self, audio, imgs, noise_a, noise_v, mask_ratio_a=0.75, mask_ratio_v=0.75, mae_loss_weight=1.0,
                contrast_loss_weight=0.01, bidirect_contrast=False):
        latent, mask_a, keep_a, mask_v, keep_v, (pa, ga), (pv, gv) = self.encoder(
            audio, imgs, noise_a, noise_v, mask_ratio_a, mask_ratio_v)
        pred_a, pred_v = self.decoder(latent, mask_a, keep_a, mask_v, keep_v)
        from official_reference import audio_as_image

        loss_mae_a = self.mae_loss(audio_as_image(audio), pred_a, mask_a)
        loss_mae_v = self.mae_loss(imgs, pred_v, mask_v)
        ea, ev = (ga, gv) if self.has_global else (pa.mean(dim=1), pv.mean(dim=1))
        nce, c_acc = self.contrastive(ea, ev, bidirect_contrast)
        loss_mae = mae_loss_weight * (loss_mae_a + loss_mae_v)
        loss_c = contrast_loss_weight * nce
        return {"loss": loss_mae + loss_c, "loss_mae": loss_mae, "loss_mae_a": loss_mae_a, "loss_mae_v": loss_mae_v,
                "loss_c": loss_c, "mask_a": mask_a, "mask_v": mask_v, "c_acc": c_acc, "pred_a": pred_a,
                "pred_v": pred_v, "global_a": ga, "global_v": gv}

    def forward_feat(self, audio: Tensor, imgs: Tensor):
        a, v = self.towers(self.embed_a(audio), self.embed_v(imgs))
        (pa, ga), (pv, gv) = self.stream(a, "a"), self.stream(v, "v")
        return pa, pv, ga, gv
