"""Fine-tuning augmentations (spec §2.4, §5.3): SpecAugment, mixup of both modalities, soft label targets.

Every function takes an explicit ``torch.Generator``. Shapes: a fbank is ``(T, F)`` (time, mel bins), a frame
``(3, H, W)``, a waveform ``(samples,)``, label vectors ``(C,)``.

**Where the official loader masks.** It masks the raw log-mel (zeros) and then normalises, so a masked cell
holds ``(0 - mean) / std`` in normalised units (about +1.133 with the AudioSet statistics). Our datasets hand
out normalised fbanks, so :func:`spec_augment` fills with :func:`masked_value` ``(mean, std)``: the same
numbers the official input would hold.

**Mixup of audio.** The official loader mixes the two *waveforms* (``lam * w1 + (1 - lam) * w2``, the partner
zero-padded or cut to the first clip's length, the mean removed again) and recomputes the fbank:
:func:`mix_waveforms`. A cached dataset has no waveforms; :func:`mix_logmel_power` then mixes the mel
*energies* instead, ``log(lam^2 e^x1 + (1 - lam)^2 e^x2)`` on the raw log-mel — the expected energy of the
mixed waveform when the two clips are uncorrelated (the cross term averages out). It is an approximation
(exact up to the cross term), so the dataset wrapper warns when it uses it; pass ``mixup_audio="wave"`` to read
the wav files for mixed clips instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def masked_value(mean: float, std: float) -> float:
    """The normalised value of a zero raw log-mel cell: what an official SpecAugment mask holds."""
    return (0.0 - float(mean)) / float(std)


def mask_along_axis(x: Tensor, mask_param: int, axis: int, value: float, generator: torch.Generator) -> Tensor:
    """One mask of width ``floor(U * mask_param)`` (0 .. mask_param - 1) along ``axis`` of a 2-D ``x``.

    The draw is torchaudio's ``mask_along_axis``: width ``v = U1 * mask_param``, start
    ``floor(U2 * (size - v))``, cells ``[start, start + floor(v))`` set to ``value`` — with a generator.
    """
    if x.dim() != 2:
        raise ValueError(f"expected a 2-D (T, F) fbank, got shape {tuple(x.shape)}")
    if mask_param < 1:
        return x
    size = x.shape[axis]
    v = torch.rand(1, generator=generator) * mask_param
    v0 = torch.rand(1, generator=generator) * (size - v)
    start = int(v0.long())
    end = start + int(v.long())
    idx = torch.arange(size)
    hit = (idx >= start) & (idx < end)
    shape = [1, 1]
    shape[axis] = size
    return x.masked_fill(hit.view(shape), value)


def spec_augment(fbank: Tensor, freqm: int, timem: int, value: float, generator: torch.Generator) -> Tensor:
    """SpecAugment of one ``(T, F)`` fbank: one frequency mask (width < ``freqm``), then one time mask (width
    < ``timem``), both filled with ``value`` (see :func:`masked_value`). The official order and draws."""
    if fbank.dim() != 2:
        raise ValueError(f"spec_augment expects a (T, F) fbank, got shape {tuple(fbank.shape)}")
    if freqm < 0 or timem < 0:
        raise ValueError(f"mask widths must be >= 0, got freqm={freqm}, timem={timem}")
    out = mask_along_axis(fbank, freqm, 1, value, generator)
    return mask_along_axis(out, timem, 0, value, generator)


def sample_beta(alpha: float, beta: float, generator: torch.Generator) -> float:
    """One draw of Beta(alpha, beta), seeded from ``generator`` (numpy's sampler)."""
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"Beta parameters must be positive, got {alpha}, {beta}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, beta))


def mix_waveforms(w1: Tensor, w2: Tensor, lam: float) -> Tensor:
    """The official waveform mixup: both mean-removed, ``w2`` zero-padded or cut to ``len(w1)``,
    ``lam * w1 + (1 - lam) * w2``, mean removed again. (samples,) -> (samples,)."""
    if w1.dim() != 1 or w2.dim() != 1:
        raise ValueError(f"mix_waveforms expects (samples,) waveforms, got {tuple(w1.shape)}, {tuple(w2.shape)}")
    w1, w2 = w1 - w1.mean(), w2 - w2.mean()
    n = w1.numel()
    w2 = torch.nn.functional.pad(w2, (0, n - w2.numel())) if w2.numel() < n else w2[:n]
    mixed = lam * w1 + (1 - lam) * w2
    return mixed - mixed.mean()


def mix_logmel_power(x1: Tensor, x2: Tensor, lam: float, pad1: Tensor | None = None,
                     pad2: Tensor | None = None) -> Tensor:
    """Mix two *raw* (unnormalised) log-mel fbanks ``(T, F)`` in the energy domain (module docstring).

    ``pad1`` / ``pad2`` (T,) mark zero-padded rows (past a clip's end): a padded row of the first clip stays
    padding (the mixed waveform has the first clip's length), a padded row of the partner adds no energy.
    """
    if x1.shape != x2.shape or x1.dim() != 2:
        raise ValueError(f"expected two (T, F) fbanks of one shape, got {tuple(x1.shape)}, {tuple(x2.shape)}")
    if not 0 < lam < 1:
        return (x1 if lam >= 1 else x2).clone()
    a = x1.double() + 2 * math.log(lam)
    b = x2.double() + 2 * math.log(1 - lam)
    if pad2 is not None:
        b = b.masked_fill(pad2[:, None], -math.inf)
    out = torch.logaddexp(a, b)
    if pad1 is not None:
        out = out.masked_fill(pad1[:, None], 0.0)
    return out.to(x1.dtype)


def smooth_targets(multi_hot: Tensor, smoothing: float) -> Tensor:
    """Official targets without mixup: positives ``1 - smoothing``, negatives ``smoothing / C``. (..., C)."""
    if not 0 <= smoothing < 1:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    c = multi_hot.shape[-1]
    return torch.where(multi_hot > 0, torch.full_like(multi_hot, 1 - smoothing),
                       torch.full_like(multi_hot, smoothing / c)).float()


def mixup_targets(y1: Tensor, y2: Tensor, lam: float, smoothing: float) -> Tensor:
    """Official targets of a mixed clip: ``smoothing / C + (1 - smoothing) (lam y1 + (1 - lam) y2)`` for
    multi-hot ``y1``, ``y2`` (C,). (With smoothing > 0 a positive gets ``smoothing / C`` more than
    :func:`smooth_targets` gives it: the official quirk, reproduced.)"""
    if y1.shape != y2.shape:
        raise ValueError(f"label vectors differ in shape: {tuple(y1.shape)} vs {tuple(y2.shape)}")
    c = y1.shape[-1]
    return (smoothing / c + (1 - smoothing) * (lam * (y1 > 0).float() + (1 - lam) * (y2 > 0).float())).float()


def mix_frames(v1: Tensor, v2: Tensor, lam: float) -> Tensor:
    """``lam * v1 + (1 - lam) * v2`` of two normalised frames (3, H, W) (the official image mixup)."""
    if v1.shape != v2.shape:
        raise ValueError(f"frames differ in shape: {tuple(v1.shape)} vs {tuple(v2.shape)}")
    return lam * v1 + (1 - lam) * v2


__all__ = ["mask_along_axis", "masked_value", "mix_frames", "mix_logmel_power", "mix_waveforms", "mixup_targets",
           "sample_beta", "smooth_targets", "spec_augment"]
