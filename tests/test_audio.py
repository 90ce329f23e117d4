"""Decoding, duration bounds, trimming: real ffmpeg on generated files."""

from __future__ import annotations

import subprocess
import tempfile

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


# Every container the upload help names, written by real ffmpeg the way phones and ffmpeg itself write them.
UPLOAD_FORMATS = {
    "m4a (AAC, index at the end)": ("memo.m4a", ["-c:a", "aac", "-b:a", "96k"]),
    "mp4 (H.264 + AAC, index at the end)": ("camera.mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]),
    "mkv": ("take.mkv", ["-c:a", "libvorbis"]),
    "webm": ("take.webm", ["-c:a", "libopus"]),
    "ogg/opus": ("take.opus", ["-c:a", "libopus"]),
    "mp3": ("take.mp3", ["-c:a", "libmp3lame"]),
    "aac/adts": ("take.aac", ["-c:a", "aac"]),
    "flac": ("take.flac", []),
    "wav 8-bit": ("u8.wav", ["-c:a", "pcm_u8"]),
    "wav 16-bit": ("s16.wav", ["-c:a", "pcm_s16le"]),
    "wav 24-bit": ("s24.wav", ["-c:a", "pcm_s24le"]),
    "wav 32-bit": ("s32.wav", ["-c:a", "pcm_s32le"]),
    "wav 32-bit float": ("f32.wav", ["-c:a", "pcm_f32le"]),
    "aiff": ("take.aiff", ["-c:a", "pcm_s16be"]),
}


@pytest.fixture(scope="module")
def stereo_source(tmp_path_factory):
    """3 s of a sung-like tone, stereo at 44.1 kHz (as a phone records), as a 16-bit WAV."""
    folder = tmp_path_factory.mktemp("source")
    mono = folder / "mono.wav"
    audio.write_wav(mono, sung_tone(3.0, sr=44100), sr=44100)
    return ffmpeg_convert(mono, folder / "stereo.wav", "-ac", "2")


def encode(source, dst, args):
    """``source`` encoded to ``dst``; a video track is added when ``args`` name a video codec."""
    video = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=3"] if "-c:v" in args else []
    maps = ["-map", "0:a", "-map", "1:v"] if video else []
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *video, *maps, *args,
                    "-shortest", str(dst)], check=True)
    return dst


@pytest.mark.parametrize("kind", list(UPLOAD_FORMATS))
def test_every_container_decodes_from_an_upload_as_from_its_path(tmp_path, stereo_source, kind, monkeypatch):
    name, args = UPLOAD_FORMATS[kind]
    path = encode(stereo_source, tmp_path / name, args)
    data = path.read_bytes()
    if path.suffix in (".m4a", ".mp4"):
        assert data.find(b"moov") > data.find(b"mdat") > 0, "written as phones write it: the index last"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spill"))
    (tmp_path / "spill").mkdir()
    from_path = audio.decode(path)
    assert abs(from_path.size / audio.SAMPLE_RATE - 3.0) < 0.1 and np.max(np.abs(from_path)) > 0.05
    assert np.array_equal(audio.decode(data, name=name), from_path), "the upload decodes exactly as the file"
    unnamed = audio.decode(data)  # a browser may send no usable name: ffmpeg finds the format from the contents
    assert abs(unnamed.size - from_path.size) <= 0.005 * audio.SAMPLE_RATE
    n = min(unnamed.size, from_path.size)
    assert np.max(np.abs(unnamed[:n] - from_path[:n])) < 1e-3
    assert not list((tmp_path / "spill").iterdir()), "the temporary copy of the upload is gone"


def test_unreadable_upload_is_explained_in_plain_words_and_leaves_no_temporary_file(tmp_path, stereo_source,
                                                                                   monkeypatch):
    (tmp_path / "spill").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spill"))
    memo = encode(stereo_source, tmp_path / "memo.m4a", ["-c:a", "aac"]).read_bytes()
    cut = memo[: memo.find(b"moov")]  # a recording interrupted before its index was written
    with pytest.raises(UnreadableAudio) as incomplete:
        audio.decode(cut, name="memo.m4a")
    with pytest.raises(UnreadableAudio) as garbage:
        audio.decode(b"this is a shopping list" * 40, name="notes.mp3")
    assert "memo.m4a is not audio singtalk can read: the file is incomplete" in str(incomplete.value)
    assert "notes.mp3 is not audio singtalk can read: its contents are not in any audio or video format" \
        in str(garbage.value)
    for message in (str(incomplete.value), str(garbage.value)):
        assert "pipe:" not in message and "Invalid data" not in message and "spill" not in message
    assert not list((tmp_path / "spill").iterdir())


@pytest.mark.parametrize("name,suffix", [("memo.M4A", ".M4A"), ("a/b\\c.mp4", ".mp4"), ("noext", ""),
                                         ("x.m4a;rm -rf", ""), ("../../.bashrc", ""), (None, "")])
def test_the_temporary_copy_takes_only_a_plain_extension_from_the_name(name, suffix):
    assert audio._upload_suffix(name) == suffix


def test_too_long_says_what_to_do_not_which_server_setting(sung_wav, monkeypatch):
    monkeypatch.setattr(audio, "MAX_DURATION_S", 1.0)
    with pytest.raises(TooLong) as err:
        audio.decode(sung_wav.read_bytes(), name="song.wav")
    assert str(err.value) == "song.wav is longer than 1.0 s; cut it shorter."


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


@pytest.mark.parametrize("listing", [
    "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3,\n{path}\n#EXT-X-ENDLIST\n",
    "ffconcat version 1.0\nfile {path}\n",
])
def test_an_uploaded_playlist_cannot_read_files_on_the_server(tmp_path, sung_wav, listing):
    """The upload sits in a file ffmpeg could follow references from: playlists and lists are refused."""
    secret = ffmpeg_convert(sung_wav, tmp_path / "private.mp3")
    assert audio.decode(secret).size > 0
    with pytest.raises(UnreadableAudio, match="lists other files or links to read, which is not allowed"):
        audio.decode(listing.format(path=secret).encode(), name="list.m3u8")


def test_uploads_may_use_every_file_format_but_no_device_or_reference():
    allowed = set(audio.upload_demuxers().split(","))
    assert {"mov", "mp4", "m4a", "matroska", "webm", "ogg", "mp3", "aac", "flac", "wav", "aiff"} <= allowed
    assert not allowed & (audio.REFERENCING_DEMUXERS | {"alsa", "pulse", "x11grab", "v4l2", "lavfi"})


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
