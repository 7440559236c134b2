"""One synthetic clip, rendered from its hidden attributes: the waveform, the frames and an mp4.

The attributes (shape, hue, size, count, aspect) and how each one shows in the picture and in the sound are
tabled in :mod:`.synthetic`, which writes whole datasets of these clips. Everything here is a pure function of
a numpy random generator: :func:`make_clip` of ``(seed, index)`` always gives the same arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SR = 16000
DURATION = 2.6  # s: 41,600 samples -> 258 fbank frames (>= 256 for the tiny config)
NUM_SAMPLES = int(SR * DURATION)
IMG = 96  # frame size written (the tiny config's img_size; base loaders resize to 224)
NUM_FRAMES = 5  # per clip; the middle one (index 2) is the evaluation frame
SCENE_FPS = 10  # the scene's time base: frame i of K shows time floor(i * 26 / K) / 10 s, as in the mp4
SHAPES = ("circle", "square", "triangle", "star")
TIMBRES = ("sine", "square", "saw", "bell")
MAX_COUNT = 4
EVENTS = "lit, pitch by height v1"  # the events variant's version, in synthetic.json
EVENT_OCTAVES = 1.0  # events variant: beep b sounds this many octaves higher per frame height its object sits higher

_PARTIALS = {  # (frequency ratio, weight); weights renormalised to equal RMS
    "sine": [(1.0, 1.0)],
    "square": [(k, 1.0 / k) for k in (1, 3, 5, 7, 9, 11)],
    "saw": [(k, 1.0 / k) for k in range(1, 11)],
    "bell": [(1.0, 1.0), (2.76, 0.6), (5.40, 0.4), (8.93, 0.25)],
}
_DECAY = {"sine": 2.0, "square": 2.0, "saw": 2.0, "bell": 9.0}  # 1/s exponential decay during a beep


# ----- attributes --------------------------------------------------------------------------------------------


def draw_attributes(rng: np.random.Generator) -> dict:
    shape = int(rng.integers(len(SHAPES)))
    count = int(rng.integers(1, MAX_COUNT + 1))
    hue = float(rng.uniform(0.0, 0.8))
    size = float(rng.uniform(0.0, 1.0))
    aspect = float(np.exp(rng.uniform(-1.0, 1.0) * np.log(1.6)))
    return {"shape": shape, "count": count, "hue": hue, "size": size, "aspect": aspect}


# ----- audio -------------------------------------------------------------------------------------------------


def render_audio(attr: dict, rng: np.random.Generator, shifts: list[float] | None = None
                 ) -> tuple[np.ndarray, dict, list[tuple[float, float]]]:
    """The waveform (NUM_SAMPLES,) float32, its info and each beep's (start, duration) in seconds.

    shifts: octaves added to beep b's pitch (the events variant); the random draws do not depend on them."""
    timbre = TIMBRES[attr["shape"]]
    f0 = 200.0 * 2.0 ** (3.0 * attr["hue"] / 0.8 + rng.normal(0, 0.02))
    gain_db = -24.0 + 18.0 * attr["size"] + rng.normal(0, 1.0)
    glide = 0.5 * np.log(attr["aspect"]) / np.log(1.6)  # octaves over one beep
    partials = [(r, w) for r, w in _PARTIALS[timbre] if r * f0 * 2 ** max(glide, 0) < 7600]
    norm = 1.0 / np.sqrt(sum(w * w for _, w in partials) / 2) / 2.5
    wave = np.zeros(NUM_SAMPLES, np.float32)
    onset = rng.uniform(0.05, 0.5)
    beeps = []
    ratios = np.array([r for r, _ in partials], np.float32)[:, None]
    weights = np.array([w for _, w in partials], np.float32) * np.float32(norm)
    for b in range(attr["count"]):
        dur = rng.uniform(0.18, 0.28)
        start = int((onset + b * rng.uniform(0.45, 0.55)) * SR)
        n = min(int(dur * SR), NUM_SAMPLES - start)
        beeps.append((start / SR, n / SR))
        t = np.arange(n) / SR
        fb = f0 * 2.0 ** (shifts[b] if shifts else 0.0)
        freq = fb * 2.0 ** (glide * (t / dur - 0.5))
        phase = (2 * np.pi * np.cumsum(freq) / SR + rng.uniform(0, 2 * np.pi)).astype(np.float32)
        below = (ratios[:, 0] * fb * 2 ** max(glide, 0) < 7600).astype(np.float32)  # no partial above 7.6 kHz
        tone = (weights * below) @ np.sin(ratios * phase[None, :])
        env = np.minimum(1.0, t / 0.008) * np.minimum(1.0, (dur - t) / 0.025) * np.exp(-_DECAY[timbre] * t)
        wave[start : start + n] += tone * env.astype(np.float32)
    wave *= np.float32(10 ** (gain_db / 20))
    # background noise of random colour (spectrum ~ f^-beta) and level, sometimes a mains-like hum
    spec = np.fft.rfft(rng.standard_normal(NUM_SAMPLES, dtype=np.float32))
    spec *= np.maximum(np.arange(spec.size, dtype=np.float32), 1.0) ** np.float32(-rng.uniform(0.0, 1.5) / 2)
    noise = np.fft.irfft(spec, NUM_SAMPLES).astype(np.float32)
    noise *= np.float32(10 ** (rng.uniform(-50, -34) / 20) / (noise.std() + 1e-12))
    wave += noise
    if rng.random() < 0.3:
        fh = rng.uniform(50, 120)
        ph = (2 * np.pi * fh / SR) * np.arange(NUM_SAMPLES, dtype=np.float32)
        wave += np.float32(10 ** (rng.uniform(-42, -32) / 20)) * (np.sin(ph) + np.float32(0.5) * np.sin(2 * ph))
    info = {"timbre": timbre, "f0_hz": round(float(f0), 2), "gain_db": round(float(gain_db), 2),
            "glide_oct": round(float(glide), 3), "onset_s": round(float(onset), 3)}
    return wave, info, beeps


