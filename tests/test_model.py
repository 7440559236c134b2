"""The model: shapes (base and tiny), the shared joint layer with three LN sets, gradient flow, loss branches,
input checks, the classifier's modes, parameter counts (spec §3, §4, §8)."""

from __future__ import annotations

import re

import pytest
import torch

from cavmae_lite import CAVMAE, CAVMAEClassifier, CAVMAEConfig, CAVMAEOutput
from cavmae_lite.model import ClassifierHead
from tests.helpers import PairedDataset, micro_config

MODES = ["multimodal", "audio_only", "video_only", "missing_video", "missing_audio"]
ALIASES = {"audioonly": "audio_only", "videoonly": "video_only", "missingaudioonly": "missing_video",
           "missingvideoonly": "missing_audio"}


def small_config(**overrides) -> CAVMAEConfig:
    fields = {"img_size": 32, "audio_length": 64, "num_mel_bins": 32, "embed_dim": 32, "num_heads": 2,
              "modality_specific_depth": 2, "joint_depth": 1, "decoder_embed_dim": 16, "decoder_depth": 2,
              "decoder_num_heads": 2}
    fields.update(overrides)
    return CAVMAEConfig(**fields)


def inputs(config: CAVMAEConfig, batch: int = 3, device: str = "cpu"):
    if device == "meta":
        return (torch.empty(batch, config.audio_length, config.num_mel_bins, device="meta"),
                torch.empty(batch, config.in_chans, config.img_size, config.img_size, device="meta"))
    return (torch.randn(batch, config.audio_length, config.num_mel_bins),
            torch.randn(batch, config.in_chans, config.img_size, config.img_size))


@torch.no_grad()
def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(0)
    return CAVMAE(CAVMAEConfig.base()).eval()


@pytest.fixture(scope="module")
def base_meta():
    with torch.device("meta"):
        return CAVMAE(CAVMAEConfig.base()), CAVMAEClassifier(CAVMAEConfig.base(), num_classes=527)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    config = small_config()
    return perturbed(CAVMAE(config)), config


# ----------------------------------------------------------------------------------------------------
# shapes and parameter counts
# ----------------------------------------------------------------------------------------------------


def test_base_parameter_counts(base_model):
    assert base_model.num_params() == 191_036_160
    assert base_model.num_params(trainable_only=True) == 190_129_920
    frozen = {n: p.numel() for n, p in base_model.named_parameters() if not p.requires_grad}
    assert sorted(frozen.values()) == sorted([393_216, 150_528, 262_144, 100_352])
    enc = sum(p.numel() for n, p in base_model.named_parameters() if n.startswith("encoder."))
    assert enc == 164_500_224
    assert sum(p.numel() for p in base_model.encoder.joint_blocks.parameters()) == 7_094_016
    assert sum(p.numel() for p in base_model.decoder.blocks[0].parameters()) == 3_156_480


def test_base_classifier_parameter_counts(base_meta):
    _, clf = base_meta
    assert clf.num_params() == 164_907_023
    assert clf.num_params(trainable_only=True) == 164_907_023  # positional tables trainable in fine-tuning
    assert sum(p.numel() for p in clf.head.parameters()) == 406_799
    vgg_head = sum(p.numel() for p in ClassifierHead(768, 309).parameters())
    assert clf.num_params() - 406_799 + vgg_head == 164_739_381


@torch.no_grad()
def test_base_pretraining_forward_batch_one_on_cpu(base_model):
    audio, video = inputs(base_model.config, batch=1)
    out = base_model(audio, video)
    assert isinstance(out, CAVMAEOutput)
    assert out.mask_a.shape == (1, 512) and out.mask_v.shape == (1, 196)
    assert out.mask_a.sum().item() == 384 and out.mask_v.sum().item() == 147
    assert out.pred_a.shape == (1, 512, 256) and out.pred_v.shape == (1, 196, 768)
    for name in ("loss", "loss_rec", "loss_rec_a", "loss_rec_v", "loss_c", "c_acc"):
        value = getattr(out, name)
        assert value.shape == () and torch.isfinite(value), name
    assert out.audio_emb.shape == (1, 768) and out.logits.shape == (1, 1)


