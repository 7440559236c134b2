"""Explorers of notebooks 04 and 05: plain measurement and render functions, called directly (no kernel)."""

import math

import pytest
import torch
import torch.nn.functional as F

from cavmae_lite import CAVMAE, CAVMAEClassifier
from cavmae_lite.masking import random_masking, unshuffle
from cavmae_lite.tutorial import explorers
from cavmae_lite.viz.attention import attention_weights, capture_attention

pytestmark = pytest.mark.usefixtures("close_figures")  # fixtures `close_figures` and `tiny`: tests/conftest.py


@pytest.fixture(scope="module")
def model(tiny):
    torch.manual_seed(0)
    return CAVMAE(tiny).eval()


@pytest.fixture(scope="module")
def batch(tiny):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(4, tiny.audio_length, tiny.num_mel_bins, generator=g),
            torch.randn(4, 3, tiny.img_size, tiny.img_size, generator=g))


# ----- 04: masking every token, the cross-modal forward -------------------------------------------------------


def test_ratio_one_keeps_no_token_and_the_decoder_gets_mask_tokens_only():
    x = torch.randn(2, 36, 5)
    m = random_masking(x, 1.0)
    assert m.visible.shape == (2, 0, 5) and bool(m.mask.all()) and m.ids_keep.shape == (2, 0)
    token = torch.randn(1, 1, 5)
    assert torch.equal(unshuffle(m.visible, token, m.ids_restore), token.expand(2, 36, 5))


def test_cross_modal_forward_is_the_models_reconstruction_branch(model, batch):
    audio, video = batch
    na, nv = explorers.masking_noise(model.config, 4, seed=3)
    out = explorers.cross_modal_forward(model, audio, video, 0.75, 0.5, na, nv)
    with torch.no_grad():
        ref = model(audio, video, 0.75, 0.5, noise_a=na, noise_v=nv)
    assert torch.equal(out.mask_a, ref.mask_a) and torch.equal(out.mask_v, ref.mask_v)
    assert torch.allclose(out.pred_a, ref.pred_a, atol=1e-5) and torch.allclose(out.pred_v, ref.pred_v, atol=1e-5)
    assert math.isclose(out.loss_a, float(ref.loss_rec_a), rel_tol=1e-5)
    assert math.isclose(out.loss_v, float(ref.loss_rec_v), rel_tol=1e-5)
    with torch.no_grad():  # the seed draws the noise as the model's generator does: audio first, then video
        ref_seed = model(audio, video, 0.75, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.mask_a, ref_seed.mask_a) and torch.equal(out.mask_v, ref_seed.mask_v)


def test_whole_modality_removed_its_content_cannot_matter(model, batch):
    audio, video = batch
    out = explorers.cross_modal_forward(model, audio, video, 0.5, 1.0, seed=0)
    other = explorers.cross_modal_forward(model, audio, torch.randn_like(video), 0.5, 1.0, seed=0)
    assert bool(out.mask_v.all()) and torch.isfinite(out.pred_v).all() and math.isfinite(out.loss_v)
    assert torch.equal(out.pred_a, other.pred_a) and torch.equal(out.pred_v, other.pred_v)
    both = explorers.cross_modal_forward(model, audio, video, 1.0, 1.0, seed=0)  # nothing visible at all
    assert torch.isfinite(both.pred_a).all() and torch.allclose(both.pred_a[0], both.pred_a[1], atol=1e-5)
    nothing = explorers.cross_modal_forward(model, audio, video, 0.0, 0.0, seed=0)
    assert nothing.loss_a == 0.0 and nothing.loss_v == 0.0  # nothing removed: nothing scored
    with pytest.raises(ValueError, match="mask mode"):
        explorers.cross_modal_forward(model, audio, video, 0.5, 0.5, mask_mode="random")


