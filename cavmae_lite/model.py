"""CAV-MAE: the multi-stream encoder, the joint decoder, the pretraining model and the classifier. Base shapes:

    audio (B, 1024, 128) --patch--> (B, 512, 768)      video (B, 3, 224, 224) --patch--> (B, 196, 768)
        + pos + modality, mask 75% -> (B, 128, 768)        + pos + modality, mask 75% -> (B, 49, 768)
        11 audio blocks                                    11 video blocks
                     \\___________ joint block(s), run three ways ___________/
        stream 'audio' (LN set a) + norm_audio      joint: [a, v] (LN set joint) + norm_joint     stream 'video'
        -> c_a = mean (B, 768)                      -> decoder -> pred_a (B, 512, 256),          -> c_v (B, 768)
                                                                  pred_v (B, 196, 768)
Differences from the official code, on purpose:
  * the joint layers are chained in every stream; the official contrastive streams apply only the last joint
    layer to the modality-specific output (identical when ``joint_depth == 1``, the only released setting);
  * ``joint_depth`` is a field of its own; ``loss_c`` in the output is unweighted (the official one is weighted);
  * a branch whose loss weight is 0 is not run (:meth:`CAVMAE.forward`): only compute differs, not the losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import CAVMAEConfig
from .layers import Block, run_blocks
from .losses import info_nce, reconstruction_loss
from .masking import Masked, random_masking, unshuffle
from .tokenizers import PatchEmbed, audio_to_image, patchify_audio, patchify_video, sincos_2d


def _frozen_or_trainable(table: Tensor, trainable: bool) -> nn.Parameter:
    return nn.Parameter(table.unsqueeze(0), requires_grad=trainable)


def check_inputs(config: CAVMAEConfig, audio: Tensor | None, video: Tensor | None) -> None:
    """Raise a ValueError naming the expected and the received shapes."""
    if audio is not None:
        want = (config.audio_length, config.num_mel_bins)
        if audio.dim() != 3 or tuple(audio.shape[1:]) != want:
            raise ValueError(f"audio must be a (B, T, F) fbank with T={want[0]}, F={want[1]} for this config; "
                             f"got shape {tuple(audio.shape)}")
    if video is not None:
        want = (config.in_chans, config.img_size, config.img_size)
        if video.dim() != 4 or tuple(video.shape[1:]) != want:
            raise ValueError(f"video must be (B, C, H, W) frames with C={want[0]}, H=W={want[1]} for this config; "
                             f"got shape {tuple(video.shape)}")
    if audio is not None and video is not None and audio.shape[0] != video.shape[0]:
        raise ValueError(f"audio and video batch sizes differ: {audio.shape[0]} vs {video.shape[0]}")


def init_weights(module: nn.Module) -> None:
    """Spec §3.13: xavier-uniform Linear / patch conv weights, zero Linear bias, LayerNorm (1, 0)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, PatchEmbed):
        nn.init.xavier_uniform_(module.proj.weight.view(module.proj.weight.shape[0], -1))