def test_base_features_and_classifier_shapes_on_meta(base_meta):
    model, clf = base_meta
    audio, video = inputs(model.config, batch=2, device="meta")
    a, v = model.forward_features(audio, video)
    assert a.shape == (2, 512, 768) and v.shape == (2, 196, 768)
    ea, ev = model.embed(audio, video)
    assert ea.shape == (2, 768) and ev.shape == (2, 768)
    out = model(audio, video)
    assert out.pred_a.shape == (2, 512, 256) and out.pred_v.shape == (2, 196, 768)
    for mode in MODES + list(ALIASES):
        assert clf(audio, video, mode).shape == (2, 527)
    a, v = clf.forward_features(audio, video)
    assert a.shape == (2, 512, 768) and v.shape == (2, 196, 768)


def test_tiny_shapes():
    config = CAVMAEConfig.tiny()
    model = CAVMAE(config)
    audio, video = inputs(config, batch=2)
    La, Lv = config.num_audio_tokens, config.num_video_tokens
    out = model(audio, video)
    assert out.mask_a.shape == (2, La) and out.mask_v.shape == (2, Lv)
    assert out.pred_a.shape == (2, La, 256) and out.pred_v.shape == (2, Lv, 768)
    assert out.mask_a.sum(1).eq(La - int(La * 0.25)).all()
    a, v = model.forward_features(audio, video)
    assert a.shape == (2, La, config.embed_dim) and v.shape == (2, Lv, config.embed_dim)
    ea, ev = model.embed(audio, video)
    torch.testing.assert_close(ea.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(ev.norm(dim=-1), torch.ones(2))
    assert model.embed(audio, None)[1] is None and model.forward_features(None, video)[0] is None
    clf = CAVMAEClassifier(config, num_classes=10)
    for mode in MODES:
        assert clf(audio, video, mode).shape == (2, 10)


# ----------------------------------------------------------------------------------------------------
# the joint layer: one set of weights, three LayerNorm sets
# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_joint_layer_is_the_same_module_in_all_three_streams(small):
    model, config = small
    block = model.encoder.joint_blocks[0]
    seen = {"attn": [], "mlp": []}
    ln_calls = {}
    hooks = [block.attn.register_forward_hook(lambda m, i, o: seen["attn"].append(i[0].shape[1])),
             block.mlp.register_forward_hook(lambda m, i, o: seen["mlp"].append(i[0].shape[1]))]
    for tag in ("joint", "audio", "video"):
        for which in ("norm1", "norm2"):
            ln = getattr(block, which)[tag]
            hooks.append(ln.register_forward_hook(
                lambda m, i, o, key=(which, tag): ln_calls.setdefault(key, []).append(i[0].shape[1])))
    try:
        audio, video = inputs(config)
        model(audio, video)
    finally:
        for h in hooks:
            h.remove()
    Ka = int(config.num_audio_tokens * 0.25)
    Kv = int(config.num_video_tokens * 0.25)
    # the same attention and MLP weights run three times: joint (Ka + Kv tokens), audio-only, video-only
    assert sorted(seen["attn"]) == sorted([Ka + Kv, Ka, Kv]) == sorted(seen["mlp"])
    # each LayerNorm set is used by exactly its own stream
    assert ln_calls == {("norm1", "joint"): [Ka + Kv], ("norm2", "joint"): [Ka + Kv], ("norm1", "audio"): [Ka],
                        ("norm2", "audio"): [Ka], ("norm1", "video"): [Kv], ("norm2", "video"): [Kv]}
    # one copy of the joint weights; three distinct LayerNorm parameter sets
    assert len(model.encoder.joint_blocks) == 1
    norms = [block.norm1[t].weight for t in ("joint", "audio", "video")]
    assert len({id(w) for w in norms}) == 3


@pytest.mark.parametrize("tag", ["joint", "audio", "video"])
@torch.no_grad()
def test_perturbing_one_ln_set_changes_only_its_stream(small, tag):
    model, config = small
    audio, video = inputs(config)
    na, nv = torch.rand(3, config.num_audio_tokens), torch.rand(3, config.num_video_tokens)

    def run():
        out = model(audio, video, noise_a=na, noise_v=nv)
        a, v = model.forward_features(audio, video)
        return out.pred_a.clone(), out.audio_emb.clone(), out.video_emb.clone(), a.clone(), v.clone()

    before = run()
    ln = model.encoder.joint_blocks[0].norm1[tag]
    saved = ln.weight.clone()
    ln.weight.mul_(1.5)
    try:
        after = run()
    finally:
        ln.weight.copy_(saved)
    changed = [not torch.allclose(b, a) for b, a in zip(before, after)]
    expected = {"joint": [True, False, False, False, False],  # only the reconstruction (joint) stream
                "audio": [False, True, False, True, False],  # only the audio stream
                "video": [False, False, True, False, True]}[tag]
    assert changed == expected


# ----------------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------------

DEAD = re.compile(r"^(encoder\.(audio|video)_blocks|decoder\.blocks)\.\d+\.norm[12]\.(audio|video)\.(weight|bias)$")


def dead_parameter_names(model) -> set[str]:
    """The spec's never-used LayerNorms: the audio / video sets of the modality-specific and decoder blocks."""
    return {n for n, _ in model.named_parameters() if DEAD.match(n)}


def test_dead_parameter_counts_match_the_spec(base_model, base_meta):
    dead = dead_parameter_names(base_model)
    params = dict(base_model.named_parameters())
    assert len(dead) == (11 + 11 + 8) * 2 * 2 * 2
    assert sum(params[n].numel() for n in dead) == 167_936
    clf = base_meta[1]
    clf_params = dict(clf.named_parameters())
    assert sum(clf_params[n].numel() for n in dead_parameter_names(clf)) == 135_168


def test_gradients_reach_every_trainable_parameter_except_the_dead_norms():
    torch.manual_seed(3)
    config = small_config(contrast_weight=0.5)
    model = perturbed(CAVMAE(config))
    audio, video = inputs(config, batch=4)
    model(audio, video).loss.backward()
    no_grad = {n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)}
    assert no_grad == dead_parameter_names(model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"encoder.audio_pos", "encoder.video_pos", "decoder.audio_pos", "decoder.video_pos"}
    assert all(model.get_parameter(n).grad is None for n in frozen)


