#!/usr/bin/env python
"""Measure what Chromium's default voice processing does to singing recorded from the microphone.

Unless asked not to, browsers switch on processing built for speech calls: echo cancellation, noise
suppression, automatic gain control. ``st.audio_input`` names none of them. This script records corpus clips
through Chromium's fake microphone (``--use-file-for-fake-audio-capture``, which loops a WAV) twice:

* **A, defaults** -- ``getUserMedia({audio: true})``;
* **B, no processing** -- ``getUserMedia({audio: {echoCancellation: false, noiseSuppression: false,
  autoGainControl: false}})``, what the live meter asks for.

Each take is recorded as ``st.audio_input`` records it -- ``MediaRecorder``, ``audio/webm`` (Opus) at
128 kb/s -- on a small page served from a loopback ``http.server``, and comes back to Python as base64. Both
takes (first channel) and the source file are decoded with ``singtalk.audio.decode`` and classified with the
shipped model (``Classifier.classify``, as the app does). Beside the answers it reports, for each take, the
level change against the source (dB, RMS) and the Pearson correlation of its log-mel spectrogram with the
source's (after aligning the take on the looped source by cross-correlation), so the effect shows beyond the
label.

Clips: by default one singing clip of each of six sources and one talking clip of each of four, all at least
5 s long, the test side of ``models/split.json`` where the source has one (RAVDESS's sung clips last 2.4 s,
too short for the app's 4 s windows to see a whole take).

It also reads the track settings Chromium gives ``st.audio_input``'s own request (:data:`PROBES`): the
processing the app's recorder really gets.

Usage: python scripts/measure_browser_processing.py [--seconds S] [--noise SNR] [--clips a,b] [--json OUT]
       [--keep DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import json
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from singtalk import audio, dataset  # noqa: E402
from singtalk.config import REPO_ROOT, data_dir, models_dir  # noqa: E402
from singtalk.errors import SingtalkError  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FAKE_RATE = 48000
"""The rate of the WAV the fake microphone plays (Chromium captures at 48 kHz)."""

CONSTRAINTS = {
    "defaults": {"audio": True},
    "no processing": {"audio": {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}},
}
"""The two constraint sets recorded (A, B)."""

PROBES = {
    "st.audio_input (sample_rate=16000, the app's)": {"audio": {"sampleRate": {"ideal": 16000}}},
    "st.audio_input(sample_rate=48000)": {"audio": {"sampleRate": {"ideal": 48000}}},
}
"""Constraint sets whose track settings are only read, not recorded. ``st.audio_input`` (Streamlit 1.52, its
wavesurfer.js record plugin) asks for ``{audio: {sampleRate: {ideal: <sample_rate>}}}`` (``{audio: true}``
with ``sample_rate=None``): it leaves the processing to the browser's choice of source."""

SOURCES = {
    "singing": ["gtsinger_demo", "m4singer_demo", "mir1k", "pjs_justln1113", "csd_drmeter",
                "kr_childsong_saebyulgan"],
    "talking": ["librispeech", "kr_emotional_emotiontts", "speechocean762", "jaspeech_internal_r9y9"],
}
"""One clip of each source (CSD's singer and PJS have no test-side clips: theirs come from the train side)."""

SETTINGS = ("echoCancellation", "noiseSuppression", "autoGainControl", "sampleRate", "channelCount")
"""The track settings reported."""

