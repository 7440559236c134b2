"""CAV-MAE Sync (Araujo et al., CVPR 2025): each video frame paired with the audio segment around it.

Built from CAV-MAE's pieces in :mod:`.model` (tokenizers, blocks, masking, the joint decoder, the losses); what Sync
adds is where tokens go. Shapes for the released model (L = 416 frames of a 1024-frame clip, R = 8):

    segment (B, L, F) -> (B, 208, D) + pos (8 x 26 grid local to the segment) + modality, mask 75 % -> (B, 52, D)
    frame (B, C, H, W) -> (B, 196, D) + pos + modality, mask 75 % -> (B, 49, D)
    after masking, per modality: [global token g, visible patches, R register tokens] (never masked)
    modality-specific blocks, then the registers are dropped (kept through the joint layer with keep_register_tokens)
    fused pass:      [audio patches, video patches] (no global tokens) -> joint blocks -> norm_joint -> decoder
    audio-only pass: [g_a, audio patches] -> joint blocks, audio LN set -> (contrastive heads) -> norm_audio
    video-only pass: [g_v, video patches] likewise; g_a, g_v (B, D) feed InfoNCE and retrieval

Where the released class (``cav_mae_sync.py``) has a bug this one does the right thing: the batch axis is kept at
B = 1 (the release squeezes it away); structured audio masks follow the segment's own grid (the release assumes 64
time columns); with ``keep_register_tokens`` the registers are stripped from the fused stream at the visible-token
counts (the release uses the unmasked audio count); a contrast-only run (``mae_weight=0``) skips the decoder (the
release crashes). ``loss_c`` is unweighted, as in :class:`~cavmae_lite.model.CAVMAE`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import CAVMAESyncConfig
from .layers import Block, run_blocks
from .losses import info_nce, reconstruction_loss
from .masking import random_masking
from .model import CAVMAEEncoder, CAVMAEOutput, Encoded, JointDecoder, PretrainedModel, check_inputs, init_weights
from .tokenizers import patchify_audio, patchify_video


class CAVMAESyncEncoder(CAVMAEEncoder):
    """CAV-MAE's encoder plus a global token per modality, 2R register tokens and optional contrastive heads."""

    def __init__(self, config: CAVMAESyncConfig, trainable_pos: bool | None = None):
        super().__init__(config, trainable_pos)
        c, D, R = config, config.embed_dim, config.num_register_tokens
        self.audio_global = nn.Parameter(torch.zeros(1, 1, D)) if c.global_tokens else None
        self.video_global = nn.Parameter(torch.zeros(1, 1, D)) if c.global_tokens else None
        # rows 0..R-1 audio, R..2R-1 video; N(0, 1) as released (untouched by the weight init)
        self.registers = nn.Parameter(torch.randn(2 * R, D)) if R else None
        heads = lambda: nn.ModuleList(Block(D, c.num_heads, c.mlp_ratio) for _ in range(2))  # noqa: E731
        self.audio_head = heads() if c.contrastive_heads else None
        self.video_head = heads() if c.contrastive_heads else None

    @property
    def num_global(self) -> int:
        """Tokens in front of the patches: 1 with global tokens, else 0."""
        return int(self.config.global_tokens)

    def add_tokens(self, x: Tensor, modality: str) -> Tensor:
        """(B, K, D) visible patches -> (B, G + K + R, D): [global token, patches, register tokens]."""
        R, parts = self.config.num_register_tokens, []
        if self.num_global:
            parts.append((self.audio_global if modality == "audio" else self.video_global).expand(x.shape[0], -1, -1))
        parts.append(x)
        if R:
            rows = self.registers[:R] if modality == "audio" else self.registers[R:]
            parts.append(rows.unsqueeze(0).expand(x.shape[0], -1, -1))
        return torch.cat(parts, dim=1)

    def drop_registers(self, x: Tensor) -> Tensor:
        """(B, N + R, D) -> (B, N, D): the R register tokens at the end removed."""
        R = self.config.num_register_tokens
        return x[:, : x.shape[1] - R]

    def encode(self, audio: Tensor | None, video: Tensor | None, mask_ratio_a: float | None = None,
               mask_ratio_v: float | None = None, noise_a: Tensor | None = None, noise_v: Tensor | None = None,
               mask_mode: str = "unstructured", generator: torch.Generator | None = None) -> Encoded:
        """embed -> mask (when a ratio is given) -> add global / register tokens -> modality-specific blocks ->
        drop the registers (unless ``keep_register_tokens``). audio (B, L, F) segments, video (B, C, H, W) frames;
        returns :class:`~cavmae_lite.model.Encoded` with audio (B, G + Ka [+ R], D), video (B, G + Kv [+ R], D)."""
        check_inputs(self.config, audio, None)
        check_inputs(self.config, None, video)
        masked_a = masked_v = None
        x_a = None if audio is None else self.embed_audio(audio)  # (B, La, D)
        x_v = None if video is None else self.embed_video(video)  # (B, Lv, D)
        if x_a is not None and mask_ratio_a is not None:
            masked_a = random_masking(x_a, mask_ratio_a, noise_a, mask_mode, self.config.audio_grid, generator)
            x_a = masked_a.visible
        if x_v is not None and mask_ratio_v is not None:
            masked_v = random_masking(x_v, mask_ratio_v, noise_v, "unstructured", generator=generator)
            x_v = masked_v.visible
        keep = self.config.keep_register_tokens
        h_a = h_v = None
        if x_a is not None:
            h_a = self.audio_specific(self.add_tokens(x_a, "audio"))
            h_a = h_a if keep else self.drop_registers(h_a)
        if x_v is not None:
            h_v = self.video_specific(self.add_tokens(x_v, "video"))
            h_v = h_v if keep else self.drop_registers(h_v)
        return Encoded(h_a, h_v, masked_a, masked_v)

    def fused_stream(self, h_a: Tensor, h_v: Tensor) -> Tensor:
        """The joint pass for the decoder: patches of both modalities without the global tokens ->
        (B, Ka + Kv, D); with ``keep_register_tokens`` the registers ride along and are stripped afterwards."""
        G = self.num_global
        x = self.joint_stream(h_a[:, G:], h_v[:, G:])
        if not self.config.keep_register_tokens or not self.config.num_register_tokens:
            return x
        R, Ka = self.config.num_register_tokens, h_a.shape[1] - G - self.config.num_register_tokens
        return torch.cat([x[:, :Ka], self.drop_registers(x[:, Ka + R:])], dim=1)

    def contrastive_stream(self, h: Tensor, modality: str) -> tuple[Tensor, Tensor | None]:
        """A modality-only pass: joint blocks with the modality's LN set -> contrastive heads (if any) -> registers
        stripped (if kept) -> the modality's final norm. Returns (patch tokens (B, K, D), global token (B, D) or
        None)."""
        x = run_blocks(self.joint_blocks, h, modality)
        head = self.audio_head if modality == "audio" else self.video_head
        if head is not None:
            x = run_blocks(head, x)
        if self.config.keep_register_tokens:
            x = self.drop_registers(x)
        x = (self.norm_audio if modality == "audio" else self.norm_video)(x)
        G = self.num_global
        return x[:, G:], (x[:, 0] if G else None)