# ----- picture -----------------------------------------------------------------------------------------------


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-saturation texture: two gratings plus smooth noise, mixed between two random dull colours."""
    from PIL import Image

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tex = np.zeros((h, w), np.float32)
    for _ in range(2):
        ang, freq, ph = rng.uniform(0, np.pi), rng.uniform(0.05, 0.35), rng.uniform(0, 2 * np.pi)
        tex += rng.uniform(0.2, 1.0) * np.sin(freq * (xx * np.cos(ang) + yy * np.sin(ang)) + ph)
    coarse = (rng.random((8, 8)) * 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.float32) / 255.0
    tex = 0.5 + 0.25 * tex / 2.0 + rng.uniform(0.3, 0.8) * (smooth - 0.5)
    tex = np.clip(tex, 0, 1)[:, :, None]
    c1 = _hsv_to_rgb(rng.random(), rng.uniform(0, 0.25), rng.uniform(0.2, 0.6))
    c2 = _hsv_to_rgb(rng.random(), rng.uniform(0, 0.25), rng.uniform(0.4, 0.8))
    return c1 * (1 - tex) + c2 * tex


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in unit coordinates (u right, v down; circumradius 1)."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":  # pointing up, inradius 0.5, shifted down by 0.15 to look centred
        v = v - 0.15
        return (v <= 0.5) & (0.866 * u - 0.5 * v <= 0.5) & (-0.866 * u - 0.5 * v <= 0.5)
    # five-pointed star: fold the angle into one half-spike, test against its edge
    rho = np.hypot(u, v)
    psi = np.mod(np.arctan2(u, -v), 2 * np.pi / 5)
    phi = np.minimum(psi, 2 * np.pi / 5 - psi)
    px, py = rho * np.cos(phi), rho * np.sin(phi)
    ri = 0.45
    qx, qy = ri * np.cos(np.pi / 5), ri * np.sin(np.pi / 5)
    nx, ny = qy, 1.0 - qx  # outward normal of the edge (1, 0) -> (qx, qy)
    return nx * px + ny * py <= nx * 1.0


def _draw(img: np.ndarray, shape: str, cx: float, cy: float, hw: float, hh: float, color: np.ndarray) -> None:
    """Anti-aliased (2 x 2 supersampled) object, alpha-blended into img (H, W, 3) float in place."""
    h, w = img.shape[:2]
    x0, x1 = max(int(cx - hw) - 1, 0), min(int(cx + hw) + 2, w)
    y0, y1 = max(int(cy - hh) - 1, 0), min(int(cy + hh) + 2, h)
    if x0 >= x1 or y0 >= y1:
        return
    ys = (np.arange(y0 * 2, y1 * 2, dtype=np.float32) + 0.5) / 2
    xs = (np.arange(x0 * 2, x1 * 2, dtype=np.float32) + 0.5) / 2
    inside = _shape_mask(shape, ((xs - cx) / hw)[None, :], ((ys - cy) / hh)[:, None])
    alpha = inside.reshape(y1 - y0, 2, x1 - x0, 2).mean(axis=(1, 3), dtype=np.float32)[:, :, None]
    patch = img[y0:y1, x0:x1]
    patch += alpha * (color - patch)


def scene_layout(attr: dict, rng: np.random.Generator) -> dict:
    """Object geometry and motion, colour, background seed: everything needed to draw any time t."""
    r = 8.0 + 8.0 * attr["size"]
    hw, hh = r * np.sqrt(attr["aspect"]), r / np.sqrt(attr["aspect"])
    pos = []
    for _ in range(attr["count"]):
        for _try in range(30):
            p = rng.uniform([hw + 2, hh + 2], [IMG - hw - 2, IMG - hh - 2])
            if all(abs(p[0] - q[0]) > 2 * hw or abs(p[1] - q[1]) > 2 * hh for q in pos):
                break
        pos.append(p)
    vel = rng.uniform(-6, 6, size=(attr["count"], 2))  # px per second
    color = _hsv_to_rgb(attr["hue"] + rng.normal(0, 0.01), rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
    return {"hw": hw, "hh": hh, "pos": np.array(pos), "vel": vel, "color": color,
            "bg_seed": int(rng.integers(2**31)), "noise_seed": int(rng.integers(2**31))}


def lit_object(beeps: list[tuple[float, float]], t: float) -> int | None:
    """The object that lights up at time t: object b while beep b sounds (and 50 ms after), else None."""
    for b, (start, dur) in enumerate(beeps):
        if start <= t < start + dur + 0.05:
            return b
    return None


def object_positions(layout: dict, t: float) -> np.ndarray:
    """(count, 2) x, y centres (px) of the objects at time t (s): drift, reflected at the borders."""
    lo = np.array([layout["hw"], layout["hh"]])
    q = layout["pos"] + layout["vel"] * t
    span = np.array([IMG, IMG]) - 2 * lo
    return lo + np.abs(np.mod(q - lo + span, 2 * span) - span)


def render_frame(attr: dict, layout: dict, t: float, bg: np.ndarray, rng: np.random.Generator,
                 margin: int = 0, lit: int | None = None) -> np.ndarray:
    """uint8 (IMG, IMG + 2 margin, 3) picture of the scene at time t (s); object ``lit`` drawn lit up (brighter,
    whiter and 25 % larger: the events variant's picture of its beep)."""
    img = bg.copy() * np.float32(rng.uniform(0.93, 1.07))
    shape = SHAPES[attr["shape"]]
    for b, q in enumerate(object_positions(layout, t)):
        grow, color = 1.0, layout["color"]
        if b == lit:
            grow, color = 1.25, color + np.float32(0.6) * (1 - color)
        _draw(img, shape, q[0] + margin, q[1], layout["hw"] * grow, layout["hh"] * grow, color)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.015)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def frame_times(num_frames: int, duration: float = DURATION) -> list[float]:
    """Scene times of the K stored frames: those load_frames picks from the mp4 (SCENE_FPS, K evenly spaced)."""
    total = round(duration * SCENE_FPS)
    return [int(np.floor(i * total / num_frames)) / SCENE_FPS for i in range(num_frames)]


