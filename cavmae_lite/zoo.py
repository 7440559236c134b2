"""The tutorial models: tiny CAV-MAEs pretrained on the default synthetic data, shipped inside the package.

    from cavmae_lite import zoo
    model = zoo.pretrained_tiny()                       # the retrieval model: weights/tiny.safetensors (fp16)
    recon = zoo.pretrained_tiny(mask_ratio=0.75)        # the reconstruction model: weights/tiny-mask75.safetensors
    model, card = zoo.pretrained_tiny_info()            # ... and its card: recipe, machine, wall time, metrics
    sync = zoo.pretrained_tiny_sync()                   # a tiny CAV-MAE Sync: weights/tiny-sync.safetensors

Two models, because at this scale the two losses want different masking (notebook 06 measures it): ``tiny``
(:data:`NAME`), trained at 30 % masking with ``norm_pix_loss``, for embeddings and retrieval (notebooks 05, 07, 08);
``tiny-mask75`` (:data:`MASK75`), trained at the paper's 75 % with 8-px patches and without ``norm_pix_loss``, for
every reconstruction picture at 75 % (notebooks 04, 06, 08, the README figure, ``cavmae-lite reconstruct``).
Beside them ``tiny-sync`` (:data:`SYNC`), a tiny CAV-MAE Sync trained on the events variant of the synthetic data
(object b lights up while beep b sounds, 16 frames a clip) for notebook 09, with the same budget as ``tiny``.

Each is built by ``cavmae-lite zoo build --name NAME`` (``make zoo`` builds all three) with its recorded :func:`recipe` —
``CAVMAEConfig.tiny()`` with the :data:`MODELS` size overrides, ``TrainConfig.preset("tiny")`` with its build
settings, on the train split of the default data — then evaluated on the 600 test pairs, and written as fp16
weights (``<name>.safetensors``: no pickle; the model config it was trained with in its metadata) with a JSON card
beside it (``<name>.json``). Both are committed, so a clone and a ``pip install`` have them. A weights file is also
a checkpoint the CLI takes (``--checkpoint cavmae_lite/weights/tiny.safetensors``).

The recipe's key (a hash of the model and training settings and of the data *generator*, its seed and split sizes)
is on the card. Regenerated data that differs only in encoded bytes (another JPEG or FLAC encoder) keeps the
shipped models valid; a change of a recipe or of the generator version makes :func:`card_is_current` false, and a
test then fails and says to run ``make zoo``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .checkpoints import atomic_write, load_pretrained, save_safetensors
from .config import SHIPPED_TINY, CAVMAEConfig, CAVMAESyncConfig, TrainConfig
from .model import CAVMAE

ZOO_VERSION = 2
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
NAME = "tiny"  # the retrieval model, what pretrained_tiny() loads
MASK75 = "tiny-mask75"  # the reconstruction model, pretrained_tiny(mask_ratio=0.75)
SYNC = "tiny-sync"  # CAV-MAE Sync, pretrained_tiny_sync()
# The retrieval model's training budget and logging, on top of TrainConfig.preset("tiny") (the ten-minute recipe's
# settings): the same losses, trained longer, on the larger model (MODEL_TINY). The shipped weights were trained
# before the ten-minute recipe moved to InfoNCE temperature 0.1 and mask ratio 0.15: the build keeps the model's own
# temperature, 0.05 (the paper's), and mask ratio 0.3, so that the recorded recipe, and its key on the card, stay
# what the weights were trained with.
BUILD_TRAIN: dict[str, Any] = {"max_steps": 5000, "warmup_steps": 100, "log_every": 25,
                               "contrast_temperature": None, "mask_ratio_a": 0.3, "mask_ratio_v": 0.3}
# The reconstruction model: the paper's masking, 75 % of each modality, with the retrieval model's losses. Three
# departures from the retrieval model's sizes, each for the picture at 75 %: 8-px patches (a 12 x 12 frame grid keeps
# 36 patches at 75 %, so most objects stay partly visible; a 6 x 6 grid keeps 9, often none of an object); a
# one-layer decoder (MAE's decoder is deliberately light, and over 400 tokens it is most of the step); and no
# norm_pix_loss, as the official "NoNorm" checkpoint released for inpainting: the decoder predicts pixels and fbank
# values, not per-patch standardised ones, so a removed patch comes back in input units.
BUILD_TRAIN_MASK75: dict[str, Any] = {"max_steps": 3000, "warmup_steps": 100, "log_every": 25,
                                      "contrast_temperature": None, "mask_ratio_a": 0.75, "mask_ratio_v": 0.75}
# The shipped models keep the tiny preset's sizes from before the ten-minute recipe slimmed it (width 192, 4 + 1
# layers, decoder 128 x 2: config.SHIPPED_TINY): an hour of training affords them.
MODEL_TINY: dict[str, Any] = dict(SHIPPED_TINY)
MODEL_MASK75: dict[str, Any] = {**MODEL_TINY, "patch_size": 8, "decoder_depth": 1, "norm_pix_loss": False}
# The Sync model: TrainConfig.preset("sync-tiny") (the tiny recipe, one pair of each clip per step) for the
# retrieval model's budget, 5,000 steps of 128 pairs.
BUILD_TRAIN_SYNC: dict[str, Any] = {"max_steps": 5000, "warmup_steps": 100, "log_every": 25}
# name -> (TrainConfig.preset("tiny") overrides, CAVMAEConfig.tiny() overrides); SYNC: the "sync-tiny" preset and
# CAVMAESyncConfig.tiny()
MODELS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {NAME: (BUILD_TRAIN, MODEL_TINY),
                                                             MASK75: (BUILD_TRAIN_MASK75, MODEL_MASK75),
                                                             SYNC: (BUILD_TRAIN_SYNC, {})}
# name -> (train, val, test) clips of the synthetic data it trains on. The retrieval model trains on 15,000 clips
# (since grown into the default set): on 3,000 it fit its training pairs (in-batch accuracy 0.94 after 4,000 steps)
# far better than held-out ones (test R@1 0.45 / 0.47); on 15,000, 5,000 steps reach 0.785 / 0.770. Clips beyond
# the first 3,000 continue the generator after the test block (data.synthetic.train_index): every size has the
# same val and test clips.
DATA_SIZES: dict[str, tuple[int, int, int]] = {NAME: (15000, 300, 600), MASK75: (3000, 300, 600),
                                               SYNC: (15000, 300, 600)}
SYNC_FRAMES = 16  # frames stored per clip of the Sync model's events data (the Sync authors' extraction)
SYNC_CLIP_SCORE = "diagonal_mean"  # the clip score quoted for the Sync model (its card has all four)
# Settings that change where and how fast a build runs, not what it learns: left out of the recipe key.
_MACHINE_KEYS = ("threads", "device", "num_workers", "log_every", "checkpoint_every", "compile", "deterministic",
                 "keep_epochs", "eval_retrieval")
# Settings added to TrainConfig after the card was written, at the value that trains exactly as before: left out
# of the recipe key while they keep that value (a build with another value gets another key).
_NEUTRAL = {"contrast_groups": 1, "init": None, "contrast_temperature": None, "warmup_fraction": None,
            "pairs_per_clip": 1}


def _check_name(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"unknown tutorial model {name!r}: the zoo has {sorted(MODELS)}")
    return name


def recipe(name: str = NAME) -> dict[str, Any]:
    """Everything that determines a shipped model's weights: model sizes, training settings and the data's
    generator."""
    from .data.synthetic import EVENTS, GENERATOR

    build_train, model_sets = MODELS[_check_name(name)]
    sync = name == SYNC
    train = TrainConfig.preset("sync-tiny" if sync else "tiny", **build_train).to_dict()
    model = (CAVMAESyncConfig if sync else CAVMAEConfig).tiny(**model_sets).to_dict()
    data = {"generator": GENERATOR, "seed": 0, "sizes": list(DATA_SIZES[name]), "split": "train"}
    if sync:
        data.update(events=EVENTS, num_frames=SYNC_FRAMES)
    return {"zoo_version": ZOO_VERSION, "name": name, "model": model,
            "train": {k: v for k, v in train.items()
                      if k not in _MACHINE_KEYS and not (k in _NEUTRAL and v == _NEUTRAL[k])}, "data": data}


def recipe_key(r: dict[str, Any] | str | None = None) -> str:
    """12 hex digits hashing a recipe (a dict, or a model name; default: the retrieval model's)."""
    if not isinstance(r, dict):
        r = recipe(r or NAME)
    return hashlib.sha1(json.dumps(r, sort_keys=True).encode()).hexdigest()[:12]


def weights_path(directory: str | Path | None = None, name: str = NAME) -> Path:
    return Path(directory or WEIGHTS_DIR) / f"{_check_name(name)}.safetensors"


def card_path(directory: str | Path | None = None, name: str = NAME) -> Path:
    return Path(directory or WEIGHTS_DIR) / f"{_check_name(name)}.json"


def read_card(directory: str | Path | None = None, name: str = NAME) -> dict[str, Any]:
    p = card_path(directory, name)
    if not p.is_file():
        raise FileNotFoundError(f"no model card at {p}: build the tutorial model with `make zoo` "
                                f"(cavmae-lite zoo build --name {name})")
    return json.loads(p.read_text())


def name_for(mask_ratio: float | None = None) -> str:
    """The zoo model trained at ``mask_ratio`` (both modalities); None: the retrieval model."""
    if mask_ratio is None:
        return NAME
    trained = {n: (b["mask_ratio_a"], b["mask_ratio_v"]) for n, (b, _) in MODELS.items() if n != SYNC}
    for n, ratios in trained.items():
        if ratios == (mask_ratio, mask_ratio):
            return n
    have = ", ".join(f"{n}: {a:g} / {v:g}" for n, (a, v) in trained.items())
    raise ValueError(f"no shipped tutorial model was trained at mask ratio {mask_ratio:g}; the zoo has {have} "
                     "(audio / video)")


def card_is_current(card: dict[str, Any]) -> bool:
    """True when the shipped weights were trained with today's recipe (of the card's model) and data generator."""
    name = card.get("name", NAME)
    return name in MODELS and card.get("recipe_key") == recipe_key(name)


def _load_shipped(name: str, device: str | torch.device, directory: str | Path | None):
    """Shipped model ``name`` (fp32, eval mode) and its card (with ``path`` added); warns when the card is stale."""
    path = weights_path(directory, name)
    if not path.is_file():
        raise FileNotFoundError(f"the tutorial model {path} is missing: build it with `make zoo` "
                                f"(cavmae-lite zoo build --name {name})")
    model = load_pretrained(path)  # fp16 on disk -> the fp32 model; config from the file's metadata
    card = read_card(directory, name)
    if not card_is_current(card):
        warnings.warn(f"{path.name} was trained with another recipe or data generator than this code's "
                      f"(card {card.get('recipe_key')}, code {recipe_key(name)}): run `make zoo` to rebuild it",
                      stacklevel=3)
    return model.to(device).eval(), {**card, "path": path}


def pretrained_tiny_info(device: str | torch.device = "cpu", directory: str | Path | None = None,
                         mask_ratio: float | None = None) -> tuple[CAVMAE, dict[str, Any]]:
    """A shipped tutorial model (fp32, eval mode) and its card (with ``path`` added). Warns when stale.

    mask_ratio: None or 0.3, the retrieval model (``tiny``); 0.75, the reconstruction model (``tiny-mask75``)."""
    return _load_shipped(name_for(mask_ratio), device, directory)


def pretrained_tiny(device: str | torch.device = "cpu", directory: str | Path | None = None,
                    mask_ratio: float | None = None) -> CAVMAE:
    """A shipped tiny CAV-MAE, pretrained on the default synthetic data, in eval mode (see the module doc).

    ``pretrained_tiny()``: the retrieval model; ``pretrained_tiny(mask_ratio=0.75)``: the model trained at the
    paper's 75 % masking, for reconstructions."""
    return pretrained_tiny_info(device, directory, mask_ratio)[0]


def pretrained_tiny_sync_info(device: str | torch.device = "cpu", directory: str | Path | None = None):
    """The shipped tiny CAV-MAE Sync (fp32, eval mode) and its card (with ``path``). Warns when stale."""
    return _load_shipped(SYNC, device, directory)


def pretrained_tiny_sync(device: str | torch.device = "cpu", directory: str | Path | None = None):
    """The shipped tiny :class:`~cavmae_lite.sync.CAVMAESync`, trained on the events variant of the synthetic data
    (``make-data synthetic --events --frames 16``), in eval mode."""
    return pretrained_tiny_sync_info(device, directory)[0]


# ---------------------------------------------------------------------------------------------------------
# Building the shipped model
# ---------------------------------------------------------------------------------------------------------


def _machine(device: torch.device) -> dict[str, Any]:
    m = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
         "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        m["gpu"] = torch.cuda.get_device_name(device)
    return m


def evaluate_model(model: CAVMAE, data_dir: str | Path, split: str = "test") -> dict[str, Any]:
    """The card's metrics: retrieval on ``split`` and the masked-patch reconstruction report (with baselines)."""
    from .data import load_dataset
    from .evaluate import reconstruction_report, retrieval

    ds = load_dataset(data_dir, config=model.config, split=split)
    r = retrieval(model, ds, device="cpu")
    rec = reconstruction_report(model, ds)
    return {"split": split, "n": r["n"], "retrieval": {d: {k: round(v, 4) for k, v in r[d].items()}
                                                       for d in ("a2v", "v2a")},
            "reconstruction": {k: round(v, 4) for k, v in rec.items()}}


def _rounded(report: Any) -> Any:
    if isinstance(report, dict):
        return {k: _rounded(v) for k, v in report.items()}
    return round(report, 4) if isinstance(report, float) else report


def evaluate_sync_model(model, data_dir: str | Path, split: str = "test") -> dict[str, Any]:
    """The Sync card's metrics on ``split`` of its events data: frame- and clip-level retrieval and temporal
    localisation of the model, and of the shipped CAV-MAE (:func:`pretrained_tiny`, whole-clip audio against every
    frame) on the same pairs."""
    from .data import load_pair_dataset
    from .data.synthetic import frame_events
    from .evaluate import sync_retrieval

    ds = load_pair_dataset(data_dir, model.config, split, mode="retrieval")
    events = frame_events(data_dir, list(ds.video_ids), model.config.num_frames)
    out = {"split": split, "n": len(ds), "sync": sync_retrieval(model, ds, device="cpu", events=events)}
    if weights_path(None, NAME).is_file():
        base = pretrained_tiny()
        out["cavmae_tiny"] = sync_retrieval(base, ds, device="cpu", clip_audio=True, events=events)
    return _rounded(out)


def training_data(name: str = NAME, data_dir: str | Path | None = None, progress: bool = True) -> Path:
    """The synthetic set model ``name`` trains on, built (with its tiny-config cache) if missing: the default set,
    or for another train split size ``data/synthetic-train<N>`` beside it (val and test: the default set's clips).
    An existing ``data_dir`` is used as it is (a trial on other data: :func:`build` then records no recipe key)."""
    from .data import build_cache, ensure_default_dataset, open_cache, read_manifest
    from .data.synthetic import FULL_SIZES, default_data_dir, make_synthetic

    sizes, sync = DATA_SIZES[_check_name(name)], name == SYNC
    if sizes == tuple(FULL_SIZES) and not sync:
        return ensure_default_dataset(data_dir)
    folder = f"synthetic-sync{sizes[0]}" if sync else f"synthetic-train{sizes[0]}"
    out = Path(data_dir) if data_dir else default_data_dir().with_name(folder)
    if not (out / "manifest.json").is_file():
        frames = {"num_frames": SYNC_FRAMES, "events": True} if sync else {}
        make_synthetic(out, 0, *sizes, mp4=0, progress=progress, **frames)
    if (out / "synthetic.json").is_file() and open_cache(read_manifest(out), CAVMAEConfig.tiny()) is None:
        build_cache(out, CAVMAEConfig.tiny(), progress=progress)
    return out


def _data_matches(name: str, data_dir: Path) -> bool:
    """Whether ``data_dir`` is the synthetic set of the recipe of ``name`` (generator and split sizes)."""
    stamp = data_dir / "synthetic.json"
    if not stamp.is_file():
        return False
    info = json.loads(stamp.read_text())
    sizes = [info["splits"][k] for k in ("train", "val", "test")]
    return (info.get("generator") == recipe(name)["data"]["generator"] and sizes == list(DATA_SIZES[name])
            and info.get("events", False) == recipe(name)["data"].get("events", False))


def build(out_dir: str | Path | None = None, data_dir: str | Path | None = None, device: str = "auto",
          threads: int = 0, max_steps: int | None = None, run_dir: str | Path | None = None,
          progress: bool = True, name: str = NAME) -> dict[str, Any]:
    """Train the tutorial model ``name`` with :func:`recipe`, evaluate it, write ``<name>.safetensors`` (fp16) and
    ``<name>.json`` (each atomically).

    max_steps: override the recipe's budget (the card then no longer matches it; for trials and tests).
    run_dir: keep the full-precision training checkpoint there (resumable with the same call). Returns the card.
    """
    from .config import config_from_dict
    from .data import load_dataset, load_pair_dataset
    from .train import pretrain

    t0 = time.time()
    r = recipe(name)
    data_dir = training_data(name, data_dir)
    config = config_from_dict(r["model"])
    extra = {"threads": threads, "device": device, "log_every": MODELS[name][0]["log_every"]}
    if max_steps is not None:
        extra["max_steps"] = max_steps
    tc = TrainConfig.from_dict(r["train"], **extra)
    if name == SYNC:
        train = load_pair_dataset(data_dir, config, "train", seed=tc.seed, pairs_per_clip=tc.pairs_per_clip)
    else:
        train = load_dataset(data_dir, config=config, split="train", train=True, seed=tc.seed)
    result = pretrain(config, tc, train, out_dir=run_dir, resume=run_dir is not None, progress=progress)
    device_used = next(result.model.parameters()).device  # before .cpu(), which moves the module in place
    model = result.model.float().cpu().eval()
    as_recipe = max_steps is None and _data_matches(name, Path(data_dir))
    if not as_recipe and max_steps is None:
        warnings.warn(f"{data_dir} is not the synthetic set {name}'s recipe trains on ({DATA_SIZES[name]} clips): "
                      "the card records no recipe key", stacklevel=2)
    card = {"name": name, "recipe_key": recipe_key(r) if as_recipe else None, "recipe": r,
            "steps": result.step, "amp": result.amp, "wall_minutes": round((time.time() - t0) / 60, 2),
            "torch": torch.__version__, "machine": _machine(device_used),
            "built": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "metrics": evaluate_sync_model(model, data_dir) if name == SYNC else evaluate_model(model, data_dir),
            "history": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()}
                        for h in result.history]}
    write_weights(model, card["recipe_key"], out_dir, name)
    text = (json.dumps(card, indent=1) + "\n").encode()
    atomic_write(card_path(out_dir, name), lambda f: f.write(text))
    return card


def write_weights(model: CAVMAE, key: str | None, directory: str | Path | None = None, name: str = NAME) -> Path:
    """The shipped form of ``model``: fp16 tensors in ``<name>.safetensors``, its config and recipe key as
    metadata."""
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    meta = {"format": "pt", "model_config": json.dumps(model.config.to_dict(), sort_keys=True)}
    if key:
        meta["recipe_key"] = key
    return save_safetensors(half, weights_path(directory, name), metadata=meta)


__all__ = ["BUILD_TRAIN", "BUILD_TRAIN_MASK75", "BUILD_TRAIN_SYNC", "DATA_SIZES", "MASK75", "MODELS", "MODEL_MASK75",
           "NAME", "SYNC", "build", "card_is_current", "card_path", "evaluate_model", "evaluate_sync_model", "name_for",
           "pretrained_tiny", "pretrained_tiny_info", "pretrained_tiny_sync", "pretrained_tiny_sync_info", "read_card", "recipe", "recipe_key", "training_data", "weights_path",
           "write_weights"]