def test_cross_modal_study_and_figure(model, batch):
    audio, video = batch
    study = explorers.cross_modal_study(model, audio, video, (0.0, 0.5, 1.0), fixed_ratio=0.75, mask_mode="time")
    for key in ("audio_loss", "audio_loss_wrong", "video_loss", "video_loss_wrong"):
        assert len(study[key]) == 3 and study[key + "_clips"].shape == (3, 4)
        assert math.isclose(study[key][1], float(study[key + "_clips"][1].mean()), rel_tol=1e-6)
    assert torch.equal(study["audio_loss_clips"][-1], study["audio_loss_wrong_clips"][-1])  # ratio 1.0
    assert not torch.equal(study["audio_loss_clips"][0], study["audio_loss_wrong_clips"][0])
    fig = explorers.plot_cross_modal(study, train_ratio=0.3)
    assert fig.axes[0].get_xlabel().startswith("video mask ratio") and "time mask" in fig.axes[0].get_title()


def test_cross_modal_panel_with_a_modality_fully_removed(model, batch):
    clips = [(batch[0][i], batch[1][i]) for i in range(2)]
    fig, info = explorers.render_cross_modal(model, clips, 1, ratio_a=0.5, ratio_v=1.0, mask_mode="freq")
    assert "nothing visible" in fig.get_suptitle() and "with the whole audio removed" in info
    _, info = explorers.render_cross_modal(model, clips, 0, ratio_a=0.0, ratio_v=0.5)
    assert "audio: nothing removed" in info
    panel = explorers.cross_modal_panel(model, clips)
    panel.controls["ratio_v"].value = 1.0
    panel.controls["mask_mode"].value = "tf"
    assert panel.renders == 3 and panel.controls["ratio_v"].max == 1.0


# ----- 05: geometry of the embeddings -------------------------------------------------------------------------


def test_modality_gap_extremes():
    e = F.normalize(torch.randn(6, 8), dim=-1)
    same = explorers.modality_gap(e, e)
    assert same["gap"] < 1e-6 and math.isclose(same["cos_true"], 1.0, rel_tol=1e-6)
    pole = torch.zeros(6, 8)
    pole[:, 0] = 1
    opposite = explorers.modality_gap(pole, -pole)
    assert math.isclose(opposite["gap"], 2.0) and opposite["cos_random"] == -1.0 and opposite["cos_audio"] == 1.0


def test_masked_view_at_ratio_zero_is_the_retrieval_embedding(model, batch):
    a, v = explorers.masked_view_embeddings(model, *batch, 0.0, 0.0)
    ref_a, ref_v = model.embed(*batch)
    assert torch.allclose(a, ref_a, atol=1e-5) and torch.allclose(v, ref_v, atol=1e-5)
    a3, _ = explorers.masked_view_embeddings(model, *batch, 0.75, 0.3, seed=1)
    assert a3.shape == a.shape and not torch.allclose(a3, a)
    with pytest.raises(ValueError, match="ratios"):
        explorers.masked_view_embeddings(model, *batch, 1.0, 0.0)


# ----- 05: retrieval gallery ----------------------------------------------------------------------------------


def test_top_k_and_partner_rank_count_ties_against():
    s = torch.tensor([0.1, 0.9, 0.5, 0.9])
    idx, vals = explorers.top_k(s, 3)
    assert idx.tolist() == [1, 3, 2] and vals.tolist() == pytest.approx([0.9, 0.9, 0.5])
    assert explorers.partner_rank(s, 1) == 2 and explorers.partner_rank(s, 2) == 3 and explorers.partner_rank(s, 0) == 4


def test_render_retrieval_both_directions_and_sounds(tiny):
    n = 6
    sim = torch.eye(n) * 0.5 + torch.linspace(0, 0.1, n)[None]  # clip 5's video is best for every audio but 5
    frames, fbanks = torch.randn(n, 3, 96, 96), torch.randn(n, tiny.audio_length, tiny.num_mel_bins)
    fig, info = explorers.render_retrieval(sim, frames, fbanks, query=2, direction="a2v", k=3)
    assert len(fig.axes) == 4 and "rank <b>1</b> of 6" in info and "true partner" in fig.axes[1].get_title()
    fig, info = explorers.render_retrieval(sim.T.contiguous(), frames, fbanks, query=2, direction="v2a", k=3)
    assert fig.axes[1].get_xlabel() == "time (s)" and "video query" in info
    assert explorers.retrieval_sounds(sim, 2, "a2v") == [("query: audio of clip 2", 2)]
    sounds = explorers.retrieval_sounds(sim.T.contiguous(), 2, "v2a", k=3)  # audio 5, then 4, score best after 2
    assert [j for _, j in sounds] == [2, 5, 4] and "true partner" in sounds[0][0]
    with pytest.raises(ValueError, match="direction"):
        explorers.render_retrieval(sim, frames, fbanks, direction="both")
    own = explorers.plot_retrieval(torch.rand(n), frames, "video", k=2, query=fbanks[0], query_title="my clip")
    assert own.axes[0].get_title() == "my clip" and len(own.axes) == 3  # notebook 08: a query of one's own


