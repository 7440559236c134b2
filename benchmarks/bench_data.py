"""Data throughput: synthetic build time, prepare clips/s, loader samples/s from raw files vs the cache.

    python benchmarks/bench_data.py                 # full default dataset build (3000/300/600) + all figures
    python benchmarks/bench_data.py --quick         # a 600-clip build, fewer repeats

Prints figures; asserts nothing. Loader figures are the median of ``--repeats`` passes over ``--samples``
random items in the main process (no DataLoader workers), one torch thread.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_videos(folder: Path, n: int, seconds: float = 8.0, size=(320, 240), fps: int = 25) -> None:
    """n real-world-like mp4s: h264 320x240 25 fps, AAC 44.1 kHz stereo (the synthetic scenes, upscaled)."""
    import av
    from PIL import Image

    from cavmae_lite.data.synthetic import DURATION, make_clip

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        clip = make_clip(123, k, num_frames=5)
        wave = np.tile(clip["wave"], int(np.ceil(seconds / DURATION)))[: int(seconds * 16000)]
        stereo = np.stack([wave, 0.5 * wave]).astype(np.float32)
        with av.open(str(folder / f"clip{k:03d}.mp4"), "w") as c:
            vs = c.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
            aus = c.add_stream("aac", rate=44100, layout="stereo")
            for i in range(int(seconds * fps)):
                img = Image.fromarray(clip["frames"][i * 5 // int(seconds * fps)]).resize(size, Image.BICUBIC)
                for p in vs.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
            af = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
            af.sample_rate = 16000
            for p in aus.encode(af):
                c.mux(p)
            for p in aus.encode():
                c.mux(p)


def loader_rate(ds, samples: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(repeats):
        idx = rng.integers(0, len(ds), samples)
        t0 = time.perf_counter()
        for i in idx:
            ds[int(i)]
        rates.append(samples / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="600-clip build, fewer samples")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--videos", type=int, default=16, help="mp4s for the prepare benchmark")
    args = ap.parse_args()
    torch.set_num_threads(1)
    samples = args.samples or (200 if args.quick else 1000)

    from cavmae_lite.config import CAVMAEConfig
    from cavmae_lite.data import build_cache, load_dataset, make_synthetic
    from cavmae_lite.data.prepare import prepare
    from cavmae_lite.data.synthetic import FULL_SIZES

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = (480, 60, 120) if args.quick else FULL_SIZES
        t0 = time.perf_counter()
        make_synthetic(tmp / "syn", 0, *sizes, workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
        n = sum(sizes)
        size_mb = sum(p.stat().st_size for p in (tmp / "syn").rglob("*") if p.is_file()) / 2**20
        print(f"make-data synthetic: {n} clips in {dt:.1f} s ({n / dt:.0f} clips/s, {args.workers} workers, "
              f"{size_mb:.0f} MiB)")

        for name in ("tiny", "base"):
            config = CAVMAEConfig.preset(name)
            t0 = time.perf_counter()
            build_cache(tmp / "syn", config, workers=args.workers, progress=False)
            dt = time.perf_counter() - t0
            print(f"cache {name}: {n} clips in {dt:.1f} s ({n / dt:.0f} clips/s)")
            for train in (False, True):
                raw = load_dataset(tmp / "syn", config, split="train", train=train, cache=False)
                cached = load_dataset(tmp / "syn", config, split="train", train=train, cache=True)
                r_raw = loader_rate(raw, max(samples // 5, 50), args.repeats)
                r_cache = loader_rate(cached, samples, args.repeats)
                mode = "train (random frame + noise/roll)" if train else "eval (middle frame)"
                print(f"loader {name:4s} {mode:34s}: raw {r_raw:7.0f} samples/s | cache {r_cache:7.0f} samples/s "
                      f"(x{r_cache / r_raw:.0f})")
            import shutil

            shutil.rmtree(tmp / "syn" / "cache")

        make_videos(tmp / "videos", args.videos)
        for frames in (10,):
            t0 = time.perf_counter()
            rep = prepare(tmp / "videos", tmp / "prep", num_frames=frames, workers=args.workers, progress=False)
            dt = time.perf_counter() - t0
            k = len(rep["prepared"])
            print(f"prepare: {k} mp4s (8 s, 320x240 h264 25 fps, AAC 44.1 kHz stereo) -> {frames} frames @224 "
                  f"+ 16 kHz wav in {dt:.1f} s = {k / dt:.1f} clips/s ({args.workers} workers)")


if __name__ == "__main__":
    main()
