"""Notebooks 05b and 07: the default data's generative factors, probes of them, and an ideal perceiver."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ... import viz
from ...evaluate import linear_probe

# ---------------------------------------------------------------------------------------------------------
# 05b: the default data's generative factors
# ---------------------------------------------------------------------------------------------------------

# (attribute, in the picture, in the sound, how it is stored in attributes.csv) — see cavmae_lite.data.synthetic
ATTRIBUTE_PAIRS: tuple[tuple[str, str, str, str], ...] = (
    ("shape", "object shape: circle / square / triangle / star", "timbre: sine / odd harmonics / all harmonics / "
     "inharmonic partials (bell)", "name; `timbre` column"),
    ("hue", "object colour, hue in [0, 0.8)", "pitch: 200 Hz x 2^(3 hue / 0.8), 200-1600 Hz", "`hue`; `f0_hz`"),
    ("size", "object radius 8-16 px", "loudness: -24 to -6 dB gain", "`size` in [0, 1); `gain_db`"),
    ("count", "1-4 objects", "1-4 beeps", "`count`"),
    ("aspect", "objects stretched wide (> 1) or tall (< 1)", "pitch glide per beep: up (wide) or down (tall), "
     "up to 0.5 octave", "`aspect` in [1/1.6, 1.6]; `glide_oct`"),
)
DISCRETE = ("shape", "count")
CONTINUOUS = ("hue", "size", "aspect")
# the range each continuous attribute is drawn from (aspect: log-uniform), for binning into equal levels
RANGES = {"hue": (0.0, 0.8), "size": (0.0, 1.0), "aspect": (-math.log(1.6), math.log(1.6))}


def attribute_table_markdown() -> str:
    """:data:`ATTRIBUTE_PAIRS` as a markdown table."""
    rows = ["| attribute | in the picture | in the sound | in `attributes.csv` |", "|---|---|---|---|"]
    rows += [f"| **{a}** | {p} | {s} | {c} |" for a, p, s, c in ATTRIBUTE_PAIRS]
    return "\n".join(rows)


def load_attributes(dataset) -> dict[str, Tensor]:
    """The hidden attributes of every item of an ``AVDataset`` of the default data (or a ``Subset`` of one), in
    item order.

    Reads ``attributes.csv`` beside the manifest. Returns float tensors (N,) per numeric column, ``shape`` as an
    index into ``SHAPES``, ``count`` as an integer, and ``log_aspect`` = log(aspect)."""
    from torch.utils.data import Subset

    from ...data.synthetic import SHAPES

    indices = None  # a Subset (nested too): its items' positions in the underlying dataset
    while isinstance(dataset, Subset):
        idx = [int(i) for i in dataset.indices]
        indices = idx if indices is None else [idx[i] for i in indices]
        dataset = dataset.dataset
    ids = list(dataset.video_ids) if indices is None else [dataset.video_ids[i] for i in indices]
    path = Path(dataset.manifest.root) / "attributes.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no attributes.csv (only the default synthetic data has one)")
    with path.open() as f:
        by_id = {r["video_id"]: r for r in csv.DictReader(f)}
    rows = [by_id[v] for v in ids]
    out: dict[str, Tensor] = {"shape": torch.tensor([SHAPES.index(r["shape"]) for r in rows]),
                              "count": torch.tensor([int(r["count"]) for r in rows])}
    for key in ("hue", "size", "aspect", "f0_hz", "gain_db", "glide_oct"):
        out[key] = torch.tensor([float(r[key]) for r in rows], dtype=torch.float64)
    out["log_aspect"] = out["aspect"].log()
    return out


def describe_clip(attrs: dict[str, Tensor], i: int) -> str:
    """One line naming clip i's attributes and how each sounds."""
    from ...data.synthetic import SHAPES

    n = int(attrs["count"][i])
    return (f"{n} {SHAPES[int(attrs['shape'][i])]}{'s' if n > 1 else ''}, hue {float(attrs['hue'][i]):.2f} "
            f"({float(attrs['f0_hz'][i]):.0f} Hz), size {float(attrs['size'][i]):.2f} "
            f"({float(attrs['gain_db'][i]):.0f} dB), aspect {float(attrs['aspect'][i]):.2f} "
            f"(glide {float(attrs['glide_oct'][i]):+.2f} oct)")


