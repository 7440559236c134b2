"""Audio pictures and listening: waveform, fbank with its patch grid (and a Hz axis), approximate fbank inversion."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from .grids import FBANK_MEAN, FBANK_STD, HOP_S, MASK_COLOR, SPEC_CMAP, draw_patch_grid, figure_and_axes, to_numpy

KALDI_LOW_HZ = 20.0  # torchaudio's Kaldi fbank defaults, which wav_to_fbank keeps: low_freq 20 Hz, high_freq 0 = Nyquist


def hz_to_mel(f):
    """Kaldi's (HTK) mel scale: mel(f) = 1127 ln(1 + f / 700 Hz), element-wise on numbers or arrays."""
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`: f = 700 Hz (exp(m / 1127) - 1)."""
    return 700.0 * np.expm1(np.asarray(m, dtype=np.float64) / 1127.0)


def _mel_grid(num_mel_bins: int, sample_rate: int, low_hz: float, high_hz: float | None) -> tuple[float, float]:
    high = sample_rate / 2 if high_hz is None else high_hz
    lo, hi = float(hz_to_mel(low_hz)), float(hz_to_mel(high))
    return lo, (hi - lo) / (num_mel_bins + 1)  # F triangles with F + 2 equally spaced mel edges


def mel_bin_centers_hz(num_mel_bins: int, sample_rate: int = 16000, low_hz: float = KALDI_LOW_HZ,
                       high_hz: float | None = None) -> np.ndarray:
    """Centre frequency in Hz of each of the ``num_mel_bins`` Kaldi mel filters (bin 0 = lowest).

    The filters are triangles whose edges are equally spaced on the mel scale from ``low_hz`` to ``high_hz``
    (default: the Nyquist frequency, 8 kHz at 16 kHz); filter m peaks at edge m + 1.
    """
    lo, delta = _mel_grid(num_mel_bins, sample_rate, low_hz, high_hz)
    return mel_to_hz(lo + delta * np.arange(1, num_mel_bins + 1))


def add_hz_axis(ax, num_mel_bins: int, sample_rate: int = 16000, low_hz: float = KALDI_LOW_HZ,
                high_hz: float | None = None, ticks_hz=(100, 300, 1000, 2000, 4000, 7000), location: str = "right"):
    """A second y axis in Hz beside a spectrogram whose y axis is the mel bin (bin m drawn over [m, m + 1)).

    A tick at f Hz sits at the height where a filter centred on f would be drawn; one mel row covers more Hz the
    higher it sits (the mel scale is nearly linear below 700 Hz and logarithmic above). Returns the axis.
    """
    lo, delta = _mel_grid(num_mel_bins, sample_rate, low_hz, high_hz)

    def bin_to_hz(y):
        return mel_to_hz(lo + delta * (np.asarray(y, dtype=np.float64) + 0.5))

    def hz_to_bin(f):
        return (hz_to_mel(np.clip(np.asarray(f, dtype=np.float64), 0.0, None)) - lo) / delta - 0.5

    sec = ax.secondary_yaxis(location, functions=(bin_to_hz, hz_to_bin))
    top = float(bin_to_hz(num_mel_bins))
    ticks = [t for t in ticks_hz if float(bin_to_hz(0)) <= t <= top]
    sec.set_yticks(ticks, [f"{t / 1000:g}k" if t >= 1000 else f"{t:g}" for t in ticks])
    sec.set_ylabel("filter centre (Hz)")
    return sec


def plot_waveform(wave: Tensor, sample_rate: int = 16000, ax=None, title: str = "waveform"):
    """(N,) or (C, N) waveform -> amplitude vs time in seconds."""
    fig, ax = figure_and_axes(ax, (10, 2.2))
    w = to_numpy(wave)
    w = w[0] if w.ndim == 2 else w
    t = np.arange(w.shape[0]) / sample_rate
    ax.plot(t, w, lw=0.4, color="tab:blue")
    ax.set(xlabel="time (s)", ylabel="amplitude (float PCM)", title=title, xlim=(0, t[-1] if len(t) else 1))
    return fig


def plot_fbank(fbank: Tensor, ax=None, patch_size: int | None = 16, indices: bool | None = None, title: str | None = None,
               colorbar: bool = True, hop_s: float = HOP_S, vmin: float | None = None, vmax: float | None = None,
               label: str = "normalised log-mel (a.u.)", grid_color: str = "white", fontsize: float | None = None,
               hz_axis: bool = False, sample_rate: int = 16000):
    """Spectrogram (T, F) with time (s) on x, mel bin on y (low at the bottom), and the p x p patch grid.

    ``hz_axis`` adds the filters' centre frequencies in Hz on the right (:func:`add_hz_axis`; the Kaldi mel
    range 20 Hz - ``sample_rate`` / 2 of :func:`cavmae_lite.data.wav_to_fbank`).

    Token k = f * (T/p) + t: rows are frequency bands (0 = lowest), columns are time steps (spec §3.2).
    NaN entries (masked patches) are drawn in light grey. ``indices`` defaults to True up to 256 tokens
    (zoom in with ``ax.set_xlim`` to read them on a full 512-token clip).
    """
    fb = to_numpy(fbank)
    T, F = fb.shape
    fig, ax = figure_and_axes(ax, (min(14, 3 + T / 80), 3.2))
    cmap = plt.get_cmap(SPEC_CMAP).with_extremes(bad=MASK_COLOR)
    im = ax.imshow(fb.T, origin="lower", aspect="auto", cmap=cmap, extent=(0, T * hop_s, 0, F),
                   vmin=vmin, vmax=vmax, interpolation="nearest")
    if patch_size:
        if indices is None:
            indices = (F // patch_size) * (T // patch_size) <= 256
        draw_patch_grid(ax, F // patch_size, T // patch_size, patch_size * hop_s, patch_size, indices,
                        origin="lower", color=grid_color, fontsize=fontsize)
    ax.set(xlabel="time (s)", ylabel="mel bin", title=title or f"log-mel fbank {T}x{F}")
    if hz_axis:
        add_hz_axis(ax, F, sample_rate)
    if colorbar:
        fig.colorbar(im, ax=ax, label=label, pad=0.01)
    return fig


# ---------------------------------------------------------------------------------------------------------
# listening: approximate fbank inversion
# ---------------------------------------------------------------------------------------------------------


def fbank_to_waveform(fbank: Tensor, normalized: bool = True, mean: float = FBANK_MEAN, std: float = FBANK_STD,
                      sample_rate: int = 16000, n_iter: int = 32, seed: int = 0, preemphasis: float = 0.97) -> Tensor:
    """Approximate inverse of the Kaldi fbank (spec §2.2): (T, 128) log-mel -> (N,) waveform at ``sample_rate``.

    log-mel -> mel energies (exp) -> power spectrum (non-negative least squares against Kaldi's own mel
    filters, multiplicative updates) -> phase by Griffin-Lim (25 ms Hann window, 10 ms hop, FFT 512) ->
    undo the 0.97 pre-emphasis. The phase is invented and the mel filters blur the fine structure, so it
    sounds rough, but pitch, rhythm and loudness survive. NaN bins (masked) are treated as silence.
    """
    import torchaudio
    from torchaudio.compliance.kaldi import get_mel_banks

    fb = fbank.detach().float().cpu()
    if normalized:
        fb = fb * std + mean
    fb = torch.nan_to_num(fb, nan=float(fb[torch.isfinite(fb)].min()) if torch.isfinite(fb).any() else -15.0)
    win, hop, n_fft = int(0.025 * sample_rate), int(0.010 * sample_rate), 512
    banks, _ = get_mel_banks(fb.shape[1], n_fft, float(sample_rate), 20.0, 0.0, 100.0, -500.0, 1.0)  # (F, 256)
    banks = torch.nn.functional.pad(banks, (0, 1)).float()  # Kaldi pads a zero column for the Nyquist bin
    mel = fb.exp().T  # (F, T)
    power = banks.T @ mel  # initial guess (257, T)
    power = power.clamp(min=1e-10)
    for _ in range(50):  # NNLS by multiplicative updates: minimise |B x - mel|^2 with x >= 0
        power = power * (banks.T @ mel) / (banks.T @ (banks @ power)).clamp(min=1e-12)
    griffin = torchaudio.transforms.GriffinLim(n_fft=n_fft, n_iter=n_iter, win_length=win, hop_length=hop, power=2.0,
                                               window_fn=lambda n: torch.hann_window(n, periodic=False))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wave = griffin(power)  # frame t centred on sample t * hop
    # Kaldi's frame t covers samples [t * hop, t * hop + win): shift by half a window, pad to the covered length
    wave = torch.nn.functional.pad(wave, (win // 2, win - win // 2))
    if preemphasis:
        wave = torchaudio.functional.lfilter(wave[None], torch.tensor([1.0, -preemphasis]), torch.tensor([1.0, 0.0]),
                                             clamp=False)[0]
    wave = wave - wave.mean()
    return wave / wave.abs().max().clamp(min=1e-8) * 0.9