MIN_S, TARGET_S, MAX_S = 5.0, 8.0, 12.0
"""Clips last at least ``MIN_S``; the one closest to ``TARGET_S`` is taken; takes are cut at ``MAX_S``."""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>singtalk: the browser's processing</title></head>
<body><p id="state">ready</p>
<script>
// Record `seconds` of the microphone with `constraints`, as st.audio_input does (MediaRecorder, webm/Opus,
// 128 kb/s); resolve to the take (base64), its MIME type and the track's settings.
async function record(constraints, seconds) {
  const stream = await navigator.mediaDevices.getUserMedia(constraints);
  const settings = stream.getAudioTracks()[0].getSettings();
  const mimeType = ["audio/webm", "audio/ogg", "audio/mp4"].find(t => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, {mimeType, audioBitsPerSecond: 128000});
  const chunks = [];
  recorder.ondataavailable = e => { if (e.data.size > 0) chunks.push(e.data); };
  const stopped = new Promise(resolve => { recorder.onstop = resolve; });
  document.getElementById("state").textContent = "recording";
  recorder.start(250);
  await new Promise(resolve => setTimeout(resolve, seconds * 1000));
  recorder.stop();
  await stopped;
  stream.getTracks().forEach(t => t.stop());
  document.getElementById("state").textContent = "done";
  const bytes = new Uint8Array(await new Blob(chunks, {type: recorder.mimeType}).arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return {mime: recorder.mimeType, settings, data: btoa(text)};
}
// The track settings `constraints` give, without recording.
async function settingsOf(constraints) {
  const stream = await navigator.mediaDevices.getUserMedia(constraints);
  const settings = stream.getAudioTracks()[0].getSettings();
  stream.getTracks().forEach(t => t.stop());
  return settings;
}
</script></body></html>
"""


# -- the page and the browser -----------------------------------------------------------------------------------
@contextlib.contextmanager
def serve_page():
    """Serve :data:`PAGE` at ``http://127.0.0.1:<free port>/`` (a secure context: getUserMedia works); yield the URL."""
    body = PAGE.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def chromium_args(wav: Path) -> list[str]:
    """Headless Chromium with a fake microphone looping ``wav``, no network beyond loopback."""
    return ["--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", "--disable-background-networking",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


def record_on(page, url: str, constraints: dict, seconds: float) -> dict:
    """One take on a Playwright ``page`` of a browser whose fake microphone is set: ``{mime, settings, data}``,
    ``data`` the recorded file's bytes."""
    if page.url != url:
        page.goto(url)
    take = page.evaluate("([c, s]) => record(c, s)", [constraints, seconds])
    take["data"] = base64.b64decode(take["data"])
    return take


def settings_on(page, url: str, constraints: dict) -> dict:
    if page.url != url:
        page.goto(url)
    return page.evaluate("(c) => settingsOf(c)", constraints)


def record_clip(playwright, url: str, wav: Path, seconds: float, *, with_probes: bool = False) -> dict:
    """Launch Chromium on ``wav`` and record one take per :data:`CONSTRAINTS` set; ``{name: take}``
    (plus ``"probes"``, the track settings of each of :data:`PROBES`, when asked)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav))
    try:
        context = browser.new_context(permissions=["microphone"])
        page = context.new_page()
        takes = {name: record_on(page, url, c, seconds) for name, c in CONSTRAINTS.items()}
        context.close()
        if with_probes:  # a fresh context each: an open source would be reused
            takes["probes"] = {}
            for name, constraints in PROBES.items():
                context = browser.new_context(permissions=["microphone"])
                takes["probes"][name] = settings_on(context.new_page(), url, constraints)
                context.close()
        return takes
    finally:
        browser.close()


# -- clips ----------------------------------------------------------------------------------------------------
def pick_clips(root: Path, split_file: Path) -> pd.DataFrame:
    """One clip per source of :data:`SOURCES` (``path, label, source, duration_s, side``): at least ``MIN_S``
    long, on the test side of ``split_file`` when the source has such a clip, the closest to ``TARGET_S``.

    The split file is only read (``side`` is ``?`` for a speaker group it does not list)."""
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    manifest["duration_s"] = manifest["duration_s"].astype(float)
    sides = json.loads(split_file.read_text())["side_of_group"] if split_file.is_file() else {}
    manifest["side"] = pd.Series(dataset.speaker_groups(manifest), index=manifest.index).map(sides).fillna("?")
    rows = []
    for label, sources in SOURCES.items():
        for source in sources:
            pool = manifest[(manifest["label"] == label) & (manifest["source"] == source)
                            & (manifest["duration_s"] >= MIN_S)]
            if pool.empty:
                continue
            if (pool["side"] == "test").any():
                pool = pool[pool["side"] == "test"]
            pool = pool.assign(off=(pool["duration_s"] - TARGET_S).abs()).sort_values(["off", "path"])
            rows.append(pool.iloc[0])
    return pd.DataFrame(rows)[["path", "label", "source", "duration_s", "side"]].reset_index(drop=True)


def to_wav(src: Path, dst: Path, *, seconds: float | None = None, noise_snr: float | None = None) -> Path:
    """ffmpeg: ``src`` → 16-bit mono :data:`FAKE_RATE` WAV, cut to ``seconds``; with ``noise_snr``, pink noise
    at that SNR is mixed in (seeded by the file name) and the peak brought to -1 dBFS if it passed it."""
    cut = ["-t", f"{seconds:.2f}"] if seconds else []
    subprocess.run([audio.ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *cut,
                    "-ac", "1", "-ar", str(FAKE_RATE), "-c:a", "pcm_s16le", str(dst)], check=True)
    if noise_snr is not None:
        from singtalk import augment

        y = audio.decode(dst, sr=FAKE_RATE).astype(np.float64)
        rng = np.random.default_rng([0, zlib.crc32(Path(src).name.encode())])
        y = augment.at_snr(y, augment.noise(rng, y.size, colour="pink"), noise_snr)
        y *= min(1.0, 10 ** (-1 / 20) / max(float(np.max(np.abs(y))), 1e-9))
        audio.write_wav(dst, y, sr=FAKE_RATE)
    return dst


def decode_take(data: bytes, name: str) -> np.ndarray:
    """A recorded take → mono 16 kHz via :func:`singtalk.audio.decode`, keeping the first channel.

    Chromium's unprocessed track is stereo (two equal channels from the fake microphone), which ffmpeg's own
    downmix would make 3 dB louder; the browser's Web Audio downmix, which turns ``st.audio_input``'s take
    into its WAV, averages them instead -- the first channel is that average here.
    """
    wav = subprocess.run([audio.ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-i", "pipe:0", "-af",
                          "pan=mono|c0=c0", "-ar", str(audio.SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav",
                          "pipe:1"], input=data, capture_output=True, check=False)
    if wav.returncode != 0 or not wav.stdout:
        raise SingtalkError(f"{name}: ffmpeg cannot read it ({wav.stderr.decode(errors='replace')[-300:]})")
    return audio.decode(wav.stdout, name=name)


# -- signal measures ------------------------------------------------------------------------------------------
def rms_db(y: np.ndarray) -> float:
    r = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    return 20 * np.log10(r) if r > 0 else float("-inf")


def align(take: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, int, float]:
    """The stretch of the looped ``source`` that ``take`` recorded, its offset in ``source`` (samples) and the
    peak normalised cross-correlation (1: the same waveform)."""
    from scipy.signal import correlate

    reps = int(np.ceil(take.size / max(source.size, 1))) + 2
    looped = np.tile(source, reps)
    window = looped[: source.size + take.size]
    xc = correlate(window, take, mode="valid", method="fft")[: source.size]
    energy = np.convolve(np.square(window), np.ones(take.size), mode="valid")[: source.size]
    norm = xc / np.sqrt(np.maximum(energy, 1e-12) * max(float(np.sum(np.square(take))), 1e-12))
    lag = int(np.argmax(norm))
    return looped[lag: lag + take.size], lag, float(norm[lag])


def log_mel(y: np.ndarray, sr: int = audio.SAMPLE_RATE) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=256, n_mels=64, fmax=sr / 2)
    return 10 * np.log10(np.maximum(mel, 1e-10))


def signal_measures(take: np.ndarray, source: np.ndarray) -> dict:
    """``take`` (16 kHz) against the part of the looped ``source`` it recorded.

    ``level_db``: the take's RMS level minus the source's over the same stretch; ``mel_corr``: Pearson
    correlation of the two log-mel spectrograms (64 bands, each floored 80 dB below its own loudest bin, so a
    change of level alone keeps 1); ``wave_corr``: the alignment's normalised cross-correlation; ``quiet_db``
    and ``loud_db``: the level change in the quieter and louder halves of the source's sounding 16 ms frames
    (within 40 dB of its loudest; noise suppression mutes quiet frames, gain control lifts them).
    """
    if take.size < audio.SAMPLE_RATE // 2:
        return {"level_db": float("nan"), "mel_corr": float("nan"), "wave_corr": float("nan"),
                "quiet_db": float("nan"), "loud_db": float("nan"), "lag_s": float("nan")}
    ref, lag, wave_corr = align(take, source)
    s, t = log_mel(ref), log_mel(take)
    s, t = np.maximum(s, s.max() - 80.0), np.maximum(t, t.max() - 80.0)
    mel_corr = float(np.corrcoef(s.ravel(), t.ravel())[0, 1])
    hop = 256
    n = min(ref.size, take.size) // hop
    frame_ref = np.square(ref[: n * hop].astype(np.float64)).reshape(n, hop).mean(axis=1)
    frame_take = np.square(take[: n * hop].astype(np.float64)).reshape(n, hop).mean(axis=1)
    sounding = frame_ref > frame_ref.max() * 10 ** (-40 / 10)
    order = np.argsort(frame_ref[sounding])
    quiet, loud = order[: order.size // 2], order[order.size // 2:]

    def change(idx):
        a, b = frame_take[sounding][idx].mean(), frame_ref[sounding][idx].mean()
        return float(10 * np.log10(max(a, 1e-20) / max(b, 1e-20)))

    return {"level_db": rms_db(take) - rms_db(ref), "mel_corr": mel_corr, "wave_corr": wave_corr,
            "quiet_db": change(quiet), "loud_db": change(loud), "lag_s": lag / audio.SAMPLE_RATE}


# -- the measurement ------------------------------------------------------------------------------------------
@dataclass
class Row:
    clip: str
    label: str
    source: str
    side: str
    seconds: float
    answers: dict = field(default_factory=dict)  # condition → (label or "error: ...", p(singing))
    measures: dict = field(default_factory=dict)  # take → signal_measures
    settings: dict = field(default_factory=dict)  # take → track settings


def answer(classifier, y: np.ndarray) -> tuple[str, float]:
    from singtalk.classify import classify_safely

    prediction, error = classify_safely(classifier, y)
    if prediction is None:
        return f"refused ({error})", float("nan")
    return prediction.label, prediction.p_singing


def measure(clips: pd.DataFrame, root: Path, *, seconds: float | None, keep: Path | None,
            noise_snr: float | None = None, log=print) -> tuple:
    """Record, decode, classify and measure every clip; ``(rows, the probes' track settings, times)``."""
    from playwright.sync_api import sync_playwright

    from singtalk.classify import Classifier
    from singtalk.registry import ModelStore

    times = {}
    started = time.perf_counter()
    takes, probes = {}, {}
    with tempfile.TemporaryDirectory() as tmp, serve_page() as url, sync_playwright() as p:
        for i, clip in clips.iterrows():
            length = min(float(clip["duration_s"]), MAX_S)
            wav = to_wav(root / clip["path"], Path(tmp) / f"clip{i}.wav", seconds=length, noise_snr=noise_snr)
            recorded = record_clip(p, url, wav, seconds or length, with_probes=(i == 0))
            probes = recorded.pop("probes", probes)
            source = audio.decode(wav)
            takes[i] = (source, recorded)
            if keep:
                keep.mkdir(parents=True, exist_ok=True)
                stem = Path(clip["path"]).stem
                for name, take in recorded.items():
                    (keep / f"{i:02d}_{stem}_{name.replace(' ', '_')}.webm").write_bytes(take["data"])
            log(f"recorded {i + 1}/{len(clips)}: {clip['path']} ({seconds or length:.1f} s × {len(recorded)})")
    times["recording_s"] = time.perf_counter() - started

    started = time.perf_counter()
    classifier = Classifier(ModelStore(models_dir()).load())
    times["model_load_s"] = time.perf_counter() - started
    started = time.perf_counter()
    rows = []
    for i, clip in clips.iterrows():
        source, recorded = takes[i]
        row = Row(clip=clip["path"], label=clip["label"], source=clip["source"], side=clip["side"],
                  seconds=round(source.size / audio.SAMPLE_RATE, 2))
        row.answers["file"] = answer(classifier, source)
        for name, take in recorded.items():
            row.settings[name] = {k: take["settings"].get(k) for k in SETTINGS}
            try:
                y = decode_take(take["data"], name=f"the {name} take")
            except SingtalkError as err:
                row.answers[name] = (f"refused ({err})", float("nan"))
                continue
            row.answers[name] = answer(classifier, y)
            row.measures[name] = signal_measures(y, source)
        rows.append(row)
    times["classify_s"] = time.perf_counter() - started
    return rows, probes, {**times, "version": classifier.version}


# -- output -----------------------------------------------------------------------------------------------------
def fmt(x: float, spec: str) -> str:
    return "—" if x is None or not np.isfinite(x) else format(x, spec)


def markdown_table(rows: list[Row]) -> str:
    names = list(CONSTRAINTS)
    head = ("| Clip | Label | File: answer, p(singing) | Defaults: answer, p(singing) | No processing: answer, "
            "p(singing) | Level Δ dB (A / B) | Quiet half Δ dB (A / B) | Log-mel corr. (A / B) |")
    lines = [head, "|---|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        cells = [f"{r.source} `{Path(r.clip).name}` ({r.seconds:.1f} s, {r.side})", r.label]
        for cond in ["file", *names]:
            label, p = r.answers.get(cond, ("—", float("nan")))
            cells.append(f"{label} {fmt(p, '.2f')}")
        for key, spec in (("level_db", "+.1f"), ("quiet_db", "+.1f"), ("mel_corr", ".3f")):
            cells.append(" / ".join(fmt(r.measures.get(n, {}).get(key, float("nan")), spec) for n in names))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """Per label: how many answers were right with each condition, mean p(singing), mean measures."""
    out = []
    for label in ("singing", "talking"):
        mine = [r for r in rows if r.label == label]
        if not mine:
            continue
        parts = []
        for cond in ["file", *CONSTRAINTS]:
            right = sum(r.answers.get(cond, ("",))[0] == label for r in mine)
            p = np.nanmean([r.answers.get(cond, ("", np.nan))[1] for r in mine])
            parts.append(f"{cond}: {right}/{len(mine)} right, mean p(singing) {p:.2f}")
        for cond in CONSTRAINTS:
            m = [r.measures[cond] for r in mine if cond in r.measures]
            if m:
                parts.append(f"{cond}: level {np.mean([x['level_db'] for x in m]):+.1f} dB, quiet half "
                             f"{np.mean([x['quiet_db'] for x in m]):+.1f} dB, log-mel corr "
                             f"{np.mean([x['mel_corr'] for x in m]):.3f}")
        out.append(f"{label} ({len(mine)}): " + "; ".join(parts))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"length of each take (default: the clip's, at most {MAX_S:.0f} s)")
    parser.add_argument("--clips", default="", help="comma-separated corpus paths instead of the default pick")
    parser.add_argument("--split", default=str(REPO_ROOT / "models" / "split.json"), help="speaker groups' sides")
    parser.add_argument("--noise", type=float, default=None, metavar="SNR",
                        help="mix seeded pink noise at this SNR (dB) into what the microphone plays")
    parser.add_argument("--json", default=None, help="write every answer, measure and track setting here")
    parser.add_argument("--keep", default=None, help="keep the recorded takes (webm) in this folder")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"measure_browser_processing: {CHROMIUM} is missing (make setup-test)", file=sys.stderr)
        return 1
    root = data_dir()
    started = time.perf_counter()
    try:
        clips = pick_clips(root, Path(args.split))
        if args.clips:
            wanted = [c.strip() for c in args.clips.split(",") if c.strip()]
            manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
            clips = manifest[manifest["path"].isin(wanted)].assign(side="?")
            clips["duration_s"] = clips["duration_s"].astype(float)
            clips = clips[["path", "label", "source", "duration_s", "side"]].reset_index(drop=True)
        if clips.empty:
            print(f"measure_browser_processing: no clips picked from {root}/manifest.csv", file=sys.stderr)
            return 1
        rows, probes, info = measure(clips, root, seconds=args.seconds, keep=Path(args.keep) if args.keep else None,
                                     noise_snr=args.noise)
    except (SingtalkError, OSError) as err:
        print(f"measure_browser_processing: {err}", file=sys.stderr)
        return 1
    total = time.perf_counter() - started
    print()
    noise = f"pink noise at {args.noise:g} dB SNR mixed in" if args.noise is not None else "clean clips"
    print(f"Model {info['version']}; Chromium fake microphone ({noise}); MediaRecorder webm/Opus 128 kb/s; "
          f"A = {json.dumps(CONSTRAINTS['defaults'])}, B = {json.dumps(CONSTRAINTS['no processing'])}")
    for name in CONSTRAINTS:
        print(f"track settings, {name}: {rows[0].settings.get(name)}")
    for name, settings in probes.items():
        print(f"track settings, {name} {json.dumps(PROBES[name])}: "
              f"{ {k: settings.get(k) for k in SETTINGS} }")
    print()
    print(markdown_table(rows))
    print()
    print(summary(rows))
    print(f"\n{len(rows)} clips in {total:.0f} s (recording {info['recording_s']:.0f} s, model load "
          f"{info['model_load_s']:.0f} s, classifying and measuring {info['classify_s']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": info["version"], "constraints": CONSTRAINTS, "probes": PROBES, "probe_settings": probes,
            "seconds": args.seconds, "noise_snr": args.noise, "times": {**info, "total_s": total},
            "clips": [r.__dict__ for r in rows]}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