def plot_attribute_gallery(frames: Tensor, fbanks: Tensor, attrs: dict[str, Tensor], indices: Sequence[int]):
    """Each chosen clip as a column: its frame on top, its spectrogram below (one colour scale for all of them, so
    that loudness compares), its attributes in the title. ``frames``, ``fbanks``: the chosen clips, in order."""
    n = len(indices)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n + 0.8, 5.6), layout="constrained", height_ratios=[1.25, 1],
                             squeeze=False)
    values = fbanks.float().flatten()
    lo, hi = float(values.quantile(0.01)), float(values.quantile(0.995))
    for col, i in enumerate(indices):
        line = describe_clip(attrs, i).replace(", hue", "\nhue").replace(", aspect", "\naspect")
        viz.plot_frame(frames[col], ax=axes[0, col], patch_size=None, title=f"clip {i}: {line}")
        axes[0, col].title.set_fontsize(8)
        viz.plot_fbank(fbanks[col], ax=axes[1, col], patch_size=None, colorbar=False, vmin=lo, vmax=hi,
                       title=f"clip {i}: its sound")
        if col:
            axes[0, col].set_ylabel("")
            axes[1, col].set_ylabel("")
    fig.colorbar(axes[1, -1].images[0], ax=list(axes[1]), label="normalised log-mel (a.u.)", pad=0.01)
    return fig


@torch.no_grad()
def clip_features(model, audio: Tensor, video: Tensor, batch_size: int = 64) -> dict[str, Tensor]:
    """Mean-pooled, unmasked features (N, D) of three streams: ``audio`` and ``video`` (each modality alone through
    its stream: the retrieval features before L2 normalisation) and ``joint`` (audio and video tokens together
    through the joint layer with the joint LayerNorms and ``norm_joint``, pooled over all tokens: the vector the
    multimodal classifier's head sees)."""
    enc = model.encoder
    was_training = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {"audio": [], "video": [], "joint": []}
    for s in range(0, audio.shape[0], batch_size):
        e = enc.encode(audio[s:s + batch_size], video[s:s + batch_size])
        h_a, h_v = e.audio, e.video
        out["audio"].append(enc.audio_stream(h_a).mean(dim=1))
        out["video"].append(enc.video_stream(h_v).mean(dim=1))
        out["joint"].append(enc.joint_stream(h_a, h_v).mean(dim=1))
    model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def ridge_r2(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, weight_decay: float = 1e-2) -> float:
    """R^2 on the test set of a ridge regression fitted on standardised training features (closed form).
    0 = no better than predicting the training mean, 1 = perfect."""
    x_tr, x_te = train_x.double(), test_x.double()
    mu, sd = x_tr.mean(0), x_tr.std(0).clamp(min=1e-6)
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    y_tr, y_te = train_y.double(), test_y.double()
    ym = y_tr.mean()
    n, d = x_tr.shape
    w = torch.linalg.solve(x_tr.T @ x_tr + weight_decay * n * torch.eye(d, dtype=torch.float64), x_tr.T @ (y_tr - ym))
    pred = x_te @ w + ym
    return float(1 - ((pred - y_te) ** 2).sum() / ((y_te - y_te.mean()) ** 2).sum().clamp(min=1e-12))


PROBED = ("shape", "count", "hue", "size", "aspect")  # the attributes :func:`attribute_probes` reads, 4 classes each