def test_retrieval_gallery_panel_tracks_its_sounds(tiny):
    n = 4
    sim = torch.eye(n)
    waves = []
    panel = explorers.retrieval_gallery(sim, torch.randn(n, 3, 96, 96), torch.randn(n, tiny.audio_length, 64),
                                        lambda j: waves.append(j) or torch.zeros(100), k=2)
    assert panel.last_sounds == [("query: audio of clip 0", 0)]
    panel.controls["direction"].value = "v2a"
    panel.controls["query"].value = 3
    assert [j for _, j in panel.last_sounds][0] == 3 and "rank <b>1</b>" in panel.last_info
    assert panel.sound_output in panel.widget.children
    player = explorers.audio_player(torch.full((800,), 0.25))
    assert player.data[:4] == b"RIFF"


# ----- 05: generative factors, probes, the ideal perceiver ----------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, tiny):
    from cavmae_lite.data import load_dataset, make_synthetic

    out = make_synthetic(tmp_path_factory.mktemp("syn") / "d", seed=3, num_train=2, num_val=0, num_test=6, mp4=0,
                         workers=1, progress=False)
    return load_dataset(out, config=tiny, split="test", cache=False)


def test_attributes_align_with_the_dataset_and_the_generator(synthetic):
    import numpy as np

    from cavmae_lite.data.synthetic import SHAPES, draw_attributes

    attrs = explorers.load_attributes(synthetic)
    assert {a for a, *_ in explorers.ATTRIBUTE_PAIRS} == set(draw_attributes(np.random.default_rng(0)))
    assert set(explorers.DISCRETE + explorers.CONTINUOUS) == {a for a, *_ in explorers.ATTRIBUTE_PAIRS}
    assert len(attrs["hue"]) == len(synthetic) and torch.allclose(attrs["log_aspect"], attrs["aspect"].log())
    shape_of_label = [synthetic.mids[int(synthetic[i]["label"])].split("_")[0] for i in range(len(synthetic))]
    assert [SHAPES[int(s)] for s in attrs["shape"]] == shape_of_label
    part = torch.utils.data.Subset(torch.utils.data.Subset(synthetic, [5, 1, 3]), [2, 0])  # items 3 and 5
    assert torch.equal(explorers.load_attributes(part)["hue"], attrs["hue"][[3, 5]])
    table = explorers.attribute_table_markdown()
    assert table.count("\n") == 1 + len(explorers.ATTRIBUTE_PAIRS) and "| **hue** |" in table
    assert "Hz" in explorers.describe_clip(attrs, 0)
    frames = torch.stack([synthetic[i]["video"] for i in range(2)])
    fbanks = torch.stack([synthetic[i]["audio"] for i in range(2)])
    fig = explorers.plot_attribute_gallery(frames, fbanks, attrs, [0, 1])
    sounds = [ax for ax in fig.axes if ax.get_xlabel() == "time (s)"]
    assert len(sounds) == 2 and sounds[0].images[0].get_clim() == sounds[1].images[0].get_clim()  # one scale
    assert fig.axes[-1].get_ylabel() == "normalised log-mel (a.u.)"
    wave = explorers.clip_waveform(synthetic, 0)
    assert wave.dim() == 1 and wave.shape[0] > 16_000