def test_trainable_positional_tables_get_gradients():
    config = small_config(tr_pos=True)
    model = CAVMAE(config)
    audio, video = inputs(config)
    model(audio, video).loss.backward()
    for name in ("encoder.audio_pos", "encoder.video_pos", "decoder.audio_pos", "decoder.video_pos"):
        p = model.get_parameter(name)
        assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_classifier_gradients_per_mode(mode):
    config = small_config()
    clf = perturbed(CAVMAEClassifier(config, num_classes=4))
    audio, video = inputs(config)
    clf(audio, video, mode).sum().backward()
    no_grad = {n for n, p in clf.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    unused_joint = {"multimodal": ("audio", "video"), "audio_only": ("joint", "video"),
                    "video_only": ("joint", "audio"), "missing_video": ("video",), "missing_audio": ("audio",)}[mode]
    expected = set(dead_parameter_names(clf))
    for tag in unused_joint:
        expected |= {f"encoder.joint_blocks.0.norm{i}.{tag}.{w}" for i in (1, 2) for w in ("weight", "bias")}
        expected |= {f"encoder.norm_{tag}.{w}" for w in ("weight", "bias")}
    if mode in ("audio_only", "missing_video"):
        expected |= {n for n, _ in clf.named_parameters() if n.startswith(("encoder.video_", "encoder.video_blocks"))}
    if mode in ("video_only", "missing_audio"):
        expected |= {n for n, _ in clf.named_parameters() if n.startswith(("encoder.audio_", "encoder.audio_blocks"))}
    assert no_grad == expected


# ----------------------------------------------------------------------------------------------------
# loss branches and totals
# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_total_loss_is_the_weighted_sum():
    config = small_config(mae_weight=0.7, contrast_weight=0.2)
    model = CAVMAE(config)
    out = model(*inputs(config))
    torch.testing.assert_close(out.loss_rec, out.loss_rec_a + out.loss_rec_v)
    torch.testing.assert_close(out.loss, 0.7 * out.loss_rec + 0.2 * out.loss_c)
    assert 0.0 <= out.c_acc.item() <= 1.0


@torch.no_grad()
def test_mae_weight_zero_skips_the_decoder():
    config = small_config(mae_weight=0.0, contrast_weight=0.3)
    model = CAVMAE(config)
    calls = []
    h = model.decoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = model(*inputs(config))
    finally:
        h.remove()
    assert calls == []
    assert out.pred_a is None and out.pred_v is None
    assert out.loss_rec.item() == out.loss_rec_a.item() == out.loss_rec_v.item() == 0.0
    assert out.loss_c.item() > 0
    torch.testing.assert_close(out.loss, 0.3 * out.loss_c)


@torch.no_grad()
def test_contrast_weight_zero_skips_the_contrastive_streams():
    config = small_config(contrast_weight=0.0)
    model = CAVMAE(config)
    calls = []
    hooks = [model.encoder.norm_audio.register_forward_hook(lambda *a: calls.append("a")),
             model.encoder.norm_video.register_forward_hook(lambda *a: calls.append("v"))]
    try:
        out = model(*inputs(config))
    finally:
        for h in hooks:
            h.remove()
    assert calls == []
    assert out.loss_c.item() == 0.0 and out.c_acc.item() == 0.0
    assert out.audio_emb is None and out.video_emb is None and out.logits is None
    torch.testing.assert_close(out.loss, out.loss_rec)
    assert out.pred_a is not None


@torch.no_grad()
def test_same_noise_same_output_and_structured_modes(small):
    model, config = small
    audio, video = inputs(config)
    na, nv = torch.rand(3, config.num_audio_tokens), torch.rand(3, config.num_video_tokens)
    one, two = model(audio, video, noise_a=na, noise_v=nv), model(audio, video, noise_a=na, noise_v=nv)
    assert torch.equal(one.loss, two.loss) and torch.equal(one.pred_a, two.pred_a)
    rows, cols = config.audio_grid
    out = model(audio, video, mask_ratio_a=0.5, noise_a=na, noise_v=nv, mask_mode="time")
    m = out.mask_a.reshape(3, rows, cols)
    assert ((m.sum(1) == rows) | (m.sum(1) == 0)).all()  # 2 of 4 whole time columns
    out = model(audio, video, mask_ratio_a=0.5, noise_a=na, noise_v=nv, mask_mode="freq")
    m = out.mask_a.reshape(3, rows, cols)
    assert ((m.sum(2) == cols) | (m.sum(2) == 0)).all()
    with pytest.raises(ValueError, match="mode"):
        model(audio, video, mask_mode="blocks")


# ----------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("audio_shape,video_shape,expected", [
    ((2, 48, 32), (2, 3, 32, 32), "T=64"),
    ((2, 64, 16), (2, 3, 32, 32), "F=32"),
    ((64, 32), (2, 3, 32, 32), "audio"),
    ((2, 64, 32), (2, 3, 48, 48), "H=W=32"),
    ((2, 64, 32), (2, 1, 32, 32), "C=3"),
    ((2, 64, 32), (3, 32, 32), "video"),
    ((2, 64, 32), (3, 3, 32, 32), "batch"),
])
def test_wrong_input_shapes_raise_with_expected_and_got(small, audio_shape, video_shape, expected):
    model, _ = small
    audio, video = torch.randn(audio_shape), torch.randn(video_shape)
    with pytest.raises(ValueError, match=re.escape(expected)) as e:
        model(audio, video)
    if expected != "batch":
        assert "got shape" in str(e.value)
        got = audio_shape if expected.startswith(("T", "F", "audio")) else video_shape
        assert str(tuple(got)) in str(e.value)
    with pytest.raises(ValueError):
        model.forward_features(audio, video)


