"""`cavmae-lite reconstruct`: the MAE four-panel figure of one clip, from the command line.

Sits above :mod:`cavmae_lite.viz` and :mod:`cavmae_lite.zoo` (the default model is the shipped
reconstruction model, trained at 75 % masking).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ..viz import STATS, plot_reconstruction, reconstruct


def add_reconstruct_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("clip", help="a video file (audio + frames), or DATA_DIR:INDEX for an item of a prepared dataset")
    p.add_argument("--checkpoint", help="a cavmae-lite run directory, checkpoint or save_pretrained folder, or an "
                   "official CAV-MAE .pth; default: the shipped reconstruction model, trained at 75 %% masking on the "
                   "default data (cavmae_lite/weights/tiny-mask75.safetensors)")
    p.add_argument("--out", default="reconstruction.png", help="output image (png, pdf, svg)")
    p.add_argument("--mask-ratio", type=float, default=0.75, help="mask ratio for both modalities (default 0.75)")
    p.add_argument("--mask-ratio-a", type=float, help="audio mask ratio (overrides --mask-ratio)")
    p.add_argument("--mask-ratio-v", type=float, help="video mask ratio (overrides --mask-ratio)")
    p.add_argument("--mask-mode", default="unstructured", choices=["unstructured", "time", "freq", "tf"])
    p.add_argument("--seed", type=int, default=0, help="masking seed (default 0)")
    p.add_argument("--stats", choices=list(STATS), help="patch statistics to un-normalise norm_pix predictions "
                   "(default: visible for norm_pix models, none otherwise)")
    p.add_argument("--no-norm-pix-loss", dest="norm_pix_loss", action="store_false", default=None,
                   help="the official checkpoint was pretrained without norm_pix_loss (CAV-MAE-Base-NoNorm): its "
                   "predictions are input units, shown as they are (the weights cannot tell)")
    p.add_argument("--frame", type=int, help="frame index to use (default: the middle frame)")
    p.add_argument("--dpi", type=int, default=120)


def load_model_for_viz(checkpoint: str | Path | None, device: str = "cpu", norm_pix_loss: bool | None = None):
    """A pretraining CAVMAE from any checkpoint :func:`~cavmae_lite.checkpoints.load_pretrained` reads (a run
    directory, our .pt / .safetensors, a save_pretrained folder, an official .pth), or, when None, the zoo's
    reconstruction model (``zoo.pretrained_tiny(mask_ratio=0.75)``, trained at the paper's 75 % masking).

    ``norm_pix_loss``: for an official file, whether it was pretrained with norm_pix_loss (None = True, the
    released default; a file named "*nonorm*" then warns). Our checkpoints record it: a value that contradicts
    the record raises ``ValueError``.
    """
    from ..checkpoints import detect_layout, load_pretrained, read_state_dict

    if checkpoint is None:
        from ..zoo import pretrained_tiny

        model = pretrained_tiny(device=device, mask_ratio=0.75)
    else:
        read = read_state_dict(checkpoint)  # read once: the layout decides what norm_pix_loss means
        if norm_pix_loss is not None and detect_layout(read.tensors) == "official":
            return load_pretrained(read, norm_pix_loss=norm_pix_loss).to(device)
        model = load_pretrained(read).to(device)  # an official file named "*nonorm*" warns
    if norm_pix_loss is not None and norm_pix_loss != model.config.norm_pix_loss:
        raise ValueError(f"{checkpoint or 'the shipped reconstruction model'} records norm_pix_loss="
                         f"{model.config.norm_pix_loss} in its config; --no-norm-pix-loss is for official checkpoints, "
                         "whose weights cannot tell")
    return model.eval()


def clip_inputs(clip: str, config, frame: int | None = None) -> tuple[Tensor, Tensor, str]:
    """(audio (T, F), video (3, H, W), name) for a video file or ``DATA_DIR:INDEX`` at ``config``'s sizes."""
    from .. import data

    head, sep, tail = str(clip).rpartition(":")
    if sep and tail.isdigit() and Path(head).is_dir():
        ds = data.load_dataset(head, config=config, train=False, frames=frame is not None)
        item = ds[int(tail)]
        video = item["frames"][frame] if frame is not None else item["video"]
        return item["audio"], video, str(item.get("video_id", clip))
    path = Path(clip)
    if not path.exists():
        raise FileNotFoundError(f"clip not found: {clip}")
    inputs = data.clip_to_inputs(path, config=config)
    audio, frames = inputs["audio"], inputs["frames"]
    idx = frames.shape[0] // 2 if frame is None else frame
    if not 0 <= idx < frames.shape[0]:
        raise ValueError(f"--frame {frame} out of range: the clip has {frames.shape[0]} frames")
    return audio, frames[idx], path.stem


def run_reconstruct(args: argparse.Namespace) -> int:
    plt.switch_backend("Agg")
    torch.manual_seed(args.seed)
    model = load_model_for_viz(args.checkpoint, norm_pix_loss=getattr(args, "norm_pix_loss", None))
    audio, video, name = clip_inputs(args.clip, model.config, args.frame)
    ra = args.mask_ratio if args.mask_ratio_a is None else args.mask_ratio_a
    rv = args.mask_ratio if args.mask_ratio_v is None else args.mask_ratio_v
    rec = reconstruct(model, audio, video, ra, rv, seed=args.seed, mask_mode=args.mask_mode, stats=args.stats)
    fig = plot_reconstruction(rec, title=f"{name}: mask {ra:.0%} audio ({args.mask_mode}) / {rv:.0%} video, "
                              f"seed {args.seed}, stats {rec.stats!r}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi)
    plt.close(fig)
    err = rec.errors()
    if model.config.norm_pix_loss:
        print(f"wrote {out} (masked-patch MSE, normalised targets: audio {rec.loss_a:.4f}, video {rec.loss_v:.4f}; "
              f"input units ({rec.stats!r} statistics): audio {err['audio']:.4f}, video {err['video']:.4f})")
    else:
        print(f"wrote {out} (model trained without norm_pix_loss; masked-patch MSE in input units: audio "
              f"{rec.loss_a:.4f}, video {rec.loss_v:.4f})")
    return 0


__all__ = ["add_reconstruct_arguments", "clip_inputs", "load_model_for_viz", "run_reconstruct"]
