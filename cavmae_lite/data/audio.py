"""Audio: read a file, resample to 16 kHz, Kaldi log-mel fbank, pad/crop, normalise (spec §2.2).

Shapes: a waveform is ``(samples,)`` float32 in about [-1, 1]; an fbank is ``(T, F)`` = (time frames,
mel bins). Padding to the target length happens in log-mel space *before* normalisation, as in the official
loader, so padded rows end up at ``(0 - mean) / std`` (about +1.133 with the AudioSet statistics).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000
AUDIOSET_MEAN = -5.081
AUDIOSET_STD = 4.4849
WINDOW_SAMPLES = 400  # 25 ms at 16 kHz: one Kaldi fbank frame
HOP_SAMPLES = 160  # 10 ms at 16 kHz

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".w64", ".caf"}


class MediaError(ValueError):
    """A media file that cannot be turned into model inputs; the message names the file and the problem."""


def media_error(path, problem: str) -> MediaError:
    """The :class:`MediaError` for ``path``: ``"<path>: <problem>"`` (raise it; the file comes first)."""
    return MediaError(f"{path}: {problem}")


def describe_error(e: Exception, path) -> str:
    """A library exception as 'Type: message', without the file name the caller already states."""
    msg = str(e).replace(f": '{path}'", "").replace(str(path), "<file>")
    return f"{type(e).__name__}: {msg}"


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    return data.T, int(rate)


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    import av

    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 — av.error.* (InvalidDataError, ...), OSError
        raise media_error(path, f"cannot open as a media file ({describe_error(e, path)})") from None
    with container:
        if not container.streams.audio:
            raise media_error(path, "has no audio track")
        stream = container.streams.audio[0]
        chunks: list[np.ndarray] = []
        rate = stream.codec_context.sample_rate or stream.rate
        resampler = None
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    rate = frame.sample_rate
                    resampler = av.AudioResampler(format="fltp")  # planar float; layout and rate kept
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray())
        except Exception as e:  # noqa: BLE001
            if not chunks:
                raise media_error(path, f"audio track cannot be decoded ({describe_error(e, path)})") from None
            # a truncated file: keep what decoded (the fbank length check below still applies)
            n = sum(c.shape[1] for c in chunks)
            warnings.warn(f"{path}: audio decoding stopped early ({describe_error(e, path)}); kept the {n} "
                          "samples decoded", stacklevel=2)
    if not chunks:
        raise media_error(path, "audio track is empty (no samples decoded)")
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), int(rate)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Every channel of a file as ``(channels, samples)`` float32 and its sample rate.

    wav/flac/ogg/... are read with soundfile (any PCM width, float PCM); anything else, and files soundfile
    rejects, through PyAV (the first audio track of any container). Raises :class:`MediaError`.
    """
    path = Path(path)
    if not path.is_file():
        raise media_error(path, "file not found")
    if path.stat().st_size == 0:
        raise media_error(path, "file is empty (0 bytes)")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            return _read_soundfile(path)
        except Exception:  # noqa: BLE001, S110
            pass  # fall back to PyAV, which reports its own clear error
    return _read_pyav(path)


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling (``torchaudio.functional.resample``) of ``(..., samples)``."""
    if int(orig_rate) == int(new_rate):
        return wave
    import torchaudio.functional as AF

    return AF.resample(wave, int(orig_rate), int(new_rate))


def load_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, channel: int | str = 0, check: bool = True
) -> torch.Tensor:
    """A file's audio as a mono ``(samples,)`` float32 tensor at ``sample_rate``.

    ``channel``: an index (0 = the official pipeline's choice) or ``"mean"`` for the channel average.
    With ``check`` (default), non-finite samples and clips shorter than one 25 ms fbank window raise
    :class:`MediaError` naming the file; silence is allowed (it is real data).
    """
    data, rate = read_audio(path)
    if data.shape[1] == 0:
        raise media_error(path, "audio has no samples")
    if channel == "mean":
        mono = data.mean(axis=0)
    else:
        c = int(channel)
        if not -data.shape[0] <= c < data.shape[0]:
            raise media_error(path, f"has {data.shape[0]} audio channel(s); channel {c} does not exist")
        mono = data[c]
    if check:
        bad = int((~np.isfinite(mono)).sum())
        if bad:
            raise media_error(path, f"audio contains {bad} non-finite (NaN/Inf) sample(s) out of {mono.size}")
    wave = resample(torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)), rate, sample_rate)
    if check and wave.numel() < WINDOW_SAMPLES * sample_rate // SAMPLE_RATE:
        raise media_error(
            path, f"audio is {wave.numel() / sample_rate * 1000:.1f} ms long, shorter than one 25 ms fbank window"
        )
    return wave


def wav_to_fbank(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = 128) -> torch.Tensor:
    """Kaldi-compatible log-mel fbank ``(frames, num_mel_bins)`` of a mono ``(samples,)`` waveform.

    DC offset removed over the whole clip first; then 25 ms Hann windows every 10 ms, htk_compat, no dither,
    no energy, as in spec §2.2. A 10.00 s clip gives 998 frames, 2.56 s gives 254.
    """
    from torchaudio.compliance import kaldi

    wave = torch.as_tensor(wave, dtype=torch.float32)
    if wave.dim() == 2:
        wave = wave[0]
    if wave.dim() != 1:
        raise ValueError(f"wav_to_fbank expects a (samples,) waveform, got shape {tuple(wave.shape)}")
    if wave.numel() < int(0.025 * sample_rate):
        raise ValueError(f"waveform of {wave.numel()} samples is shorter than one 25 ms fbank window")
    wave = wave - wave.mean()
    return kaldi.fbank(
        wave[None],
        htk_compat=True,
        sample_frequency=sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=num_mel_bins,
        dither=0.0,
        frame_shift=10,
    )


def num_fbank_frames(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Frames :func:`wav_to_fbank` gives for ``num_samples``: 1 + (n - 400) // 160 at 16 kHz (0 if shorter)."""
    win, hop = int(0.025 * sample_rate), int(0.010 * sample_rate)
    return 0 if num_samples < win else 1 + (int(num_samples) - win) // hop


def padding_fraction(num_samples: int, target_length: int, sample_rate: int = SAMPLE_RATE) -> float:
    """Fraction of a ``target_length``-frame model input that :func:`pad_or_crop` fills with padding.

    A 2.6-s clip (41,600 samples, 258 frames) at the base length 1024 gives 0.748; 10 s (998 frames) 0.025.
    """
    if target_length < 1:
        raise ValueError(f"target_length must be >= 1 fbank frame, got {target_length}")
    return max(0, target_length - num_fbank_frames(num_samples, sample_rate)) / target_length


def pad_or_crop(fbank: torch.Tensor, target_length: int) -> torch.Tensor:
    """Append zero rows at the end (log-mel space, before normalisation) or keep the first ``target_length``."""
    n = fbank.shape[0]
    if n < target_length:
        return torch.nn.functional.pad(fbank, (0, 0, 0, target_length - n))
    return fbank[:target_length]


def normalize_fbank(fbank: torch.Tensor, mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD) -> torch.Tensor:
    """``(fbank - mean) / std`` (the official divisor is ``std``, not ``2 * std``)."""
    return (fbank - mean) / std


def denormalize_fbank(fbank: torch.Tensor, mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD) -> torch.Tensor:
    """Inverse of :func:`normalize_fbank`: back to log-mel values (for plots)."""
    return fbank * std + mean


def add_noise_and_roll(fbank: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training augmentation (spec §2.2 step 7) on a normalised ``(T, F)`` fbank.

    Adds ``U[0,1) * a`` to every bin with one ``a ~ U[0,1)/10`` per clip, then rolls the whole
    spectrogram along time by an integer in ``[-T, T)``.
    """
    t = fbank.shape[0]
    a = torch.rand((), generator=generator) / 10
    noisy = torch.rand(fbank.shape, generator=generator).mul_(a).add_(fbank)
    shift = int(torch.randint(-t, t, (), generator=generator))
    return torch.roll(noisy, shift, dims=0)


def audio_to_input(
    wave: torch.Tensor,
    target_length: int = 1024,
    num_mel_bins: int = 128,
    mean: float = AUDIOSET_MEAN,
    std: float = AUDIOSET_STD,
    sample_rate: int = SAMPLE_RATE,
) -> torch.Tensor:
    """Waveform -> the model's normalised ``(target_length, num_mel_bins)`` fbank (no augmentation)."""
    fbank = wav_to_fbank(wave, sample_rate, num_mel_bins)
    return normalize_fbank(pad_or_crop(fbank, target_length), mean, std)


def write_wav(path: str | Path, wave, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono waveform as 16-bit PCM wav (values clipped to [-1, 1], scaled by 32767, rounded).

    Uses the standard library's ``wave`` writer (no fsync per file: fast for thousands of clips).
    """
    import wave as wavmod

    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
    with wavmod.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())


def load_fbank(
    path: str | Path,
    target_length: int = 1024,
    num_mel_bins: int = 128,
    mean: float = AUDIOSET_MEAN,
    std: float = AUDIOSET_STD,
    channel: int | str = 0,
) -> torch.Tensor:
    """File -> normalised ``(target_length, num_mel_bins)`` fbank, the model's audio input for one clip."""
    return audio_to_input(load_audio(path, channel=channel), target_length, num_mel_bins, mean, std)