def test_classifier_modes_aliases_and_errors():
    torch.manual_seed(0)
    config = small_config()
    clf = perturbed(CAVMAEClassifier(config, num_classes=3)).eval()
    audio, video = inputs(config)
    with torch.no_grad():
        outs = {m: clf(audio, video, m) for m in MODES}
        for alias, name in ALIASES.items():
            assert torch.equal(clf(audio, video, alias), outs[name])
        assert torch.equal(clf(audio, video), outs["multimodal"])
        assert len({tuple(o.flatten().tolist()) for o in outs.values()}) == 5  # five different computations
        assert torch.equal(clf(audio, None, "audio_only"), outs["audio_only"])
        assert torch.equal(clf(None, video, "missing_audio"), outs["missing_audio"])
    with pytest.raises(ValueError, match="mode"):
        clf(audio, video, "audio")
    with pytest.raises(ValueError, match="needs video"):
        clf(audio, None, "multimodal")
    with pytest.raises(ValueError, match="needs audio"):
        clf(None, video, "missing_video")
    with pytest.raises(ValueError, match="T=64"):
        clf(audio[:, :32], None, "audio_only")
    with pytest.raises(ValueError, match="num_classes"):
        CAVMAEClassifier(config, num_classes=0)


def test_positional_tables_frozen_in_pretraining_trainable_in_classifier():
    config = small_config()
    model, clf = CAVMAE(config), CAVMAEClassifier(config, num_classes=2)
    assert not model.encoder.audio_pos.requires_grad and not model.decoder.video_pos.requires_grad
    assert clf.encoder.audio_pos.requires_grad and clf.encoder.video_pos.requires_grad
    assert not any(n.startswith("decoder") for n, _ in clf.named_parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_cpu_attention_matches_sdpa(dtype):
    """The written-out attention used for bf16 / fp16 on the CPU computes what SDPA computes (values and grads)."""
    import torch.nn.functional as F

    from cavmae_lite.layers import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, generator=g) for _ in range(3))
    want = F.scaled_dot_product_attention(q, k, v)
    ql, kl, vl = (t.to(dtype).requires_grad_() for t in (q, k, v))
    got = attention(ql, kl, vl)
    assert got.dtype == dtype and torch.allclose(got.float(), want, atol=3e-2, rtol=3e-2)
    got.float().sum().backward()
    qf = q.clone().requires_grad_()
    F.scaled_dot_product_attention(qf, k, v).sum().backward()
    assert torch.allclose(ql.grad.float(), qf.grad, atol=5e-2, rtol=5e-2)


