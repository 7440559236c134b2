"""Loading trained weights: ``load_pretrained`` (a run directory, one of our checkpoints, a ``save_pretrained``
folder or an official CAV-MAE pretraining checkpoint), ``init_from`` (where ``pretrain --init`` starts) and the
Hugging Face-style folder of ``save_pretrained`` / ``from_pretrained`` (``config.json`` + ``model.safetensors``).

    model = load_pretrained("runs/tiny")                  # RUN_DIR/checkpoint.pt, written by cavmae_lite.train
    model = load_pretrained("cav-mae-scale++.pth")        # official weights, sizes read from the tensors
    model.save_pretrained("my-cavmae"); CAVMAE.from_pretrained("my-cavmae")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import CAVMAEConfig, CAVMAESyncConfig, config_from_dict
from ..model import CAVMAE, CAVMAEClassifier
from ..sync import CAVMAESync, model_for
from .io import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    StateDict,
    atomic_write,
    detect_layout,
    detect_model,
    load_strict,
    read_json,
    read_state_dict,
    save_safetensors,
)
from .mae import adapt_mae_state_dict, count_blocks, describe_sizes
from .official import convert_official_state_dict, load_official

MODEL_TYPES = {"CAVMAE": CAVMAE, "CAVMAEClassifier": CAVMAEClassifier, "CAVMAESync": CAVMAESync}


def load_pretrained(path: str | Path | StateDict, config: CAVMAEConfig | None = None,
                    map_location: str | torch.device = "cpu", **official: Any) -> CAVMAE:
    """A CAVMAE (in eval mode, on ``map_location``) from a run directory, one of our checkpoints (``.pt`` or ``.safetensors`` with its
    config), a ``save_pretrained`` folder or an official CAV-MAE pretraining checkpoint (weights-only loading).

    ``official``: settings the official weights cannot tell (``norm_pix_loss``, ``num_heads``, ...; see
    ``CAVMAE.from_official``). Our checkpoints record their config: a setting that contradicts it raises.
    """
    read = read_state_dict(path, map_location)
    layout, kind = detect_layout(read.tensors), detect_model(read.tensors)
    if layout == "mae":
        raise CheckpointError(f"{read.source} holds ImageNet MAE weights: start a CAV-MAE run from them with "
                              f"`cavmae-lite pretrain --init {read.source}`")
    if kind != "CAVMAE":
        how = "CAVMAEClassifier.from_official" if layout == "official" else "CAVMAEClassifier.from_pretrained"
        raise CheckpointError(f"{read.source} holds a fine-tuned classifier (a classification head, no decoder), not "
                              f"a pretraining CAV-MAE: load it with {how}")
    if layout == "official":
        is_sync = any(k in read.tensors for k in ("cls_token_a", "register_tokens"))
        return load_official(CAVMAESync if is_sync else CAVMAE, read, **official).to(map_location).eval()
    if config is None:
        config = config_from_extra(read.extra, read.source)
    for k, v in official.items():
        if not hasattr(config, k) or getattr(config, k) != v:
            raise CheckpointError(f"{read.source} records {k}={getattr(config, k, None)!r} in its config, not "
                                  f"{v!r}: such settings are for official checkpoints, whose weights cannot tell")
    model = model_for(config)
    load_strict(model, read.tensors, read.source)
    return model.to(map_location).eval()


def config_from_extra(extra: dict[str, Any], source: str) -> CAVMAEConfig:
    """The model config stored beside the weights: ``model_config`` of our ``.pt`` checkpoints (and of the zoo's
    safetensors metadata), or the fields of a ``save_pretrained`` folder's config.json."""
    if "model_config" in extra:
        return config_from_dict(extra["model_config"])
    if extra.get("architectures"):
        cls = CAVMAESyncConfig if "CAVMAESync" in extra["architectures"] else CAVMAEConfig
        fields = set(cls().to_dict())
        return cls.from_dict({k: v for k, v in extra.items() if k in fields})
    raise CheckpointError(f"{source} holds a bare state dict without its config: pass config=CAVMAEConfig...")


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model inside torch.compile's and DistributedDataParallel's wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model


def save_pretrained(model: nn.Module, directory: str | Path) -> Path:
    """``directory``/config.json + model.safetensors (the layout the Hugging Face hub uses), each written
    atomically; config.json holds "architectures", "model_type", the config fields and, for a classifier,
    "num_classes". Returns the folder."""
    model = _unwrapped(model)
    kind = next((name for name, cls in MODEL_TYPES.items() if isinstance(model, cls)), None)
    if kind is None:
        raise TypeError(f"save_pretrained takes a CAVMAE or CAVMAEClassifier, got {type(model).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file: save_pretrained writes a folder")
    config = {"architectures": [kind], "model_type": "cavmae", **model.config.to_dict()}
    if kind == "CAVMAEClassifier":
        config["num_classes"] = model.num_classes
    save_safetensors(model.state_dict(), directory / WEIGHTS_NAME, metadata={"format": "pt"})
    text = (json.dumps(config, indent=2) + "\n").encode()
    atomic_write(directory / CONFIG_NAME, lambda f: f.write(text))
    return directory