def test_seen_in_training_flags_the_fast_sets_test_clips(tmp_path):
    import json

    card = {"recipe": {"data": {"generator": "g", "seed": 0, "sizes": [3000, 300, 600]}}}
    stamp = {"generator": "g", "seed": 0, "splits": {"train": 480, "val": 60, "test": 120}}
    (tmp_path / "synthetic.json").write_text(json.dumps(stamp))
    assert explorers.split_seen_in_training(tmp_path, card) is True  # older numbering: test00000 is clip 540 < 3000
    (tmp_path / "synthetic.json").write_text(json.dumps({**stamp, "first_index": {"train": 0, "val": 3000,
                                                                                   "test": 3300}}))
    assert explorers.split_seen_in_training(tmp_path, card) is False  # today's numbering: full-set test clips
    (tmp_path / "synthetic.json").write_text(json.dumps({**stamp, "splits": {"train": 3000, "val": 300, "test": 600}}))
    assert explorers.split_seen_in_training(tmp_path, card) is False
    (tmp_path / "synthetic.json").write_text(json.dumps({**stamp, "seed": 1}))
    assert explorers.split_seen_in_training(tmp_path, card) is False
    assert explorers.split_seen_in_training(tmp_path / "nowhere", card) is None
    # a model trained on 15,000 clips: train clips 3,000 on continue after the test block (3,300-3,899)
    big = {"recipe": {"data": {"generator": "g", "seed": 0, "sizes": [15000, 300, 600]}}}
    (tmp_path / "synthetic.json").write_text(json.dumps({**stamp, "first_index": {"train": 0, "val": 3000,
                                                                                   "test": 3300}}))
    assert explorers.split_seen_in_training(tmp_path, big) is False
    (tmp_path / "synthetic.json").write_text(json.dumps({**stamp, "first_index": {"train": 0, "val": 3000,
                                                                                   "test": 3900}}))
    assert explorers.split_seen_in_training(tmp_path, big) is True  # clips the larger train split holds


def test_ideal_perceiver_is_distinct_groups_over_n():
    attrs = {"shape": torch.tensor([0, 0, 0, 1, 1, 2]), "count": torch.tensor([1, 1, 2, 1, 1, 1]),
             "hue": torch.tensor([0.1, 0.7, 0.1, 0.1, 0.1, 0.1]), "size": torch.full((6,), 0.5),
             "log_aspect": torch.zeros(6)}
    # shape x count only: groups {0,1}, {2}, {3,4}, {5} -> (1/2 + 1/2 + 1 + 1/2 + 1/2 + 1) / 6 = 4 / 6
    assert explorers.ideal_perceiver_r1(attrs, levels=1) == pytest.approx(4 / 6)
    assert explorers.ideal_perceiver_r1(attrs, levels=2) == pytest.approx(5 / 6)  # hue 0.1 vs 0.7 splits {0, 1}
    assert explorers.ideal_perceiver_r1(attrs, levels=None) == pytest.approx(5 / 6)
    assert explorers.ideal_perceiver_r1(attrs, attributes=("shape",)) == pytest.approx(3 / 6)


def test_ridge_and_probes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0])
    assert explorers.ridge_r2(x[:150], y[:150], x[150:], y[150:], weight_decay=1e-6) > 0.999
    assert explorers.ridge_r2(x[:150], torch.randn(150, generator=g), x[150:], torch.randn(50, generator=g)) < 0.1
    attrs = {"shape": torch.arange(200) % 4, "count": 1 + torch.arange(200) % 4, "hue": y, "size": -y,
             "aspect": torch.randn(200, generator=g).exp()}
    feats = {"audio": torch.cat([F.one_hot(attrs["shape"], 4).float(), x], 1)}
    res = explorers.attribute_probes({"audio": feats["audio"][:150]}, {"audio": feats["audio"][150:]},
                                     {k: v[:150] for k, v in attrs.items()}, {k: v[150:] for k, v in attrs.items()},
                                     features=("audio",))
    assert res["shape"]["audio"] == 1.0 and res["count"]["audio"] == 1.0  # one-hot shape, count = shape + 1
    assert res["hue"]["audio"] > 0.85 and res["size"]["audio"] > 0.85  # quartile bins of a linear function
    assert res["aspect"]["audio"] < res["aspect"]["majority"] + 0.15  # independent of the features: near chance
    assert all(0.25 <= r["majority"] <= 0.5 for r in res.values())