# ----- one clip ----------------------------------------------------------------------------------------------

MP4_MARGIN = 16


def make_clip(seed: int, index: int, num_frames: int = NUM_FRAMES, events: bool = False) -> dict:
    """Attributes, waveform (NUM_SAMPLES,) float32 and ``num_frames`` uint8 (IMG, IMG, 3) frames of clip ``index``.

    events: the events variant (CAV-MAE Sync's data): object b lights up while beep b sounds, and beep b sounds
    higher the higher object b sits in the frame (:data:`EVENT_OCTAVES` per frame height, from the middle), so which
    moment of the sound goes with which frame can be seen and heard. Every random draw is the same clip's: the frames
    between beeps, the beep times and the noise are the plain clip's."""
    rng = np.random.default_rng([seed, index])
    attr = draw_attributes(rng)
    before_audio = rng.bit_generator.state
    wave, info, beeps = render_audio(attr, rng)
    layout = scene_layout(attr, rng)
    if events:  # the same draws again, each beep at its object's pitch
        again = np.random.default_rng()
        again.bit_generator.state = before_audio
        shifts = [EVENT_OCTAVES * (0.5 - object_positions(layout, start)[b, 1] / IMG) for b, (start, _) in
                  enumerate(beeps)]
        wave, info, beeps = render_audio(attr, again, shifts)
    bg = _background(np.random.default_rng(layout["bg_seed"]), IMG, IMG + 2 * MP4_MARGIN)
    frng = np.random.default_rng(layout["noise_seed"])
    inner = bg[:, MP4_MARGIN : MP4_MARGIN + IMG]
    lit = (lambda t: lit_object(beeps, t)) if events else (lambda t: None)
    frames = [render_frame(attr, layout, t, inner, frng, lit=lit(t)) for t in frame_times(num_frames)]
    return {"attr": attr, "info": info, "wave": wave, "frames": frames, "layout": layout, "bg": bg, "beeps": beeps,
            "events": events}


