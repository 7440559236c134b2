"""Video: decode N evenly spaced frames with PyAV, resize + centre crop, ImageNet normalisation (spec §2.1, §2.3).

Frames travel as uint8 ``(H, W, 3)`` RGB arrays until :func:`preprocess_frame` turns one into the model's
``(3, S, S)`` float32 input. The steps are the official CAV-MAE frame pipeline, torchvision's own transforms
(:func:`frame_transform`): ``Resize(S, BICUBIC)`` of the shorter side (on a PIL image: PIL's bicubic filter),
``CenterCrop(S)``, ``ToTensor()``, ``Normalize(ImageNet mean, std)``. The cache stores the frames after the
first two (:func:`resize_center_crop`); :func:`normalize_frame` does the last two on uint8 arrays, batched.
torchvision is imported on first use.
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from .audio import MediaError, describe_error, media_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".3gp", ".ts"}

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


# ----- frame geometry ----------------------------------------------------------------------------------------


def to_rgb_array(image) -> np.ndarray:
    """PIL image / (H, W) grey / (H, W, 1|3|4) array -> uint8 (H, W, 3) RGB (alpha dropped, grey repeated)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(a * 255.0 if a.dtype.kind == "f" and a.max() <= 1.0 else a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


@functools.lru_cache(maxsize=16)
def frame_transform(size: int, to_tensor: bool = True):
    """The official frame pipeline as a torchvision ``Compose`` of a PIL RGB image: ``Resize(size, BICUBIC)``,
    ``CenterCrop(size)`` and, with ``to_tensor``, ``ToTensor()`` + ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``
    (a float32 (3, size, size) tensor out; without it, the cropped PIL image)."""
    from torchvision import transforms as T

    steps = [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)]
    if to_tensor:
        steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def _pil_rgb(image):
    from PIL import Image

    a = to_rgb_array(image)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"expected an image with both sides >= 1 px, got {a.shape[1]}x{a.shape[0]}")
    return a, Image.fromarray(a)


def resize_center_crop(image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bicubic), centre-crop ``size x size``; uint8 (size, size, 3) out."""
    a, img = _pil_rgb(image)
    if a.shape[:2] == (size, size):
        return a
    return np.array(frame_transform(size, to_tensor=False)(img))  # writable copy


def normalize_frame(frame_uint8) -> torch.Tensor:
    """uint8 (H, W, 3) or (..., H, W, 3) -> float32 (..., 3, H, W) with ImageNet mean/std.

    The numbers of torchvision's ``ToTensor()`` + ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``, bit for bit, on
    any number of frames at once.
    """
    from torchvision.transforms import functional as TF

    a = np.asarray(frame_uint8)
    if a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape (..., H, W, 3), got shape {a.shape}")
    x = torch.from_numpy(a if a.flags.writeable else a.copy()).movedim(-1, -3)
    out = torch.empty(x.shape, dtype=torch.float32)  # contiguous (..., 3, H, W)
    out.copy_(x)
    return TF.normalize(out.div_(255), IMAGENET_MEAN, IMAGENET_STD, inplace=True)


def preprocess_frame(image, img_size: int = 224) -> torch.Tensor:
    """Any image (PIL, uint8 array, grey/RGBA) -> the model's normalised ``(3, img_size, img_size)`` input."""
    return frame_transform(img_size)(_pil_rgb(image)[1])


def denormalize_frame(x: torch.Tensor) -> torch.Tensor:
    """Normalised (..., 3, H, W) -> (..., H, W, 3) float in [0, 1], ready for ``plt.imshow``."""
    x = x.detach().float().cpu()
    return (x * _STD + _MEAN).clamp(0, 1).movedim(-3, -1)


