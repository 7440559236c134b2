"""CAV-MAE Sync under DDP (2 gloo processes): global negatives give the single-process loss on the whole batch,
and the training loop, fed two (frame, segment) pairs per clip, keeps every rank's weights identical."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from tests.test_train_ddp import _free_port, _worker

B = 4


def micro_sync_config(**overrides):
    from cavmae_lite.config import CAVMAESyncConfig
    from tests.helpers import micro_config

    sizes = {**micro_config().to_dict(), "audio_length": 16, "clip_length": 32, "num_frames": 4,
             "num_register_tokens": 2}
    return CAVMAESyncConfig(**{**sizes, **overrides})


class PairsPerClip(Dataset):
    """``n`` clips of P (frame, segment) pairs: audio (P, L, F), video (P, 3, H, W), as load_pair_dataset gives
    them with ``pairs_per_clip=P``."""

    def __init__(self, config, n: int = 16, pairs: int = 2):
        g = torch.Generator().manual_seed(0)
        self.audio = torch.randn(n, pairs, config.audio_length, config.num_mel_bins, generator=g)
        self.video = torch.randn(n, pairs, 3, config.img_size, config.img_size, generator=g)

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, i: int) -> dict:
        return {"audio": self.audio[i], "video": self.video[i], "label": 0, "video_id": f"c{i}", "index": i}


def _inputs(config):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2 * B, config.audio_length, config.num_mel_bins, generator=g),
            torch.randn(2 * B, 3, config.img_size, config.img_size, generator=g))


def _ranked_work(rank: int, world: int, out_dir: str) -> None:
    from cavmae_lite import CAVMAESync
    from cavmae_lite.train import pretrain
    from tests.helpers import micro_train

    config = micro_sync_config(contrast_weight=0.5, contrast_negatives="global", mae_weight=0.0)
    torch.manual_seed(0)
    ddp = torch.nn.parallel.DistributedDataParallel(CAVMAESync(config), find_unused_parameters=True)
    audio, video = (t[rank * B:(rank + 1) * B] for t in _inputs(config))
    loss = ddp(audio, video, mask_ratio_a=0.0, mask_ratio_v=0.0).loss.detach().clone()
    dist.all_reduce(loss)
    r = pretrain(micro_sync_config(), micro_train(max_steps=3, batch_size=2, pairs_per_clip=2),
                 PairsPerClip(micro_sync_config()), Path(out_dir) / "run", progress=False)
    flat = torch.cat([p.detach().flatten() for p in r.model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"loss": loss / world, "ranks_agree": all(torch.equal(gathered[0], g) for g in gathered),
                    "step": r.step, "type": type(r.model).__name__}, Path(out_dir) / "ddp.pt")


def test_sync_under_ddp_matches_one_process_and_trains_in_step(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), _ranked_work), nprocs=2, join=True)
    got = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert got["ranks_agree"] and got["step"] == 3 and got["type"] == "CAVMAESync"
    from cavmae_lite import CAVMAESync

    config = micro_sync_config(contrast_weight=0.5, contrast_negatives="global", mae_weight=0.0)
    torch.manual_seed(0)
    out = CAVMAESync(config)(*_inputs(config), mask_ratio_a=0.0, mask_ratio_v=0.0)
    torch.testing.assert_close(got["loss"], out.loss.detach(), rtol=1e-5, atol=1e-6)
