"""DDP with 2 gloo processes x batch B and global negatives == 1 process x batch 2B (loss and gradients)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
B = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs(config):
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(2 * B, config.audio_length, config.num_mel_bins, generator=g)
    video = torch.randn(2 * B, 3, config.img_size, config.img_size, generator=g)
    noise_a = torch.rand(2 * B, config.num_audio_tokens, generator=g)
    noise_v = torch.rand(2 * B, config.num_video_tokens, generator=g)
    return audio, video, noise_a, noise_v


def _worker(rank: int, world: int, port: int, out_dir: str, work=None) -> None:
    """One gloo process: ``work(rank, world, out_dir)`` (default: this file's) between init and teardown."""
    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        (work or _ranked_work)(rank, world, out_dir)  # its DDP wrapper and buffers are freed on return
        dist.barrier()  # no rank tears gloo down while another still talks to it
    finally:
        dist.destroy_process_group()


def _ranked_work(rank: int, world: int, out_dir: str) -> None:
    from cavmae_lite.model import CAVMAE
    from cavmae_lite.train import pretrain
    from tests.helpers import PairedDataset, micro_config, micro_train

    config = micro_config(contrast_weight=0.5, contrast_negatives="global")
    torch.manual_seed(0)
    model = CAVMAE(config)
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    audio, video, na, nv = (t[rank * B:(rank + 1) * B] for t in _inputs(config))
    out = ddp(audio, video, noise_a=na, noise_v=nv)
    out.loss.backward()
    loss = out.loss.detach().clone()
    dist.all_reduce(loss)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    # the real loop under DDP: 3 steps, then every rank must hold the same weights
    r = pretrain(micro_config(), micro_train(max_steps=3, batch_size=B), PairedDataset(micro_config(), n=32),
                 Path(out_dir) / "run", progress=False)
    flat = torch.cat([p.detach().flatten() for p in r.model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"loss": loss / world, "grads": grads, "c_acc": out.c_acc.detach(),
                    "ranks_agree": all(torch.equal(gathered[0], g) for g in gathered)},
                   Path(out_dir) / "ddp.pt")


def test_ddp_global_negatives_match_single_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert got["ranks_agree"]
    assert (tmp_path / "run" / "checkpoint.pt").is_file()

    from cavmae_lite.model import CAVMAE
    from tests.helpers import micro_config

    config = micro_config(contrast_weight=0.5, contrast_negatives="global")
    torch.manual_seed(0)
    model = CAVMAE(config)
    audio, video, na, nv = _inputs(config)
    out = model(audio, video, noise_a=na, noise_v=nv)
    out.loss.backward()
    torch.testing.assert_close(got["loss"], out.loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["c_acc"], out.c_acc.detach())
    ref = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for n, g in ref.items():
        other = got["grads"].get(n, torch.zeros_like(g))
        torch.testing.assert_close(other, g, rtol=1e-4, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")
