"""Write small media files with PyAV for the tests (bad-input cases: odd rates, channels, codecs, no track)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 6: "5.1"}
_AUDIO_FORMATS = {"aac": "fltp", "libopus": "flt", "flac": "s16", "pcm_s16le": "s16", "pcm_f32le": "flt",
                  "pcm_s24le": "s32", "mp3": "fltp", "libmp3lame": "fltp"}


def write_video(
    path: str | Path,
    frames: np.ndarray | None,
    fps: int = 10,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    vcodec: str = "libx264",
    acodec: str = "aac",
    pix_fmt: str = "yuv420p",
    frame_format: str = "rgb24",
) -> Path:
    """Write ``frames`` (N, H, W, 3|4) or (N, H, W) uint8 and/or ``audio`` (channels, samples) float in [-1, 1].

    ``frame_format``: the layout of the given arrays for PyAV ("rgb24", "rgba", "gray"); ``pix_fmt``: what
    the codec stores (e.g. "yuv420p" for h264, "rgba"/"gray" for png or ffv1). Either stream may be None.
    """
    import av

    path = Path(path)
    with av.open(str(path), "w") as c:
        vs = aus = None
        if frames is not None:
            vs = c.add_stream(vcodec, rate=fps)
            vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, np.float32))
            layout = _LAYOUTS[audio.shape[0]]
            aus = c.add_stream(acodec, rate=sample_rate, layout=layout)
        if vs is not None:
            for f in frames:
                for p in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format=frame_format)):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
        if aus is not None:
            fmt = _AUDIO_FORMATS.get(acodec, "fltp")
            if fmt == "s16":
                data = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
            elif fmt == "s32":
                data = np.round(np.clip(audio, -1, 1) * 2147483392).astype(np.int32)
            else:
                data = audio
            if not fmt.endswith("p"):  # packed: (1, samples * channels), interleaved
                data = data.T.reshape(1, -1)
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=_LAYOUTS[audio.shape[0]])
            af.sample_rate = sample_rate
            for p in aus.encode(af):
                c.mux(p)
            for p in aus.encode():
                c.mux(p)
    return path


def tone(seconds: float, sample_rate: int = 16000, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    """A sine tone (samples,) float32."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def moving_frames(n: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    """n uint8 frames whose brightness ramps with the index (frame i has mean about 20 + 200 i / n)."""
    out = np.empty((n, height, width, channels) if channels > 1 else (n, height, width), np.uint8)
    for i in range(n):
        out[i] = int(20 + 200 * i / max(n, 1))
    return out


__all__ = ["moving_frames", "tone", "write_video"]