def write_mp4(path: str | Path, clip: dict) -> None:
    """A real video of the clip: h264 128 x 96 at SCENE_FPS + AAC 16 kHz mono, DURATION seconds."""
    import av

    frng = np.random.default_rng(clip["layout"]["noise_seed"] + 1)
    n = round(DURATION * SCENE_FPS)
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=SCENE_FPS, options={"crf": "18", "preset": "veryfast", "threads": "1"})
        vs.width, vs.height, vs.pix_fmt = IMG + 2 * MP4_MARGIN, IMG, "yuv420p"
        aus = c.add_stream("aac", rate=SR, layout="mono")
        for i in range(n):
            t = i / SCENE_FPS
            lit = lit_object(clip["beeps"], t) if clip.get("events") else None
            img = render_frame(clip["attr"], clip["layout"], t, clip["bg"], frng, margin=MP4_MARGIN, lit=lit)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        af = av.AudioFrame.from_ndarray(clip["wave"][None], format="fltp", layout="mono")
        af.sample_rate = SR
        for p in aus.encode(af):
            c.mux(p)
        for p in aus.encode():
            c.mux(p)


__all__ = ["DURATION", "EVENTS", "EVENT_OCTAVES", "IMG", "MAX_COUNT", "MP4_MARGIN", "NUM_FRAMES", "SCENE_FPS", "SHAPES", "SR", "TIMBRES",
           "draw_attributes", "frame_times", "lit_object", "make_clip", "object_positions", "render_audio", "render_frame", "scene_layout", "write_mp4"]