def test_attribute_classes_are_train_quartiles():
    train, test = torch.arange(100, dtype=torch.float64), torch.tensor([-5.0, 24.0, 25.0, 60.0, 1e3])
    y_tr, y_te = explorers.attribute_classes("hue", train, test)
    assert torch.bincount(y_tr).tolist() == [25, 25, 25, 25] and y_te.tolist() == [0, 0, 1, 2, 3]
    y_tr, y_te = explorers.attribute_classes("count", torch.tensor([1, 4]), torch.tensor([2]))
    assert y_tr.tolist() == [0, 3] and y_te.tolist() == [1]


def test_joint_features_are_the_multimodal_classifier_input(model, batch):
    feats = explorers.clip_features(model, *batch, batch_size=3)
    clf = CAVMAEClassifier(model.config, num_classes=2).eval()
    clf.encoder.load_state_dict(model.encoder.state_dict())
    with torch.no_grad():
        assert torch.allclose(feats["joint"], clf.pooled(*batch, mode="multimodal"), atol=1e-5)
        assert torch.allclose(feats["audio"], clf.pooled(batch[0], None, mode="audio_only"), atol=1e-5)
    ref_a, _ = model.embed(*batch)
    assert torch.allclose(F.normalize(feats["audio"], dim=-1), ref_a, atol=1e-5)


# ----- 05: attention and patch maps ---------------------------------------------------------------------------


def test_captured_attention_reproduces_the_block(model):
    attn = model.encoder.joint_blocks[0].attn
    x = torch.randn(2, 10, model.config.embed_dim)
    with torch.no_grad(), capture_attention(attn) as rec:
        y = attn(x)
        attn(x[:1])
    assert len(rec) == 2 and rec[0].shape == (2, model.config.num_heads, 10, 10)
    assert torch.allclose(rec[0].sum(-1), torch.ones(2, model.config.num_heads, 10), atol=1e-5)
    from einops import rearrange

    v = rearrange(attn.qkv(x), "b n (three h d) -> three b h n d", three=3, h=attn.num_heads)[2]
    with torch.no_grad():
        rebuilt = attn.proj(rearrange(rec[0] @ v, "b h n d -> b n (h d)"))
    assert torch.allclose(rebuilt, y, atol=1e-5)  # the recomputed weights are the ones the block used
    assert torch.equal(attention_weights(attn, x), rec[0])
    with torch.no_grad():
        attn(x)
    assert len(rec) == 2  # the hook is gone after the with-block


def test_maps_and_object_fraction(model, batch):
    audio, video = batch
    sim = explorers.patch_similarity(model, audio, video)
    att = explorers.joint_attention(model, audio, video)
    c = model.config
    assert sim.shape == (4, c.num_video_tokens) and float(sim.abs().max()) <= 1 + 1e-5
    assert att.shape == (4, c.num_heads, c.num_audio_tokens, c.num_video_tokens) and float(att.sum(-1).max()) <= 1 + 1e-5
    from cavmae_lite.data import normalize_frame

    img = torch.full((96, 96, 3), 128, dtype=torch.uint8)  # grey: saturation 0
    img[:16, :32] = torch.tensor([230, 30, 30], dtype=torch.uint8)  # a saturated red block over patches 0 and 1
    frac = explorers.object_fraction(normalize_frame(img.numpy())[None], 16)
    assert frac.shape == (1, 36) and frac[0, :2].tolist() == [1.0, 1.0] and float(frac[0, 2:].sum()) == 0.0
    stats = explorers.source_map_stats(model, audio, video)
    assert set(stats) >= {"sim_object", "sim_background", "att_video", "att_object", "area_object"}


def test_source_map_panel(model, batch):
    clips = [(batch[0][i], batch[1][i]) for i in range(2)]
    fig, info = explorers.render_source_maps(model, clips, 1, audio_token=5, head=0)
    assert len(fig.axes) >= 4 and "head 0" in fig.axes[3].get_title() and "audio token 5" in info
    panel = explorers.source_map_panel(model, clips)
    panel.controls["audio_token"].value = 63
    assert panel.renders == 2 and panel.controls["head"].min == -1
