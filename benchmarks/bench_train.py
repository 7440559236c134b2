"""Train-step time, samples/s and peak memory vs batch size and clip length (tiny and base), plus an MFU estimate.

    python benchmarks/bench_train.py                       # CPU: tiny grid + a small base grid
    python benchmarks/bench_train.py --configs base --batch-sizes 8,16,32 --lengths 1024 --amp bf16 --compile

One "step" = forward + backward + AdamW step on random inputs (the full CAV-MAE loss, 75 % masking), median of
``--repeats`` after ``--warmup`` untimed steps. Peak memory: CUDA max_memory_allocated, or on CPU the rise of
the peak RSS (VmHWM) of a fresh process per point minus its RSS before the model was built. MFU (GPU only) is
nanoGPT-style: analytic matmul FLOPs of the step (3 x forward) / time / the device's peak bf16 dense FLOP/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cavmae_lite.config import CAVMAEConfig
from cavmae_lite.masking import num_visible
from cavmae_lite.model import CAVMAE

PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


def step_flops(c: CAVMAEConfig, batch: int, ratio: float = 0.75) -> float:
    """Matmul FLOPs of one training step (forward x 3), counting every stream the loss runs."""
    D, Dd, p = c.embed_dim, c.decoder_embed_dim, c.patch_size
    La, Lv = c.num_audio_tokens, c.num_video_tokens
    Ka, Kv = num_visible(La, ratio), num_visible(Lv, ratio)
    hidden = c.mlp_ratio

    def blocks(n_blocks: int, tokens: int, dim: int) -> float:
        per_token = 2 * (4 * dim * dim + 2 * hidden * dim * dim)  # qkv + proj + MLP
        return n_blocks * (tokens * per_token + 4 * tokens * tokens * dim)  # + QK^T and AV

    fwd = 2 * (La * p * p + Lv * p * p * c.in_chans) * D  # patch embeddings (all tokens)
    fwd += blocks(c.modality_specific_depth, Ka, D) + blocks(c.modality_specific_depth, Kv, D)
    if c.mae_weight > 0:
        fwd += blocks(c.joint_depth, Ka + Kv, D) + 2 * (Ka + Kv) * D * Dd
        fwd += blocks(c.decoder_depth, La + Lv, Dd) + 2 * (La * p * p + Lv * p * p * c.in_chans) * Dd
    if c.contrast_weight > 0:
        fwd += blocks(c.joint_depth, Ka, D) + blocks(c.joint_depth, Kv, D)
    return 3 * fwd * batch


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def bench_point(name: str, batch: int, length: int, device: torch.device, amp: str, compile_: bool, repeats: int,
                warmup: int) -> dict:
    base_rss = _status("VmRSS")
    c = CAVMAEConfig.preset(name, audio_length=length)
    torch.manual_seed(0)
    model = CAVMAE(c).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    fn = torch.compile(model) if compile_ else model
    audio = torch.randn(batch, c.audio_length, c.num_mel_bins, device=device)
    video = torch.randn(batch, 3, c.img_size, c.img_size, device=device)
    cast = torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16) \
        if amp != "none" else torch.autocast(device.type, enabled=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with cast:
            out = fn(audio, video)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _status("VmHWM") - base_rss
    flops = step_flops(c, batch)
    row = {"config": name, "batch": batch, "audio_length": length, "amp": amp, "compile": compile_,
           "step_ms": round(1000 * t, 1), "samples_per_s": round(batch / t, 1), "peak_mem_mib": round(peak / 2**20),
           "tflops_per_step": round(flops / 1e12, 4), "achieved_tflops": round(flops / t / 1e12, 3)}
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
        peak_flops = next((v for k, v in PEAK_FLOPS.items() if k in gpu), None)
        if peak_flops:
            row["mfu"] = round(flops / t / peak_flops, 4)
    del model, opt, out
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="tiny,base")
    p.add_argument("--batch-sizes", default=None, help="comma list (default tiny 8,16,32,64; base 2,4 on CPU)")
    p.add_argument("--lengths", default=None, help="audio lengths in fbank frames (default tiny 256,512; base 512,1024)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = device.type == "cpu"
    defaults = {"tiny": ("8,16,32,64", "256,512"), "base": ("2,4" if cpu else "8,16,32,48", "512,1024")}
    print(f"device {torch.cuda.get_device_name(device) if not cpu else 'cpu'}, threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}", flush=True)
    rows = []
    for name in args.configs.split(","):
        bs = [int(x) for x in (args.batch_sizes or defaults[name][0]).split(",")]
        ls = [int(x) for x in (args.lengths or defaults[name][1]).split(",")]
        for length in ls:
            for b in bs:
                try:
                    point = (name, b, length, device, args.amp, args.compile, args.repeats, args.warmup)
                    if cpu:  # a fresh process per point, so that its peak RSS is its own
                        ctx = multiprocessing.get_context("spawn")
                        with ctx.Pool(1, initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),)) as pool:
                            row = pool.apply(bench_point, point)
                    else:
                        row = bench_point(*point)
                except torch.OutOfMemoryError:
                    row = {"config": name, "batch": b, "audio_length": length, "error": "out of memory"}
                    torch.cuda.empty_cache()
                rows.append(row)
                print(json.dumps(row) if args.json else
                      f"{name:5} B={b:3d} T={length:5d} {row.get('step_ms', '-'):>9} ms/step "
                      f"{row.get('samples_per_s', '-'):>7} samples/s  peak {row.get('peak_mem_mib', '-'):>6} MiB  "
                      f"{row.get('achieved_tflops', '-')} TFLOP/s" + (f"  MFU {row['mfu']:.1%}" if "mfu" in row else ""),
                      flush=True)


if __name__ == "__main__":
    main()
