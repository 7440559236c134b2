"""Frame preprocessing (spec §2.3) and PyAV decoding of N evenly spaced frames."""

import numpy as np
import pytest
import torch
from PIL import Image

from cavmae_lite.config import CAVMAEConfig
from cavmae_lite.data import (
    IMAGENET_MEAN,
    MediaError,
    clip_to_inputs,
    denormalize_frame,
    load_frames,
    load_image,
    normalize_frame,
    preprocess_frame,
    resize_center_crop,
)
from cavmae_lite.data.video import frame_indices
from tests.media import moving_frames, tone, write_video


@pytest.mark.parametrize("shape", [(48, 64, 3), (61, 37, 3), (7, 5, 3), (30, 30, 4), (33, 45), (33, 45, 1)])
def test_any_image_becomes_a_square_rgb_input(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    x = preprocess_frame(img, 96)
    assert x.shape == (3, 96, 96) and x.dtype == torch.float32


def test_resize_shorter_side_then_centre_crop():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # a white centre band exactly as wide as the crop
    out = resize_center_crop(img, 50)
    assert out.shape == (50, 50, 3)
    assert out[:, 2:-2].min() > 240  # the crop keeps the centre only
    portrait = resize_center_crop(np.zeros((300, 100, 3), np.uint8), 64)
    assert portrait.shape == (64, 64, 3)


def test_bicubic_matches_pil_and_normalisation_roundtrips():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    ref = Image.fromarray(img).resize((128, 96), Image.BICUBIC).crop((16, 0, 112, 96))
    assert np.array_equal(resize_center_crop(img, 96), np.asarray(ref))
    x = preprocess_frame(img, 96)
    back = denormalize_frame(x)
    assert back.shape == (96, 96, 3)
    assert np.abs(back.numpy() * 255 - np.asarray(ref)).max() < 0.6
    grey = np.full((10, 10, 3), 255 * np.array(IMAGENET_MEAN), np.uint8)
    assert preprocess_frame(grey, 16).abs().max() < 0.02  # the ImageNet mean maps to ~0


def test_grey_and_rgba_images_on_disk(tmp_path):
    Image.fromarray(np.full((20, 30), 128, np.uint8), "L").save(tmp_path / "g.jpg")
    Image.fromarray(np.full((20, 30, 4), 200, np.uint8), "RGBA").save(tmp_path / "a.png")
    assert load_image(tmp_path / "g.jpg").shape == (20, 30, 3)
    assert load_image(tmp_path / "a.png").shape == (20, 30, 3)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(MediaError, match=r"bad\.jpg: cannot read image"):
        load_image(tmp_path / "bad.jpg")


def test_frame_indices_follow_the_official_rule():
    assert frame_indices(100, 10) == list(range(0, 100, 10))
    assert frame_indices(12, 10) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert frame_indices(3, 6) == [0, 0, 1, 1, 2, 2]  # fewer frames than asked: repeats


def test_load_frames_evenly_spaced(tmp_path):
    p = write_video(tmp_path / "v.mp4", moving_frames(40, 48, 64), fps=10, audio=tone(4.0)[None])
    frames, idx = load_frames(p, 4, return_indices=True)
    assert frames.shape == (4, 48, 64, 3) and frames.dtype == np.uint8
    assert idx == [0, 10, 20, 30]
    means = frames.reshape(4, -1).mean(1)
    expected = np.array([20 + 200 * i / 40 for i in idx])
    assert np.abs(means - expected).max() < 6  # the right frames, up to h264 loss
    # max_seconds limits the span: 10 frames over the first 2 s = indices 0, 2, 4, ...
    _, idx2 = load_frames(p, 10, max_seconds=2.0, return_indices=True)
    assert idx2 == list(range(0, 20, 2))


def test_load_frames_short_video_repeats(tmp_path):
    p = write_video(tmp_path / "v.mkv", moving_frames(3, 32, 32), fps=10, vcodec="mpeg4", audio=tone(1.0)[None],
                    acodec="pcm_s16le")
    with pytest.warns(UserWarning, match="expected from the container"):  # the audio track is longer
        frames, idx = load_frames(p, 6, return_indices=True)
    assert frames.shape[0] == 6 and idx == [0, 0, 1, 1, 2, 2]


def test_load_frames_errors_name_the_file(tmp_path):
    a = write_video(tmp_path / "audio_only.mp4", None, audio=tone(1.0)[None])
    with pytest.raises(MediaError, match=r"audio_only\.mp4: has no video stream"):
        load_frames(a)
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError, match=r"junk\.mp4: cannot open"):
        load_frames(tmp_path / "junk.mp4")


def test_clip_to_inputs_on_any_video(tmp_path):
    p = write_video(tmp_path / "v.webm", moving_frames(20, 64, 48), fps=10, audio=np.stack([tone(2.0, 48000)] * 2),
                    sample_rate=48000, vcodec="libvpx-vp9", acodec="libopus")
    x = clip_to_inputs(p, CAVMAEConfig.tiny(), num_frames=4)
    assert x["audio"].shape == (256, 64) and x["video"].shape == (3, 96, 96) and x["frames"].shape == (4, 3, 96, 96)
    assert torch.equal(x["video"], x["frames"][2])
    y = clip_to_inputs(p)  # base sizes
    assert y["audio"].shape == (1024, 128) and y["frames"].shape == (10, 3, 224, 224)


def _textured_frames(n: int, height: int, width: int) -> np.ndarray:
    """Gradients, a checkerboard and noise: real picture content for the bicubic filter (overshoot, clipping)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width]
    board = ((yy // 9 + xx // 13) % 2) * 120
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        noise = rng.integers(0, 60, (height, width))
        out[i, ..., 0] = (xx * 255 // width + 40 * i) % 256
        out[i, ..., 1] = np.clip(board + noise, 0, 255)
        out[i, ..., 2] = (yy * 255 // height + noise) % 256
    return out


@pytest.mark.parametrize("height, width", [(240, 320), (352, 256)])
def test_frames_equal_the_official_torchvision_pipeline(tmp_path, height, width):
    """Resize(224, BICUBIC) + CenterCrop(224) + ToTensor() + Normalize(ImageNet), as the official loader builds
    it, on decoded mp4 frames (landscape and portrait, larger than 224) and on a JPEG: the same numbers, exactly."""
    from torchvision import transforms as T

    official = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                          T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    p = write_video(tmp_path / "v.mp4", _textured_frames(10, height, width), fps=10, audio=tone(1.0)[None])
    raw = load_frames(p, 3)
    assert raw.shape == (3, height, width, 3)
    x = clip_to_inputs(p, num_frames=3)  # base sizes: 224 px
    for frame, ours in zip(raw, x["frames"]):
        ref = official(Image.fromarray(frame))
        assert ref.shape == (3, 224, 224) and ref.std() > 0.3  # a real picture, not a flat one
        assert torch.equal(ours, ref)
        assert torch.equal(preprocess_frame(frame, 224), ref)
    # the cache keeps the uint8 frames after the first two steps; normalising them later gives the same tensor
    crop = T.Compose(official.transforms[:2])
    stored = resize_center_crop(raw[1], 224)
    assert np.array_equal(stored, np.asarray(crop(Image.fromarray(raw[1]))))
    assert torch.equal(normalize_frame(stored), official(Image.fromarray(raw[1])))
    # a JPEG on disk, as the official loader opens it
    Image.fromarray(raw[2]).save(tmp_path / "f.jpg", quality=90)
    with Image.open(tmp_path / "f.jpg") as img:
        ref = official(img)
    assert torch.equal(preprocess_frame(load_image(tmp_path / "f.jpg")), ref)