def test_a_fully_masked_modality_skips_the_contrastive_branch():
    """Mask ratio 1.0 for video (the cross-modal explorer): reconstruction still defined, no NaN from pooling."""
    torch.manual_seed(0)
    model = CAVMAE(CAVMAEConfig.tiny(contrast_weight=1.0)).eval()
    a, v = torch.randn(2, 256, 64), torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        out = model(a, v, mask_ratio_a=0.5, mask_ratio_v=1.0)
    assert bool(out.mask_v.all()) and out.audio_emb is None and float(out.loss_c) == 0.0
    assert torch.isfinite(out.loss) and torch.isfinite(out.loss_rec_v) and out.pred_v.shape == (2, 36, 768)


@pytest.mark.parametrize("cls", [CAVMAE, CAVMAEClassifier])
@torch.no_grad()
def test_save_pretrained_and_from_pretrained_are_methods_of_both_models(cls, tmp_path):
    model = perturbed(cls(small_config())).eval()
    assert model.save_pretrained(tmp_path / "m") == tmp_path / "m"
    loaded = cls.from_pretrained(tmp_path / "m")
    assert type(loaded) is cls and loaded.config == model.config and not loaded.training
    audio, video = inputs(model.config)
    for a, b in zip(model.forward_features(audio, video), loaded.forward_features(audio, video)):
        assert torch.equal(a, b)
    assert loaded.num_params() == model.num_params()


@pytest.mark.parametrize("variant, untrained", [("AV-MAE", ("audio", "video")), ("CAV", ("joint",)),
                                                 ("CAV-MAE", ())])
def test_which_layernorms_a_variant_trains(variant, untrained):
    """contrast_weight 0 (AV-MAE) never runs the single-modality streams, so their LayerNorms (the audio / video
    sets in the joint blocks and norm_audio / norm_video) get no gradient; mae_weight 0 (CAV) likewise leaves the
    joint set and norm_joint untouched. The shared attention / MLP weights get gradients in every variant."""
    change = {"AV-MAE": {"contrast_weight": 0.0}, "CAV": {"mae_weight": 0.0}, "CAV-MAE": {}}[variant]
    model = CAVMAE(micro_config(**change))
    ds = PairedDataset(model.config, n=4)
    model(ds.audio, ds.video).loss.backward()
    enc = model.encoder
    final = {"joint": enc.norm_joint, "audio": enc.norm_audio, "video": enc.norm_video}
    for s in ("joint", "audio", "video"):
        params = [*final[s].parameters()]
        for b in enc.joint_blocks:
            params += [*b.norm1[s].parameters(), *b.norm2[s].parameters()]
        got_grad = [p.grad is not None for p in params]
        assert not any(got_grad) if s in untrained else all(got_grad), (variant, s)
    assert all(p.grad is not None for b in enc.joint_blocks for p in (*b.attn.parameters(), *b.mlp.parameters()))