def attribute_classes(attr: str, train_values: Tensor, test_values: Tensor) -> tuple[Tensor, Tensor]:
    """An attribute as a 4-way task (notebook 07's protocol): ``shape`` (0-3) as it is, ``count`` (1-4) minus 1,
    a continuous attribute (hue, size, aspect) cut into 4 bins at the quartiles of its *training* values (a bin
    holds the values above its lower edge up to its upper edge). Returns (train labels, test labels), long (N,)."""
    if attr in DISCRETE:
        offset = 1 if attr == "count" else 0
        return train_values.long() - offset, test_values.long() - offset
    edges = torch.quantile(train_values.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return torch.bucketize(train_values.double(), edges), torch.bucketize(test_values.double(), edges)


def attribute_probes(train, test, train_attrs: dict[str, Tensor], test_attrs: dict[str, Tensor],
                     features: Sequence[str] = ("a", "v", "joint"), attributes: Sequence[str] = PROBED,
                     cache_dir: str | Path | None = None, **probe_kwargs) -> dict[str, dict[str, float]]:
    """A linear probe of each attribute from each kind of frozen feature, with notebook 07's protocol.

    Every attribute is a 4-way task (:func:`attribute_classes`); the probe is
    :func:`cavmae_lite.evaluate.linear_probe` (features standardised with the training statistics, L-BFGS logistic
    regression), fitted on the training clips and scored by accuracy on the test clips. ``train`` and ``test`` are
    :class:`~cavmae_lite.evaluate.Embeddings` (``features`` named as in :func:`~cavmae_lite.evaluate.probe_features`:
    "a", "v", "av", "joint") or dicts name -> (N, D) features. ``cache_dir``: through
    :func:`cavmae_lite.tutorial.memo.cached_probe` (computed once, then read). ``probe_kwargs`` go to the probe
    (e.g. ``max_iter``). Returns {attribute: {feature: test accuracy, ..., "majority": the share of the test
    clips' most frequent class}}: the accuracy of always answering that class, the bar a probe must clear.
    """
    from ...evaluate import Embeddings, probe_features

    def feature(side, f: str) -> Tensor:
        return probe_features(side, f) if isinstance(side, Embeddings) else side[f]

    def probe(x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor) -> float:
        if cache_dir is None:
            return linear_probe(x_tr, y_tr, x_te, y_te, num_classes=4, **probe_kwargs)["accuracy"]
        from ..memo import cached_probe

        return cached_probe(cache_dir, x_tr, y_tr, x_te, y_te, num_classes=4, **probe_kwargs)[0]["accuracy"]

    out: dict[str, dict[str, float]] = {}
    for attr in attributes:
        y_tr, y_te = attribute_classes(attr, train_attrs[attr], test_attrs[attr])
        out[attr] = {f: probe(feature(train, f), y_tr, feature(test, f), y_te) for f in features}
        out[attr]["majority"] = float(torch.bincount(y_te, minlength=4).max()) / len(y_te)
    return out


def attribute_groups(attrs: dict[str, Tensor], levels: int | None = None,
                     attributes: Sequence[str] = DISCRETE + CONTINUOUS) -> list[tuple]:
    """Each clip's key: its discrete attributes, and its continuous ones exactly (``levels=None``) or binned into
    ``levels`` equal-width bins of their range (:data:`RANGES`; aspect on a log scale)."""
    cols = []
    for a in attributes:
        if a in DISCRETE:
            cols.append(attrs[a].tolist())
            continue
        x = attrs["log_aspect" if a == "aspect" else a].double()
        if levels is None:
            cols.append(x.tolist())
        else:
            lo, hi = RANGES[a]
            cols.append(((x - lo) / (hi - lo) * levels).floor().clamp(0, levels - 1).long().tolist())
    return list(zip(*cols))


def ideal_perceiver_r1(attrs: dict[str, Tensor], levels: int | None = None,
                       attributes: Sequence[str] = DISCRETE + CONTINUOUS) -> float:
    """Expected R@1 of a perceiver that knows each clip's ``attributes`` (rendered in both modalities) and nothing
    else: among the candidates that share the query's key it can only guess, so clip i is found first with
    probability 1 / (size of its group); the mean over clips equals (number of distinct keys) / N.
    The same in both directions."""
    keys = attribute_groups(attrs, levels, attributes)
    sizes: dict[tuple, int] = {}
    for k in keys:
        sizes[k] = sizes.get(k, 0) + 1
    return float(sum(1.0 / sizes[k] for k in keys) / len(keys))