def from_pretrained(cls: type, directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A ``cls`` (CAVMAE or CAVMAEClassifier, in eval mode, on ``device``) from a folder written by
    :func:`save_pretrained`."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is a file"
        raise FileNotFoundError(f"{directory} {what}: from_pretrained takes a save_pretrained folder "
                                f"({CONFIG_NAME} + {WEIGHTS_NAME})")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not a save_pretrained folder: it has no {name} (it needs "
                                    f"{CONFIG_NAME} and {WEIGHTS_NAME})")
    extra = read_json(directory / CONFIG_NAME)
    kind = (extra.get("architectures") or ["?"])[0]
    if kind != cls.__name__:
        how = f": load it with {kind}.from_pretrained" if kind in MODEL_TYPES else ""
        raise CheckpointError(f"{directory} holds a {kind}, not a {cls.__name__}{how}")
    config = config_from_extra(extra, str(directory / CONFIG_NAME))
    if kind == "CAVMAEClassifier":
        if not isinstance(extra.get("num_classes"), int):
            raise CheckpointError(f"{directory / CONFIG_NAME} has no num_classes for the classifier")
        model = cls(config, num_classes=extra["num_classes"])
    else:
        model = cls(config)
    read = read_state_dict(directory / WEIGHTS_NAME)
    load_strict(model, read.tensors, read.source)
    return model.to(device).eval()


def _ours_summary(sd: dict[str, Tensor]) -> tuple | None:
    """(width, specific depth, joint depth, patch, decoder width, decoder depth) of our-layout weights."""
    try:
        w = sd["encoder.video_embed.proj.weight"]
        dec = sd["decoder.embed.weight"].shape[0] if "decoder.embed.weight" in sd else None
    except KeyError:
        return None
    return (w.shape[0], count_blocks(sd, "encoder.audio_blocks."), count_blocks(sd, "encoder.joint_blocks."), w.shape[-1], dec,
            count_blocks(sd, "decoder.blocks."))


def _check_ours_fits(sd: dict[str, Tensor], config: CAVMAEConfig, what: str) -> None:
    c = config
    have = _ours_summary(sd)
    want = (c.embed_dim, c.modality_specific_depth, c.joint_depth, c.patch_size, c.decoder_embed_dim, c.decoder_depth)
    if have is not None and have[4] is None:
        raise CheckpointError(f"the {what} checkpoint has no decoder (a fine-tuned classifier?): pretraining needs one")
    if have is not None and have != want:
        d = lambda t: describe_sizes(t[0], f"{t[1]} + {t[2]}", t[3], t[4], t[5])
        raise CheckpointError(f"the {what} checkpoint ({d(have)}) does not fit this model config ({d(want)})")


def init_from(source: str | Path | dict[str, Tensor], model: nn.Module) -> dict[str, Any]:
    """Load starting weights into a CAVMAE ``model`` in place (weights only; no optimiser state).

    source: a path (a file, or a run directory's checkpoint.pt) or a state dict, in our layout (a checkpoint of
    ``pretrain``), the official CAV-MAE layout (``module.`` prefixes allowed) or the ImageNet MAE layout
    (adapted with :func:`adapt_mae_state_dict`). Every key and shape is checked; a checkpoint of other sizes
    than ``model.config`` raises a CheckpointError saying both. Returns ``{"source", "layout", "tensors"}``
    (tensors = how many of the model's tensors came from the source).
    """
    read = read_state_dict(source)
    sd, name = read.tensors, read.source
    layout = detect_layout(sd)
    config = model.config
    if layout == "mae":
        adapted = adapt_mae_state_dict(sd, config)
        full = {**model.state_dict(), **adapted}
        load_strict(model, full, f"{name} (ImageNet MAE, adapted)")
        return {"source": name, "layout": layout, "tensors": len(adapted)}
    if layout == "official":
        if any(k.startswith("mlp_head.") for k in sd):
            raise CheckpointError(f"{name} is a fine-tuned CAV-MAE classifier (mlp_head, no decoder): pretraining "
                                  f"needs a pretraining checkpoint")
        sd = convert_official_state_dict(sd)
    _check_ours_fits(sd, config, layout)
    load_strict(model, sd, f"{name} ({layout} layout)")
    return {"source": name, "layout": layout, "tensors": len(sd)}


__all__ = ["CHECKPOINT_NAME", "CONFIG_NAME", "MODEL_TYPES", "config_from_extra", "from_pretrained", "init_from",
           "load_pretrained", "save_pretrained"]
