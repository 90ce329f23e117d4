"""Audio alterations for training copies and for stress tests.

:func:`random_copy` makes the augmented training copies of ``scripts/train_default.py``
and ``scripts/train_spectro.py``; ``scripts/robustness.py`` applies the single
alterations one at a time. All work on mono float samples at ``sr`` and are
deterministic for a given ``numpy.random.Generator``.

The copy is built in the order sound takes (issue 30): a voice in a room
(:func:`room_impulse`, :func:`in_room`), the room's other sounds (:func:`with_background`,
:func:`noise`), then the device that records it — band limits and a tilt
(:func:`band_limit`, :func:`tilt`), automatic gain control (:func:`compress`), a phone
line (:func:`phone_line`) or a codec (:func:`codec_round_trip`, :func:`mp3_round_trip`).

Why this is hand-written and not ``audiomentations``: audiomentations 0.43.1 cannot be
installed next to the locked stack — it pins ``soxr<1.0`` (the lock has soxr 1.1.0, which
librosa uses) and its required ``numpy-minmax`` 0.6 and ``numpy-rms`` 0.7 wheels need
``numpy>=2`` (TensorFlow 2.12 / spleeter hold numpy at 1.24.3). It would not save much
either: its ``RoomSimulator`` is a thin wrapper over pyroomacoustics (used here directly,
with a capped image order and a statistical late tail so a copy stays fast),
``AddBackgroundNoise`` reads files from disk whereas the trainer hands over decoded
training-split clips, and it has no μ-law telephone line, phone codecs (Opus/GSM via
ffmpeg) or seeded ``numpy.random.Generator`` interface. Kept by hand therefore: the
room (pyroomacoustics), background and noise mixing, band limits, tilt, compressor,
telephone line, codecs, speed change, crop and gain.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from math import gcd

import numpy as np

from . import audio

DESCRIPTION = (
    "per copy, in this order: every second copy is first played 0.84–1.19× as fast (pitch, formants and "
    "tempo move together, up to ±3 semitones); clips longer than 1.2× a random 1.5–6 s length are cropped "
    "to it; with p=0.5 the voice is put in a room: an image-source shoebox (pyroomacoustics; 3–15 m long, "
    "3–12 m wide, 2.5–5 m high, shrunk where Sabine cannot reach a short RT60; RT60 0.2–1.2 s uniform, "
    "source–microphone distance 0.3–5 m log-uniform; reflections up to order 12, then a statistical "
    "exponential tail at that RT60; direct path at unit gain, response cut at the RT60); with p=0.5 (when "
    "training-split no-voice clips — music, everyday sounds — are given) a random one of them, looped or "
    "cropped from a random offset, is added at −3–20 dB SNR, otherwise with p=0.7 white or pink noise at "
    "0–35 dB SNR; then the device: with p=0.6 a high-pass at 80–400 Hz and a low-pass at 3.4–8 kHz "
    "(log-uniform, 4th-order Butterworth) and a spectral tilt of ±2 dB/octave around 1 kHz; with p=0.3 an "
    "AGC-like feed-forward compressor (ratio 2–6, attack 1–10 ms, release 50–300 ms, threshold 6–20 dB "
    "below the 99th percentile of |y|, no make-up gain); with p=0.1 a telephone line (300–3400 Hz, 8 kHz "
    "μ-law round trip); with p=0.15 a phone codec through ffmpeg (Opus 12–24 kb/s in VoIP mode, or GSM "
    "06.10 at 8 kHz one time in three); 30% of the resampled copies also go through the MP3 encoder at "
    "32–96 kb/s; finally a gain to a peak of 0.1–1 (features are gain-free); training clips only"
)

#: SNR range (dB, uniform) of a real background behind a training copy, and of white or pink noise. Reaching
#: below 0 dB (noise: 0 dB) teaches the voice gate that a voice as loud as the noise or music is still a voice
#: (issue 30: the build trained on 0–20 / 10–35 dB lost a third of the voices at pink 5 dB or music 0 dB).
BACKGROUND_SNR_DB = (-3.0, 20.0)
NOISE_SNR_DB = (0.0, 35.0)
#: Highest image-source order; later reflections come from the statistical tail.
ROOM_MAX_ORDER = 12
#: Samples before the direct path in an impulse response from :func:`room_impulse`
#: (half of pyroomacoustics' fractional-delay filter, which is kept whole).
IR_LEAD = 40
_SPEED_OF_SOUND = 343.0


def noise(rng: np.random.Generator, n: int, *, colour: str | None = None) -> np.ndarray:
    """``n`` samples of white or pink (1/f power) noise; ``colour`` None picks one at random."""
    white = rng.standard_normal(n)
    if colour is None:
        colour = "white" if rng.random() < 0.5 else "pink"
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    return np.fft.irfft(spectrum, n=n)


def at_snr(y: np.ndarray, added: np.ndarray, snr_db: float) -> np.ndarray:
    """``y`` plus ``added`` scaled to ``snr_db`` below the power of ``y``."""
    power = np.mean(np.asarray(y, dtype=np.float64) ** 2)
    return y + added * np.sqrt(power / max(np.mean(added ** 2), 1e-30) / 10 ** (snr_db / 10))


def with_background(y: np.ndarray, rng: np.random.Generator, clip: np.ndarray, snr_db: float) -> np.ndarray:
    """``y`` plus a real recording ``clip`` (looped or cropped to ``y``'s length from a random offset) at ``snr_db``.

    A silent ``clip`` falls back to white noise, so the asked SNR always holds.
    """
    clip = np.asarray(clip, dtype=np.float64).ravel()
    if clip.size == 0 or not np.any(clip):
        return at_snr(y, noise(rng, y.size, colour="white"), snr_db)
    start = int(rng.integers(0, clip.size))
    return at_snr(y, clip[(start + np.arange(y.size)) % clip.size], snr_db)


def room_reverb(y: np.ndarray, rng: np.random.Generator, sr: int, *, rt60: float, direct: float = 1.0) -> np.ndarray:
    """``y`` through a synthetic exponentially decaying room response (``direct``: the dry path's weight)."""
    from scipy.signal import fftconvolve

    t = np.arange(max(int(rt60 * sr), 1)) / sr
    response = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
    response[0] = direct
    return fftconvolve(y, response)[: y.size]


def _shoebox(rng: np.random.Generator, rt60: float, distance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Room dimensions, source and microphone positions (metres) for :func:`room_impulse`."""
    margin = 0.5
    length = rng.uniform(max(3.0, distance + 2 * margin + 0.2), 15.0)
    dims = np.array([length, rng.uniform(3.0, min(length, 12.0)), rng.uniform(2.5, 5.0)])
    smallest = np.array([distance + 2 * margin + 0.2, 3.0, 2.5])
    while _absorption(rt60, dims) is None and np.any(dims > smallest):  # Sabine: a short RT60 needs a small room
        dims = np.maximum(dims * 0.9, smallest)
    low, high = np.full(3, margin), dims - margin
    source = np.array([rng.uniform(low[0], high[0]), rng.uniform(low[1], high[1]), rng.uniform(1.1, min(1.9, high[2]))])
    for _ in range(64):
        azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(-0.5, 0.3)
        mic = source + distance * np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation),
                                            np.sin(elevation)])
        if np.all(mic >= low) and np.all(mic <= high):
            return dims, source, mic
    # Along the length, which always fits (off the centre lines, where side-wall echoes would coincide).
    source = np.array([margin, rng.uniform(low[1], high[1]), rng.uniform(1.1, min(1.9, high[2]))])
    return dims, source, source + [distance, 0.0, 0.0]


def room_impulse(rng: np.random.Generator, sr: int, *, rt60: float, distance: float) -> np.ndarray:
    """Impulse response from a voice to a microphone ``distance`` m away in a random shoebox room.

    The room (3–15 m long, 3–12 m wide, 2.5–5 m high; shrunk when a short ``rt60`` cannot be
    reached in it) gets one wall absorption from Sabine's formula (``pra.inverse_sabine``).
    Reflections up to :data:`ROOM_MAX_ORDER` come from pyroomacoustics' image-source method;
    beyond the time that order covers completely, the response continues as Gaussian noise
    decaying 60 dB in ``rt60`` whose level continues the image-source energy (the usual hybrid:
    the full image-source model for RT60 1 s in a small room takes seconds). Returns float64 of
    shape ``(IR_LEAD + round(rt60 * sr),)``: the direct path, at unit gain, at sample
    :data:`IR_LEAD`; the propagation delay is removed. The direct path is the strongest sample
    up to a few metres; farther away two coinciding wall echoes can peak higher, as in a real
    shoebox. pyroomacoustics' own zero-phase 15 Hz high-pass leaves a tiny ripple before it.
    """
    import pyroomacoustics as pra

    dims, source, mic = _shoebox(rng, rt60, distance)
    absorption = _absorption(rt60, dims)
    room = pra.ShoeBox(dims, fs=sr, materials=pra.Material(1.0 if absorption is None else absorption),
                       max_order=ROOM_MAX_ORDER, air_absorption=False)
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    delay = int(np.floor(distance / _SPEED_OF_SOUND * sr))
    early = np.asarray(room.rir[0][0], dtype=np.float64)[delay:] * distance  # pyroomacoustics: amplitude 1/r
    n = IR_LEAD + max(round(rt60 * sr), 1)
    # The image sources up to order N fill a sphere of radius (N + 1) * min(R) around the
    # listener (pra.inverse_sabine's own argument): within that time the early part is complete.
    radius = (ROOM_MAX_ORDER + 1) * min(a * b / np.hypot(a, b) for a, b in ((dims[0], dims[1]), (dims[0], dims[2]),
                                                                                (dims[1], dims[2])))
    handover = int(np.clip((radius - distance) / _SPEED_OF_SOUND * sr, 0.01 * sr, n - IR_LEAD)) + IR_LEAD
    handover = min(handover, early.size)
    t = np.maximum(np.arange(n) - IR_LEAD, 0) / sr
    decay = np.exp(-6.9 * t / rt60)  # amplitude envelope: -60 dB after rt60
    window = slice(max(IR_LEAD + 1, handover * 3 // 4), handover)  # match the tail's level there
    tail_energy = np.sum(decay[window] ** 2)
    scale = np.sqrt(np.sum(early[window] ** 2) / tail_energy) if tail_energy > 0 else 0.0
    tail = rng.standard_normal(n) * decay * scale
    fade = min(int(0.005 * sr), handover)
    ramp = np.clip((np.arange(n) - (handover - fade)) / max(fade, 1), 0.0, 1.0)
    response = np.zeros(n)
    m = min(n, early.size)
    response[:m] = early[:m]
    return response * (1.0 - ramp) + tail * ramp


def _absorption(rt60: float, dims: np.ndarray) -> float | None:
    """Sabine's wall energy absorption for ``rt60`` in a ``dims`` room; None when it would exceed 1."""
    import pyroomacoustics as pra

    try:
        return float(pra.inverse_sabine(rt60, dims)[0])
    except ValueError:
        return None


def reverberate(y: np.ndarray, response: np.ndarray) -> np.ndarray:
    """``y`` convolved with a :func:`room_impulse` response, aligned on its direct path, same length."""
    from scipy.signal import fftconvolve

    return fftconvolve(np.asarray(y, dtype=np.float64), response)[IR_LEAD: IR_LEAD + len(y)]


def _draw(rng: np.random.Generator, value: float | tuple[float, float], *, log: bool = False) -> float:
    if np.isscalar(value):
        return float(value)
    low, high = value
    return float(np.exp(rng.uniform(np.log(low), np.log(high)))) if log else float(rng.uniform(low, high))


def in_room(y: np.ndarray, rng: np.random.Generator, sr: int, *, rt60: float | tuple[float, float] = (0.2, 1.2),
            distance: float | tuple[float, float] = (0.3, 5.0)) -> np.ndarray:
    """``y`` heard in a random image-source room (:func:`room_impulse`); for a ``(low, high)`` range, one is drawn.

    The RT60 is drawn uniformly, the distance log-uniformly (near microphones are common).
    """
    rt60 = _draw(rng, rt60)
    return reverberate(y, room_impulse(rng, sr, rt60=rt60, distance=_draw(rng, distance, log=True)))


def band_limit(y: np.ndarray, sr: int, *, low_hz: float | None = None, high_hz: float | None = None,
               order: int = 4) -> np.ndarray:
    """``y`` high-passed at ``low_hz`` and low-passed at ``high_hz`` (Butterworth; None or ≥ 0.49·sr skips one)."""
    from scipy.signal import butter, sosfilt

    out = np.asarray(y, dtype=np.float64)
    if low_hz is not None and low_hz > 0:
        out = sosfilt(butter(order, low_hz, btype="highpass", fs=sr, output="sos"), out)
    if high_hz is not None and high_hz < 0.49 * sr:
        out = sosfilt(butter(order, high_hz, btype="lowpass", fs=sr, output="sos"), out)
    return out


def tilt(y: np.ndarray, sr: int, db_per_octave: float, *, pivot_hz: float = 1000.0) -> np.ndarray:
    """``y`` with a spectral tilt of ``db_per_octave`` around ``pivot_hz`` (flat below 50 Hz, within ±12 dB)."""
    spectrum = np.fft.rfft(np.asarray(y, dtype=np.float64))
    freqs = np.maximum(np.fft.rfftfreq(len(y), 1.0 / sr), 50.0)
    gain_db = np.clip(db_per_octave * np.log2(freqs / pivot_hz), -12.0, 12.0)
    return np.fft.irfft(spectrum * 10 ** (gain_db / 20), n=len(y))


def compress(y: np.ndarray, sr: int, *, ratio: float, threshold_db: float, attack_ms: float = 5.0,
             release_ms: float = 100.0) -> np.ndarray:
    """``y`` through a feed-forward compressor, as a device's automatic gain control.

    The envelope is the peak of ``|y|`` held for ``release_ms`` then smoothed with a one-pole
    filter of time constant ``attack_ms``; above ``threshold_db`` (dB re full scale of that
    envelope) the level grows only ``1/ratio`` as fast. No make-up gain.
    """
    from scipy.ndimage import maximum_filter1d
    from scipy.signal import lfilter

    y = np.asarray(y, dtype=np.float64)
    held = maximum_filter1d(np.abs(y), size=max(int(release_ms * 1e-3 * sr), 1))
    a = np.exp(-1.0 / max(attack_ms * 1e-3 * sr, 1.0))
    envelope = lfilter([1 - a], [1, -a], held, zi=[a * held[0]])[0] if y.size else held
    level_db = 20 * np.log10(np.maximum(envelope, 1e-9))
    over = np.maximum(level_db - threshold_db, 0.0)
    return y * 10 ** (-(1 - 1 / ratio) * over / 20)


def telephone(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` band-limited to 300–3400 Hz."""
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(4, [300, 3400], btype="band", fs=sr, output="sos"), y)


def resample(y: np.ndarray, from_sr: int, to_sr: int) -> np.ndarray:
    """``y`` from ``from_sr`` to ``to_sr`` (polyphase)."""
    from scipy.signal import resample_poly

    g = gcd(int(from_sr), int(to_sr))
    return resample_poly(y, to_sr // g, from_sr // g)


def phone_line(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` over a telephone line: 300–3400 Hz, down to 8 kHz, G.711 μ-law (8 bits), back to ``sr``; same length."""
    mu = 255.0
    narrow = resample(telephone(np.asarray(y, dtype=np.float64), sr), sr, 8000)
    peak = max(np.max(np.abs(narrow)), 1e-9) if narrow.size else 1.0
    x = np.clip(narrow / peak, -1.0, 1.0)
    code = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127
    decoded = np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu * peak
    return _fit(resample(decoded, 8000, sr), len(y))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples."""
    return y[:n] if y.size >= n else np.pad(y, (0, n - y.size))


def _ffmpeg_round_trip(y: np.ndarray, sr: int, args: list[str], fmt: str) -> np.ndarray:
    encoded = subprocess.run(
        [audio.ffmpeg_binary(), "-v", "error", "-f", "s16le", "-ar", str(sr), "-ac", "1", "-i", "pipe:0",
         *args, "-f", fmt, "pipe:1"], input=audio.pcm16(y).tobytes(), capture_output=True,
        check=True, timeout=audio.DECODE_TIMEOUT_S).stdout
    return audio.decode(encoded, sr=sr)


def mp3_round_trip(y: np.ndarray, sr: int, kbps: int) -> np.ndarray:
    """``y`` encoded to MP3 at ``kbps`` and decoded again by ffmpeg (same rate, mono)."""
    return _ffmpeg_round_trip(y, sr, ["-b:a", f"{int(kbps)}k"], "mp3")


def codec_round_trip(y: np.ndarray, sr: int, codec: str, kbps: int = 16) -> np.ndarray:
    """``y`` through a phone codec and back by ffmpeg: ``"opus"`` (VoIP mode, ``kbps``) or ``"gsm"`` (GSM 06.10, 8 kHz).

    Returns float32 at ``sr``, cut or padded to ``len(y)``. (ffmpeg here has no AMR encoder.)
    """
    if codec == "opus":
        out = _ffmpeg_round_trip(y, sr, ["-c:a", "libopus", "-application", "voip", "-b:a", f"{int(kbps)}k"], "ogg")
    elif codec == "gsm":
        out = _ffmpeg_round_trip(y, sr, ["-ar", "8000", "-c:a", "libgsm_ms"], "wav")
    else:
        raise ValueError(f"codec must be 'opus' or 'gsm', not {codec!r}")
    return _fit(out, len(y))


def speed(y: np.ndarray, rate: float, sr: int) -> np.ndarray:
    """``y`` played ``rate`` times as fast (resampled: pitch, formants and tempo all move)."""
    import librosa

    return librosa.resample(np.asarray(y, dtype=np.float32), orig_sr=round(sr * rate), target_sr=sr,
                            res_type="soxr_hq")


def laptop(y: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """``y`` as a laptop hears it: a room with RT60 0.4 s at 0.6 m, white noise at 20 dB SNR, 120 Hz high-pass."""
    out = in_room(y, rng, sr, rt60=0.4, distance=0.6)
    out = at_snr(out, noise(rng, out.size, colour="white"), 20.0)
    return band_limit(out, sr, low_hz=120.0)


def _device(y: np.ndarray, rng: np.random.Generator, sr: int, resample: bool) -> np.ndarray:
    """The recording device's part of :func:`random_copy` (see :data:`DESCRIPTION`)."""
    if rng.random() < 0.6:
        low = float(np.exp(rng.uniform(np.log(80.0), np.log(400.0))))
        high = float(np.exp(rng.uniform(np.log(3400.0), np.log(8000.0))))
        y = tilt(band_limit(y, sr, low_hz=low, high_hz=high), sr, rng.uniform(-2.0, 2.0))
    if rng.random() < 0.3:
        held = np.percentile(np.abs(y), 99) if y.size else 0.0
        threshold = 20 * np.log10(max(held, 1e-9)) - rng.uniform(6.0, 20.0)
        y = compress(y, sr, ratio=rng.uniform(2.0, 6.0), threshold_db=threshold, attack_ms=rng.uniform(1.0, 10.0),
                     release_ms=rng.uniform(50.0, 300.0))
    if rng.random() < 0.1:
        y = phone_line(y, sr)
    n = y.size
    if rng.random() < 0.15:
        y = 0.9 * y / max(np.max(np.abs(y)), 1e-9)
        if rng.random() < 1 / 3:
            y = codec_round_trip(y, sr, "gsm")
        else:
            y = codec_round_trip(y, sr, "opus", int(rng.choice([12, 16, 20, 24])))
    if resample and rng.random() < 0.3:
        y = 0.9 * y / max(np.max(np.abs(y)), 1e-9)
        y = _fit(mp3_round_trip(y, sr, int(rng.choice([32, 48, 64, 96]))), n)
    return np.asarray(y, dtype=np.float64)


def random_copy(y: np.ndarray, rng: np.random.Generator, sr: int, *, resample: bool = False,
                backgrounds: Sequence[np.ndarray] | None = None, added: dict | None = None) -> np.ndarray:
    """One randomly altered copy of ``y`` (see :data:`DESCRIPTION`), float32, peak ≤ 1.

    ``resample`` marks the every-second copy (speed change, MP3). ``backgrounds``: real no-voice
    recordings (mono float arrays at ``sr``, training split only) to mix in. ``added``, when given, is
    filled with what was mixed in: ``kind`` ("background", "noise" or "") and ``snr_db`` (inf for
    nothing). The result has ``y``'s length unless the speed change or the crop changed it.
    Deterministic for a given ``rng`` state.
    """
    added = {} if added is None else added
    added.update(kind="", snr_db=float("inf"))
    y = np.asarray(y, dtype=np.float64)
    if resample:
        y = speed(y, rng.uniform(0.84, 1.19), sr).astype(np.float64)
    crop = rng.uniform(1.5, 6.0)
    if y.size > crop * sr * 1.2:
        length = int(crop * sr)
        start = int(rng.integers(0, y.size - length))
        y = y[start: start + length]
    if rng.random() < 0.5:
        y = in_room(y, rng, sr)
    if backgrounds is not None and len(backgrounds) and rng.random() < 0.5:
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        added.update(kind="background", snr_db=rng.uniform(*BACKGROUND_SNR_DB))
        y = with_background(y, rng, background, added["snr_db"])
    elif rng.random() < 0.7:
        hiss = noise(rng, y.size)
        added.update(kind="noise", snr_db=rng.uniform(*NOISE_SNR_DB))
        y = at_snr(y, hiss, added["snr_db"])
    y = _device(y, rng, sr, resample)
    y = y * rng.uniform(0.1, 1.0) / max(np.max(np.abs(y)), 1e-9)
    return y.astype(np.float32)