@dataclass
class CAVMAESyncOutput(CAVMAEOutput):
    """:class:`~cavmae_lite.model.CAVMAEOutput` plus the global tokens g_a, g_v (B, D) (None without global
    tokens). ``audio_emb`` / ``video_emb`` are what InfoNCE compared: the global tokens, or the mean patch tokens."""

    global_a: Tensor | None = None
    global_v: Tensor | None = None


class CAVMAESync(PretrainedModel):
    """CAV-MAE Sync pretraining model: one (frame, audio segment) pair per row of the batch."""

    config_class = CAVMAESyncConfig

    def __init__(self, config: CAVMAESyncConfig | None = None):
        super().__init__()
        self.config = config or CAVMAESyncConfig.base()
        if not isinstance(self.config, CAVMAESyncConfig):
            raise TypeError(f"CAVMAESync needs a CAVMAESyncConfig, got {type(self.config).__name__}")
        self.encoder = CAVMAESyncEncoder(self.config)
        self.decoder = JointDecoder(self.config)
        self.apply(init_weights)
        enc, dec = self.encoder, self.decoder
        for p in (enc.audio_modality, enc.video_modality, dec.audio_modality, dec.video_modality, dec.mask_token,
                  enc.audio_global, enc.video_global):
            if p is not None:
                nn.init.normal_(p, std=0.02)

    def forward(self, audio: Tensor, video: Tensor, mask_ratio_a: float = 0.75, mask_ratio_v: float = 0.75,
                noise_a: Tensor | None = None, noise_v: Tensor | None = None, mask_mode: str = "unstructured",
                generator: torch.Generator | None = None, loss_settings: dict | None = None,
                contrast_groups: int = 1) -> CAVMAESyncOutput:
        """audio (B, L, F) normalised segments, video (B, C, H, W) their frames -> :class:`CAVMAESyncOutput`.

        Arguments as :meth:`CAVMAE.forward <cavmae_lite.model.CAVMAE.forward>`. The modality-only passes always
        run (they give the global tokens); InfoNCE on the global tokens (mean patch tokens without them)."""
        c, enc = (self.config.replace(**loss_settings) if loss_settings else self.config), self.encoder
        check_inputs(c, audio, video)
        e = enc.encode(audio, video, mask_ratio_a, mask_ratio_v, noise_a, noise_v, mask_mode, generator)
        zero = audio.new_zeros((), dtype=torch.float32)
        loss_rec_a = loss_rec_v = loss_c = c_acc = zero
        pred_a = pred_v = logits = None
        if c.mae_weight > 0:
            latent = enc.fused_stream(e.audio, e.video)  # (B, Ka + Kv, D)
            Ka = e.masked_a.visible.shape[1]
            pred_a, pred_v = self.decoder(latent, Ka, e.masked_a.ids_restore, e.masked_v.ids_restore)
            loss_rec_a = reconstruction_loss(pred_a, patchify_audio(audio, c.patch_size), e.masked_a.mask, c.norm_pix_loss)
            loss_rec_v = reconstruction_loss(pred_v, patchify_video(video, c.patch_size), e.masked_v.mask, c.norm_pix_loss)
        tokens_a, global_a = enc.contrastive_stream(e.audio, "audio")
        tokens_v, global_v = enc.contrastive_stream(e.video, "video")
        emb_a = global_a if global_a is not None else tokens_a.mean(dim=1)  # (B, D)
        emb_v = global_v if global_v is not None else tokens_v.mean(dim=1)
        if c.contrast_weight > 0:
            nce = info_nce(emb_a, emb_v, c.contrast_temperature, c.bidirectional_contrast,
                           gather=c.contrast_negatives == "global", groups=contrast_groups)
            loss_c, c_acc, logits = nce.loss, nce.accuracy, nce.logits
        loss_rec = loss_rec_a + loss_rec_v
        loss = c.mae_weight * loss_rec + c.contrast_weight * loss_c
        return CAVMAESyncOutput(loss, loss_rec, loss_rec_a, loss_rec_v, loss_c, c_acc, e.masked_a.mask,
                                e.masked_v.mask, pred_a, pred_v, emb_a, emb_v, logits, global_a, global_v)

    def forward_features(self, audio: Tensor | None, video: Tensor | None
                         ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
        """Unmasked features as the released ``forward_feat``: tokens_a (B, La, D), tokens_v (B, Lv, D), global_a
        (B, D), global_v (B, D) (a global is None without global tokens; an output is None for a missing input)."""
        check_inputs(self.config, audio, video)
        e = self.encoder.encode(audio, video)
        ta, ga = (None, None) if e.audio is None else self.encoder.contrastive_stream(e.audio, "audio")
        tv, gv = (None, None) if e.video is None else self.encoder.contrastive_stream(e.video, "video")
        return ta, tv, ga, gv

    @torch.no_grad()
    def embed(self, audio: Tensor | None, video: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """L2-normalised retrieval embeddings (B, D): the global tokens (mean patch tokens without them)."""
        ta, tv, ga, gv = self.forward_features(audio, video)
        pick = lambda t, g: None if t is None else F.normalize(g if g is not None else t.mean(dim=1), dim=-1)  # noqa: E731
        return pick(ta, ga), pick(tv, gv)


def model_for(config) -> PretrainedModel:
    """A fresh pretraining model for ``config``: :class:`CAVMAESync` for a CAVMAESyncConfig, else CAV-MAE's."""
    from .model import CAVMAE

    return CAVMAESync(config) if isinstance(config, CAVMAESyncConfig) else CAVMAE(config)


__all__ = ["CAVMAESync", "CAVMAESyncEncoder", "CAVMAESyncOutput", "model_for"]