# ----- Encoder ---------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """One pass of :meth:`CAVMAEEncoder.encode`: the modality-specific outputs before the joint layer(s).

    audio (B, Ka, D), video (B', Kv, D): None for a missing input; Ka = La and Kv = Lv when not masked.
    masked_a, masked_v: the :class:`~cavmae_lite.masking.Masked` of each masked modality (mask, ids_restore), else None.
    """

    audio: Tensor | None
    video: Tensor | None
    masked_a: Masked | None = None
    masked_v: Masked | None = None


class CAVMAEEncoder(nn.Module):
    """Tokenizers, modality-specific stacks, the shared joint stack and its three final LayerNorms."""

    def __init__(self, config: CAVMAEConfig, trainable_pos: bool | None = None):
        super().__init__()
        c, D = config, config.embed_dim
        trainable_pos = c.tr_pos if trainable_pos is None else trainable_pos
        self.config = c
        self.audio_embed = PatchEmbed(1, D, c.patch_size)
        self.video_embed = PatchEmbed(c.in_chans, D, c.patch_size)
        self.audio_pos = _frozen_or_trainable(sincos_2d(D, c.audio_grid), trainable_pos)  # (1, La, D)
        self.video_pos = _frozen_or_trainable(sincos_2d(D, c.video_grid), trainable_pos)  # (1, Lv, D)
        self.audio_modality = nn.Parameter(torch.zeros(1, 1, D))
        self.video_modality = nn.Parameter(torch.zeros(1, 1, D))
        depth = c.modality_specific_depth
        self.audio_blocks = nn.ModuleList(Block(D, c.num_heads, c.mlp_ratio) for _ in range(depth))
        self.video_blocks = nn.ModuleList(Block(D, c.num_heads, c.mlp_ratio) for _ in range(depth))
        self.joint_blocks = nn.ModuleList(Block(D, c.num_heads, c.mlp_ratio) for _ in range(c.joint_depth))
        self.norm_joint = nn.LayerNorm(D)
        self.norm_audio = nn.LayerNorm(D)
        self.norm_video = nn.LayerNorm(D)

    def embed_audio(self, audio: Tensor) -> Tensor:
        """(B, T, F) fbank -> (B, La, D) tokens with positional and modality embeddings added."""
        x = self.audio_embed(audio_to_image(audio))
        return x + self.audio_pos + self.audio_modality

    def embed_video(self, video: Tensor) -> Tensor:
        """(B, C, H, W) frames -> (B, Lv, D) tokens with positional and modality embeddings added."""
        x = self.video_embed(video)
        return x + self.video_pos + self.video_modality

    def audio_specific(self, x: Tensor) -> Tensor:
        """(B, La', D) -> (B, La', D) through the audio-only blocks."""
        return run_blocks(self.audio_blocks, x)

    def video_specific(self, x: Tensor) -> Tensor:
        return run_blocks(self.video_blocks, x)

    def joint_stream(self, *tokens: Tensor) -> Tensor:
        """[audio, video] tokens concatenated -> joint blocks with the joint LN set -> norm_joint: (B, sum L, D)."""
        return self.norm_joint(run_blocks(self.joint_blocks, torch.cat(tokens, dim=1)))

    def audio_stream(self, x: Tensor) -> Tensor:
        """Audio tokens alone -> joint blocks with the audio LN set -> norm_audio: (B, La', D)."""
        return self.norm_audio(run_blocks(self.joint_blocks, x, "audio"))

    def video_stream(self, x: Tensor) -> Tensor:
        """Video tokens alone -> joint blocks with the video LN set -> norm_video: (B, Lv', D)."""
        return self.norm_video(run_blocks(self.joint_blocks, x, "video"))

    def encode(self, audio: Tensor | None, video: Tensor | None, mask_ratio_a: float | None = None,
               mask_ratio_v: float | None = None, noise_a: Tensor | None = None, noise_v: Tensor | None = None,
               mask_mode: str = "unstructured", generator: torch.Generator | None = None) -> Encoded:
        """embed (+ positional + modality) -> mask (when a ratio is given) -> modality-specific blocks, per modality.

        audio (B, T, F) and video (B', C, H, W) may have different batch sizes (frame averaging) and either may be
        None. Masking noise, when not given, is drawn audio first, then video (as the official code). The joint
        and the two contrastive streams take it from here: ``joint_stream(e.audio, e.video)``,
        ``audio_stream(e.audio)``, ``video_stream(e.video)``.
        """
        check_inputs(self.config, audio, None)
        check_inputs(self.config, None, video)
        c = self.config
        masked_a = masked_v = None
        x_a = None if audio is None else self.embed_audio(audio)  # (B, La, D)
        x_v = None if video is None else self.embed_video(video)  # (B', Lv, D)
        if x_a is not None and mask_ratio_a is not None:
            masked_a = random_masking(x_a, mask_ratio_a, noise_a, mask_mode, c.audio_grid, generator)
            x_a = masked_a.visible  # (B, Ka, D)
        if x_v is not None and mask_ratio_v is not None:
            masked_v = random_masking(x_v, mask_ratio_v, noise_v, "unstructured", generator=generator)
            x_v = masked_v.visible  # (B', Kv, D)
        h_a = None if x_a is None else self.audio_specific(x_a)
        h_v = None if x_v is None else self.video_specific(x_v)
        return Encoded(h_a, h_v, masked_a, masked_v)

    def forward_features(self, audio: Tensor | None, video: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """Unmasked token features (B, La, D), (B, Lv, D) from the audio / video streams (official ``forward_feat``).

        Either input may be None, in which case its output is None.
        """
        check_inputs(self.config, audio, video)
        e = self.encode(audio, video)
        a = None if e.audio is None else self.audio_stream(e.audio)
        v = None if e.video is None else self.video_stream(e.video)
        return a, v


# ----- Decoder ---------------------------------------------------------------------------------------------


class JointDecoder(nn.Module):
    """One decoder for both modalities: visible latents + shared mask token -> per-patch predictions."""

    def __init__(self, config: CAVMAEConfig):
        super().__init__()
        c, Dd = config, config.decoder_embed_dim
        self.embed = nn.Linear(c.embed_dim, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.audio_pos = _frozen_or_trainable(sincos_2d(Dd, c.audio_grid), c.tr_pos)
        self.video_pos = _frozen_or_trainable(sincos_2d(Dd, c.video_grid), c.tr_pos)
        self.audio_modality = nn.Parameter(torch.zeros(1, 1, Dd))
        self.video_modality = nn.Parameter(torch.zeros(1, 1, Dd))
        self.blocks = nn.ModuleList(Block(Dd, c.decoder_num_heads, c.mlp_ratio) for _ in range(c.decoder_depth))
        self.norm = nn.LayerNorm(Dd)
        self.head_audio = nn.Linear(Dd, c.audio_patch_dim)
        self.head_video = nn.Linear(Dd, c.video_patch_dim)

    def forward(self, latent: Tensor, num_visible_audio: int, ids_restore_a: Tensor,
                ids_restore_v: Tensor) -> tuple[Tensor, Tensor]:
        """latent (B, Ka + Kv, D) -> pred_a (B, La, p*p), pred_v (B, Lv, p*p*C), every token in original order."""
        x = self.embed(latent)
        x_a = unshuffle(x[:, :num_visible_audio], self.mask_token, ids_restore_a)  # (B, La, Dd)
        x_v = unshuffle(x[:, num_visible_audio:], self.mask_token, ids_restore_v)  # (B, Lv, Dd)
        x_a = x_a + self.audio_pos + self.audio_modality
        x_v = x_v + self.video_pos + self.video_modality
        x = self.norm(run_blocks(self.blocks, torch.cat([x_a, x_v], dim=1)))
        La = x_a.shape[1]
        return self.head_audio(x[:, :La]), self.head_video(x[:, La:])


# ----- Pretraining model (and what it shares with the classifier: encode, loading, saving) -----------------


class PretrainedModel(nn.Module):
    """The base of :class:`CAVMAE` and :class:`CAVMAEClassifier`, which set ``self.encoder`` and ``self.config``."""

    def encode(self, audio: Tensor | None, video: Tensor | None, *args: Any, **kwargs: Any) -> Encoded:
        """embed -> (mask) -> modality-specific blocks; see :meth:`CAVMAEEncoder.encode`."""
        return self.encoder.encode(audio, video, *args, **kwargs)

    def forward_features(self, audio: Tensor | None, video: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """Unmasked features: audio_tokens (B, La, D), video_tokens (B, Lv, D) (official ``forward_feat``)."""
        return self.encoder.forward_features(audio, video)

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @classmethod
    def from_official(cls, path_or_state_dict: str | Path | dict, **overrides: Any):
        """Build from an official checkpoint (``CAVMAE`` pretraining or ``CAVMAEFT`` fine-tuned): sizes inferred from
        the weights, ``overrides`` for what they cannot tell (``num_heads``, ``decoder_num_heads``, ...).

        ``norm_pix_loss`` defaults to True: pass ``norm_pix_loss=False`` for the released ``CAV-MAE-Base-NoNorm``
        (predictions in input units). A classifier from a pretraining checkpoint drops the decoder and gets a fresh
        head (pass ``num_classes``)."""
        from .checkpoints import load_official
        return load_official(cls, path_or_state_dict, **overrides)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu"):
        """The model (in eval mode, on ``device``) saved in ``directory`` by :meth:`save_pretrained`."""
        from .checkpoints import from_pretrained
        return from_pretrained(cls, directory, device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``directory``/config.json + model.safetensors (the Hugging Face hub's layout); returns the folder."""
        from .checkpoints import save_pretrained
        return save_pretrained(self, directory)


@dataclass
class CAVMAEOutput:
    """What :meth:`CAVMAE.forward` returns.

    loss:        mae_weight * loss_rec + contrast_weight * loss_c (the optimised scalar)
    loss_rec:    loss_rec_a + loss_rec_v, unweighted;  loss_rec_a / loss_rec_v: masked MSE per modality
    loss_c:      InfoNCE, unweighted;  c_acc: fraction of videos whose most similar audio is their own
    mask_a (B, La), mask_v (B, Lv): 1 = masked;  pred_a (B, La, p*p), pred_v (B, Lv, p*p*C): all tokens
    audio_emb, video_emb (B, D): pooled contrastive-stream embeddings (None if the branch was skipped)
    logits (B, B), or (G, B/G, B/G) with contrast_groups=G: audio x video similarities / tau (None if skipped)
    """

    loss: Tensor
    loss_rec: Tensor
    loss_rec_a: Tensor
    loss_rec_v: Tensor
    loss_c: Tensor
    c_acc: Tensor
    mask_a: Tensor
    mask_v: Tensor
    pred_a: Tensor | None = None
    pred_v: Tensor | None = None
    audio_emb: Tensor | None = None
    video_emb: Tensor | None = None
    logits: Tensor | None = None


class CAVMAE(PretrainedModel):
    """Contrastive Audio-Visual Masked Autoencoder (pretraining model)."""

    def __init__(self, config: CAVMAEConfig | None = None):
        super().__init__()
        self.config = config or CAVMAEConfig.base()
        self.encoder = CAVMAEEncoder(self.config)
        self.decoder = JointDecoder(self.config)
        self.apply(init_weights)
        for p in (self.encoder.audio_modality, self.encoder.video_modality, self.decoder.audio_modality,
                  self.decoder.video_modality, self.decoder.mask_token):
            nn.init.normal_(p, std=0.02)

    def forward(self, audio: Tensor, video: Tensor, mask_ratio_a: float = 0.75, mask_ratio_v: float = 0.75,
                noise_a: Tensor | None = None, noise_v: Tensor | None = None, mask_mode: str = "unstructured",
                generator: torch.Generator | None = None, loss_settings: dict[str, Any] | None = None,
                contrast_groups: int = 1) -> CAVMAEOutput:
        """audio (B, T, F) normalised fbank, video (B, C, H, W) normalised frames -> :class:`CAVMAEOutput`.

        ``loss_settings``: loss fields of the config (weights, temperature, direction, negatives) to use in place of
        ``self.config``'s for this call (a training run's overrides, validation's local negatives).
        ``contrast_groups=G``: InfoNCE within G consecutive chunks of the batch (:func:`info_nce` ``groups``).

        Deviation: a pass feeding only a loss of weight 0 is skipped (``contrast_weight == 0``: the audio- and
        video-only passes, which the official ``forward_encoder`` runs and then ignores; ``mae_weight == 0``: the joint
        stream and decoder). Losses, gradients and masks are unchanged; only compute is saved; skipped outputs None.

        Noise for masking, when not given, is drawn audio first, then video (as the official code). A modality
        masked entirely (ratio 1.0, the cross-modal explorer of notebook 04) has no tokens to pool into c_a / c_v:
        the contrastive branch is then skipped (``loss_c`` 0, embeddings None); training refuses ratio 1.0.
        """
        c, enc = (self.config.replace(**loss_settings) if loss_settings else self.config), self.encoder
        check_inputs(c, audio, video)
        e = self.encode(audio, video, mask_ratio_a, mask_ratio_v, noise_a, noise_v, mask_mode, generator)
        h_a, h_v, masked_a, masked_v = e.audio, e.video, e.masked_a, e.masked_v  # (B, Ka, D), (B, Kv, D)

        zero = audio.new_zeros((), dtype=torch.float32)
        loss_rec_a = loss_rec_v = loss_c = c_acc = zero
        pred_a = pred_v = audio_emb = video_emb = logits = None
        if c.mae_weight > 0:  # reconstruction branch: joint stream -> decoder
            latent = enc.joint_stream(h_a, h_v)
            pred_a, pred_v = self.decoder(latent, h_a.shape[1], masked_a.ids_restore, masked_v.ids_restore)
            loss_rec_a = reconstruction_loss(pred_a, patchify_audio(audio, c.patch_size), masked_a.mask, c.norm_pix_loss)
            loss_rec_v = reconstruction_loss(pred_v, patchify_video(video, c.patch_size), masked_v.mask, c.norm_pix_loss)
        if c.contrast_weight > 0 and h_a.shape[1] and h_v.shape[1]:  # contrastive branch: streams, mean-pooled
            audio_emb = enc.audio_stream(h_a).mean(dim=1)  # c_a (B, D)
            video_emb = enc.video_stream(h_v).mean(dim=1)  # c_v (B, D)
            gather = c.contrast_negatives == "global"
            nce = info_nce(audio_emb, video_emb, c.contrast_temperature, c.bidirectional_contrast, gather=gather,
                           groups=contrast_groups)
            loss_c, c_acc, logits = nce.loss, nce.accuracy, nce.logits
        loss_rec = loss_rec_a + loss_rec_v
        loss = c.mae_weight * loss_rec + c.contrast_weight * loss_c
        return CAVMAEOutput(loss, loss_rec, loss_rec_a, loss_rec_v, loss_c, c_acc, masked_a.mask, masked_v.mask,
                            pred_a, pred_v, audio_emb, video_emb, logits)

    @torch.no_grad()
    def embed(self, audio: Tensor | None, video: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """Mean-pooled, L2-normalised retrieval embeddings (B, D) for audio and video (spec §6.2)."""
        a, v = self.forward_features(audio, video)
        pool = lambda t: None if t is None else F.normalize(t.mean(dim=1), dim=-1)
        return pool(a), pool(v)


# ----- Classifier (fine-tuning model) ----------------------------------------------------------------------

CLASSIFIER_MODES = ("multimodal", "audio_only", "video_only", "missing_video", "missing_audio")
# the official names; missingaudioonly / missingvideoonly: the missing-modality case with only audio / video present
MODE_ALIASES = {"audioonly": "audio_only", "videoonly": "video_only", "missingaudioonly": "missing_video",
                "missingvideoonly": "missing_audio"}


def canonical_mode(mode: str) -> str:
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in CLASSIFIER_MODES:
        raise ValueError(f"mode must be one of {CLASSIFIER_MODES} (or official {tuple(MODE_ALIASES)}); got {mode!r}")
    return mode


class ClassifierHead(nn.Module):
    """LayerNorm + Linear: (B, D) -> (B, num_classes)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.norm(x))


class CAVMAEClassifier(PretrainedModel):
    """The encoders of CAV-MAE plus a classification head (official ``CAVMAEFT``); no masking, no decoder."""

    def __init__(self, config: CAVMAEConfig | None = None, num_classes: int = 527, trainable_pos: bool = True):
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.config = config or CAVMAEConfig.base()
        self.num_classes = num_classes
        self.encoder = CAVMAEEncoder(self.config, trainable_pos=trainable_pos)
        self.head = ClassifierHead(self.config.embed_dim, num_classes)
        self.apply(init_weights)
        for p in (self.encoder.audio_modality, self.encoder.video_modality):
            nn.init.normal_(p, std=0.02)

    def pooled(self, audio: Tensor | None, video: Tensor | None, mode: str = "multimodal") -> Tensor:
        """The (B, D) vector the head sees, for each mode (spec §4)."""
        mode, enc = canonical_mode(mode), self.encoder
        need_a = mode in ("multimodal", "audio_only", "missing_video")
        need_v = mode in ("multimodal", "video_only", "missing_audio")
        if (need_a and audio is None) or (need_v and video is None):
            raise ValueError(f"mode {mode!r} needs {'audio' if need_a and audio is None else 'video'}, got None")
        check_inputs(self.config, audio if need_a else None, video if need_v else None)
        e = enc.encode(audio if need_a else None, video if need_v else None)
        h_a, h_v = e.audio, e.video
        if mode == "multimodal":
            return enc.joint_stream(h_a, h_v).mean(dim=1)
        if mode == "audio_only":
            return enc.audio_stream(h_a).mean(dim=1)
        if mode == "video_only":
            return enc.video_stream(h_v).mean(dim=1)
        if mode == "missing_video":  # average of the joint-stream and the audio-stream views of the audio
            return (enc.joint_stream(h_a).mean(dim=1) + enc.audio_stream(h_a).mean(dim=1)) / 2
        return (enc.joint_stream(h_v).mean(dim=1) + enc.video_stream(h_v).mean(dim=1)) / 2  # missing_audio

    def forward(self, audio: Tensor | None, video: Tensor | None, mode: str = "multimodal") -> Tensor:
        """audio (B, T, F), video (B, C, H, W) (either may be None if the mode does not use it) -> logits (B, K)."""
        return self.head(self.pooled(audio, video, mode))
