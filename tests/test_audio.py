"""Decoding, duration bounds, trimming: real ffmpeg on generated files."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from singtalk import audio
from singtalk.errors import NoAudioStream, SilentAudio, TooLong, TooShort, UnreadableAudio
from tests.conftest import ffmpeg_convert, sung_tone


def lavfi(tmp_path, name: str, spec: str, *args: str):
    out = tmp_path / name
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", spec, *args, str(out)],
                   check=True)
    return out


@pytest.mark.parametrize("ext,args", [
    ("wav", []), ("flac", []), ("mp3", []), ("ogg", ["-c:a", "libvorbis"]),
    ("m4a", ["-c:a", "aac"]), ("webm", ["-c:a", "libopus"]), ("mp4", ["-c:a", "aac"]),
])
def test_decodes_common_formats_to_mono_16k(tmp_path, ext, args):
    path = lavfi(tmp_path, f"tone.{ext}", "sine=frequency=440:duration=2:sample_rate=44100", *args)
    y = audio.decode(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size / audio.SAMPLE_RATE - 2.0) < 0.08
    assert np.isfinite(y).all() and 0.05 < np.max(np.abs(y)) <= 1.0


@pytest.mark.parametrize("channels,rate", [(2, 44100), (8, 96000), (1, 8000), (2, 192000)])
def test_any_channel_count_and_rate(tmp_path, channels, rate):
    path = lavfi(tmp_path, "multi.wav", f"sine=frequency=300:duration=1.5:sample_rate={rate}",
                 "-ac", str(channels), "-ar", str(rate))
    y = audio.decode(path, sr=22050)
    assert abs(y.size / 22050 - 1.5) < 0.02


def test_bytes_and_path_agree(tmp_path, sung_wav):
    assert np.array_equal(audio.decode(sung_wav), audio.decode(sung_wav.read_bytes()))


def test_empty_and_garbage_are_unreadable(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 50)
    noise = tmp_path / "noise.flac"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    for bad in (empty, text, noise, b"", b"\x00" * 10):
        with pytest.raises(UnreadableAudio):
            audio.decode(bad)
    with pytest.raises(UnreadableAudio, match="no such file"):
        audio.decode(tmp_path / "missing.wav")


def test_truncated_flac(tmp_path, sung_wav):
    flac = ffmpeg_convert(sung_wav, tmp_path / "sung.flac")
    data = flac.read_bytes()
    (tmp_path / "third.flac").write_bytes(data[: len(data) // 3])
    (tmp_path / "header.flac").write_bytes(data[:100])
    third = audio.decode(tmp_path / "third.flac")  # ffmpeg recovers what is there
    assert 0 < third.size < audio.decode(flac).size
    with pytest.raises(UnreadableAudio):
        audio.decode(tmp_path / "header.flac")


def test_video_without_audio(tmp_path):
    path = lavfi(tmp_path, "video.mp4", "testsrc=duration=1:size=64x64:rate=10")
    with pytest.raises(NoAudioStream):
        audio.decode(path)


def test_duration_bounds(tmp_path, sung_wav):
    with pytest.raises(TooLong, match="longer than"):
        audio.decode(sung_wav, max_duration=1.0)
    with pytest.raises(TooShort, match="at least"):
        audio.decode(sung_wav, min_duration=10.0)


def test_long_stream_stops_at_limit(tmp_path):
    # 3 hours of silence compressed to a few kB: must be refused quickly without decoding hours.
    path = lavfi(tmp_path, "long.flac", "anullsrc=r=8000:cl=mono", "-t", "10800")
    with pytest.raises(TooLong):
        audio.decode(path, max_duration=60)


def test_nan_samples_become_finite(tmp_path):
    y = sung_tone(2.0)
    y[1000:1100] = np.nan
    y[2000] = np.inf
    raw = tmp_path / "nan.f32"
    raw.write_bytes(y.astype("<f4").tobytes())
    wav = tmp_path / "nan.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "f32le", "-ar", "16000", "-ac", "1",
                    "-i", str(raw), "-c:a", "pcm_f32le", str(wav)], check=True)
    out = audio.decode(wav)
    assert np.isfinite(out).all()


def test_trim_removes_quiet_parts_inside():
    sr = audio.SAMPLE_RATE
    tone = sung_tone(1.0)
    quiet = np.zeros(sr, dtype=np.float32) + 1e-4
    y = np.concatenate([quiet, tone, quiet, tone, quiet])
    trimmed = audio.trim_quiet(y)
    assert abs(trimmed.size / sr - 2.0) < 0.15  # frame-granular edges


def test_silence_and_too_little_sound():
    with pytest.raises(SilentAudio):
        audio.prepare(np.zeros(audio.SAMPLE_RATE * 5, dtype=np.float32))
    with pytest.raises(TooShort, match="after removing silence"):
        audio.prepare(np.concatenate([np.zeros(16000, np.float32), sung_tone(0.2)]))


def test_write_wav_round_trip(tmp_path):
    y = sung_tone(1.0)
    path = audio.write_wav(tmp_path / "sub" / "x.wav", y)
    back = audio.decode(path)
    assert np.max(np.abs(back - y)) < 1e-3
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_format_seconds():
    assert audio.format_seconds(2.5) == "2.5 s"
    assert audio.format_seconds(75) == "1 min 15 s"
    assert audio.format_seconds(3 * 3600) == "3 h 0 min"


def test_playlist_upload_cannot_reach_other_files(tmp_path, sung_wav):
    playlist = tmp_path / "evil.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3,\nhttp://127.0.0.1:9/x.wav\n#EXT-X-ENDLIST\n")
    with pytest.raises(UnreadableAudio):
        audio.decode(playlist.read_bytes())


@pytest.mark.parametrize("channels,rate", [(1, 16000), (2, 44100), (8, 96000)])
def test_in_process_wav_flac_reader_matches_ffmpeg(tmp_path, channels, rate):
    """WAV/FLAC files skip the ffmpeg start-up; the samples agree with ffmpeg's decoding of the same bytes."""
    path = lavfi(tmp_path, "tone.flac", f"sine=frequency=330:duration=2:sample_rate={rate}",
                 "-ac", str(channels), "-ar", str(rate))
    direct = audio._read_with_soundfile(path, audio.SAMPLE_RATE, 60.0, "too long")
    assert direct is not None
    via_ffmpeg = audio._decode_with_ffmpeg(path, audio.SAMPLE_RATE, 60.0, path.name, "too long")
    assert np.array_equal(audio.decode(path.read_bytes()), direct)  # uploaded bytes take the same reader
    n = min(direct.size, via_ffmpeg.size)
    assert abs(direct.size - via_ffmpeg.size) <= 2
    if rate == audio.SAMPLE_RATE:
        assert np.array_equal(direct[:n], via_ffmpeg[:n])
    else:  # two resamplers: same tone, tiny differences
        assert np.corrcoef(direct[200:n - 200], via_ffmpeg[200:n - 200])[0, 1] > 0.999