def load_image(path: str | Path) -> np.ndarray:
    """A frame image on disk (JPEG/PNG, any mode) -> uint8 (H, W, 3)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return to_rgb_array(img)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001
        raise media_error(path, f"cannot read image ({describe_error(e, path)})") from None


# ----- decoding ----------------------------------------------------------------------------------------------


def frame_indices(total: int, num_frames: int) -> list[int]:
    """``floor(i * total / num_frames)`` for i < num_frames: evenly spaced from frame 0, repeating when short."""
    return [math.floor(i * total / num_frames) for i in range(num_frames)]


def _open_video(path: Path):
    import av

    if not path.is_file():
        raise media_error(path, "file not found")
    if path.stat().st_size == 0:
        raise media_error(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001
        raise media_error(path, f"cannot open as a media file ({describe_error(e, path)})") from None
    if not container.streams.video:
        container.close()
        raise media_error(path, "has no video stream (audio-only file?)")
    return container


def _estimated_frame_count(container, max_seconds: float | None) -> int | None:
    vs = container.streams.video[0]
    fps = float(vs.average_rate or vs.guessed_rate or 0) or None
    total = int(vs.frames or 0) or None
    if total is None and fps:
        dur = None
        if vs.duration and vs.time_base:
            dur = float(vs.duration * vs.time_base)
        elif container.duration:
            dur = container.duration / 1_000_000
        if dur:
            total = max(1, round(dur * fps))
    if total is not None and fps and max_seconds:
        total = min(total, max(1, int(fps * max_seconds)))
    return total


def _decode_at(path: Path, indices: list[int]) -> tuple[dict[int, np.ndarray], int, str | None]:
    """Decode sequentially, keep the frames at ``indices``; returns (frames, frames decoded, error or None)."""
    wanted = set(indices)
    last = max(indices) if indices else -1
    got: dict[int, np.ndarray] = {}
    n = 0
    error = None
    container = _open_video(path)
    with container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        try:
            for frame in container.decode(vs):
                if n in wanted:
                    got[n] = frame.to_ndarray(format="rgb24")
                n += 1
                if n > last >= 0:
                    break
        except Exception as e:  # noqa: BLE001 — truncated / corrupt stream: keep what decoded
            error = describe_error(e, path)
    return got, n, error


def load_frames(
    video_path: str | Path, num_frames: int = 10, max_seconds: float | None = 10.0, return_indices: bool = False
):
    """``num_frames`` evenly spaced RGB frames of a video file as uint8 ``(N, H, W, 3)``.

    Indices ``floor(i * T / N)`` where T is the frame count limited to the first ``max_seconds`` (10 frames
    over a 10 s clip = 1 fps from t = 0, as the official extraction). A video with fewer than N frames gives
    repeated frames. If the container's frame count is missing or wrong (truncated files), the frames are
    counted by decoding and the indices recomputed. Raises :class:`MediaError` when no frame decodes.
    With ``return_indices``, returns ``(frames, indices)`` (repeated indices = the video was too short).
    """
    path = Path(video_path)
    container = _open_video(path)
    with container:
        total = _estimated_frame_count(container, max_seconds)
    if total is not None:
        idx = frame_indices(total, num_frames)
        got, n, error = _decode_at(path, idx)
        if all(i in got for i in idx):
            frames = np.stack([got[i] for i in idx])
            return (frames, idx) if return_indices else frames
    # unknown or wrong count: count what really decodes (within max_seconds), then pick again
    got, n, error = _decode_at(path, [])
    if n == 0:
        raise media_error(path, "no video frame could be decoded" + (f" ({error})" if error else ""))
    if total is not None:
        warnings.warn(f"{path}: about {total} frames expected from the container's frame count/duration but {n} decode"
                      + (f" ({error})" if error else "") + "; frames picked among those", stacklevel=2)
    if max_seconds and total is not None:
        n = min(n, total)
    idx = frame_indices(n, num_frames)
    got, _, error = _decode_at(path, idx)
    missing = [i for i in idx if i not in got]
    if missing:
        raise media_error(path, f"frames {missing} could not be decoded" + (f" ({error})" if error else ""))
    frames = np.stack([got[i] for i in idx])
    return (frames, idx) if return_indices else frames


def clip_to_inputs(
    path: str | Path,
    config=None,
    num_frames: int = 10,
    channel: int | str = 0,
    mean: float | None = None,
    std: float | None = None,
) -> dict[str, torch.Tensor]:
    """Any video file -> model inputs: ``audio`` (T, F), ``video`` (3, S, S) middle frame, ``frames`` (N, 3, S, S).

    Sizes from ``config`` (a :class:`~cavmae_lite.config.CAVMAEConfig`; default base: 1024 x 128, 224 px).
    """
    from ..config import CAVMAEConfig
    from .audio import AUDIOSET_MEAN, AUDIOSET_STD, load_fbank

    config = config or CAVMAEConfig.base()
    audio = load_fbank(
        path,
        config.audio_length,
        config.num_mel_bins,
        AUDIOSET_MEAN if mean is None else mean,
        AUDIOSET_STD if std is None else std,
        channel=channel,
    )
    raw = load_frames(path, num_frames)
    frames = normalize_frame(np.stack([resize_center_crop(f, config.img_size) for f in raw]))
    return {"audio": audio, "video": frames[num_frames // 2], "frames": frames}


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MediaError",
    "clip_to_inputs",
    "denormalize_frame",
    "frame_indices",
    "frame_transform",
    "load_frames",
    "load_image",
    "normalize_frame",
    "preprocess_frame",
    "resize_center_crop",
    "to_rgb_array",
]
