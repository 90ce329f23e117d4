"""Speed and scale of singtalk, measured side by side in one run: one command, one table.

    .venv/bin/python scripts/bench.py [--quick] [--skip ROW,...] [--models DIR] [--baseline VERSION]

Every row is a ratio against its goal (docs/performance.md says what limits each).
Test audio is built in a temporary folder by concatenating corpus clips
(`singtalk.config.data_dir()`); nothing is written into the repository. The model
is the store at `singtalk.config.models_dir()` unless --models is given. A row
that cannot be measured prints why instead of a figure. With --baseline VERSION, rows compare the
current model with that version of the same store on the same inputs, in this process (see bench_baseline).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from singtalk import audio, config  # noqa: E402
from page_idle import wait_idle  # noqa: E402

BIN = Path(sys.executable).parent
SR = audio.SAMPLE_RATE
ROWS: list[tuple[str, str, str, str]] = []  # (what, measured, goal, verdict / note)


def row(what: str, measured: str, goal: str = "", ok: bool | None = None, note: str = "") -> None:
    verdict = "" if ok is None else ("meets" if ok else "MISSES")
    ROWS.append((what, measured, goal, " ".join(x for x in (verdict, note) if x)))
    print(f"  {what}: {measured} {('(goal ' + goal + ')') if goal else ''} {note}", file=sys.stderr, flush=True)


def measured(name: str):
    """Run a row function; on failure print the reason in the table instead of crashing."""
    def wrap(fn):
        def run(*args, **kwargs):
            if name in SKIP:
                row(name, "skipped", note="(--skip)")
                return None
            print(f"[bench] {name}…", file=sys.stderr, flush=True)
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - a row that cannot be measured says why
                traceback.print_exc(file=sys.stderr)
                row(name, "not measured", note=f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}")
                return None
        return run
    return wrap


SKIP: set[str] = set()


# -- test audio ---------------------------------------------------------------
def corpus_clips(label: str | None = None, *, n: int | None = None, seed: int = 0) -> list[tuple[Path, float]]:
    import pandas as pd

    root = config.data_dir()
    manifest = pd.read_csv(root / "manifest.csv")
    manifest = manifest[manifest["label"].isin(["singing", "talking"] if label is None else [label])]
    manifest = manifest.sample(frac=1.0, random_state=seed)
    if n is not None:
        manifest = manifest.iloc[:n] if n <= len(manifest) else manifest.sample(n, replace=True, random_state=seed)
    return [(root / p, float(d)) for p, d in zip(manifest["path"], manifest["duration_s"])]


def corpus_samples(seconds: float, *, label: str | None = None, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Corpus clips decoded and concatenated to ``seconds`` (the manifest shuffled with ``seed``, then ``seed + 1``...)."""
    parts, total = [], 0
    while total < seconds * sr:
        for path, _ in corpus_clips(label, seed=seed):
            y = audio.decode(path, sr=sr)
            parts.append(y)
            total += y.size
            if total >= seconds * sr:
                break
        seed += 1
    return np.concatenate(parts)[: int(seconds * sr)]


def long_audio(seconds: float, folder: Path, *, name: str, label: str | None = None, sr: int = SR) -> Path:
    """Corpus clips decoded and concatenated to ``seconds``, written as 16-bit WAV in ``folder``."""
    return audio.write_wav(folder / name, corpus_samples(seconds, label=label, sr=sr), sr)


# -- rows -----------------------------------------------------------------------
@measured("features")
def bench_features(tmp: Path, repeats: int) -> None:
    import librosa
    from bench_features import paired, seed_way

    from singtalk import features, spectro

    y = audio.decode(long_audio(30, tmp, name="clip30.wav"))
    stft = lambda: librosa.stft(y, n_fft=features.N_FFT, hop_length=features.HOP_LENGTH,  # noqa: E731
                                win_length=features.WIN_LENGTH)
    no_cnn = {view: lambda spec: 0.0 for view in spectro.VIEWS}  # stand-in networks: the hand-crafted part alone
    ref_ms, fast = paired(stft, {
        "extract": lambda: features.extract(y, SR),
        "hand": lambda: features.extract(y, SR, nets=no_cnn),
        "windows": lambda: features.extract_windows(features.analyse(y, SR)),
        "hand_windows": lambda: features.extract_windows(features.analyse(y, SR), nets=no_cnn),
    }, repeats)
    _, seed = paired(stft, {"seed": lambda: seed_way(y, SR, features.HOP_LENGTH)}, max(3, repeats // 3))
    row("features, 30 s clip: extract incl. the three CNNs / one STFT", f"{fast['extract'][1]:.2f}x", "<= 3x",
        fast["extract"][1] <= 3, f"(STFT {ref_ms:.0f} ms, extract {fast['extract'][0]:.0f} ms, "
                                  f"without the CNNs {fast['hand'][0]:.0f} ms)")
    row("features, 30 s clip: extract, hand-crafted part (pitch incl.) / one STFT", f"{fast['hand'][1]:.2f}x",
        "<= 3x", fast["hand"][1] <= 3)
    row("features, 30 s clip: analyse + 4 s windows incl. CNNs / one STFT", f"{fast['windows'][1]:.2f}x",
        "", None, "(the CNNs run once per window: 14 overlapping windows)")
    row("features, 30 s clip: analyse + 4 s windows, hand-crafted / one STFT", f"{fast['hand_windows'][1]:.2f}x",
        "<= 3x", fast["hand_windows"][1] <= 3)
    row("features, 30 s clip: seed's way (STFT per feature) / one STFT", f"{seed['seed'][1]:.2f}x", "(~12x)")


@measured("batch")
def bench_batch(classifier, n_clips: int) -> None:
    from singtalk.classify import label_batch

    clips = corpus_clips(n=n_clips, seed=1)
    list(label_batch(classifier, [str(clips[0][0])]))  # warm
    start = time.perf_counter()
    out = list(label_batch(classifier, [str(p) for p, _ in clips]))
    elapsed = time.perf_counter() - start
    seconds = sum(d for _, d in clips)
    failed = sum(1 for _, p, _e in out if p is None)
    speed = seconds / elapsed
    row(f"batch classify, {n_clips} clips, model warm, 1 process", f"{speed:.0f}x real time", ">= 100x",
        speed >= 100, f"({seconds:.0f} s audio in {elapsed:.1f} s, {1000 * elapsed / n_clips:.0f} ms/file"
        + (f", {failed} failed" if failed else "") + ")")


@measured("separate-warm")
def bench_separate_warm(classifier, tmp: Path, seconds: float) -> None:
    from singtalk.separation import get_separator

    path = long_audio(seconds, tmp, name="sep.wav")
    get_separator()
    classifier.classify_source(str(long_audio(5, tmp, name="warm.wav")), separate=True)
    start = time.perf_counter()
    classifier.classify_source(str(path), separate=True)
    elapsed = time.perf_counter() - start
    speed = seconds / elapsed
    row(f"classify with Spleeter, {seconds:.0f} s file, model + Spleeter warm", f"{speed:.1f}x real time",
        ">= 20x", speed >= 20, f"({elapsed:.1f} s)")


def run_cli(args: list[str], env: dict | None = None) -> tuple[float, int, int, str]:
    """(wall seconds, exit status, peak RSS of the process tree's largest process in MB, stderr tail)."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "singtalk"), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env or os.environ.copy())
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024  # largest child so far
    return elapsed, proc.returncode, peak_mb, err.decode(errors="replace")[-300:]


def run_cli_alone(args: list[str]) -> tuple[float, int, int, str]:
    """As :func:`run_cli`, but the peak RSS is that command's own (largest process of its tree), read by a
    wrapper process that runs nothing else."""
    wrapper = ("import resource, subprocess, sys\n"
               "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, code, file=sys.stderr)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, str(BIN / "singtalk"), *args], capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - start
    lines = done.stderr.strip().splitlines() or ["0 1"]
    peak_mb, code = (int(x) for x in lines[-1].split())
    return elapsed, code, peak_mb, "\n".join(lines[:-1])[-300:]


STARTUP_PARTS = """
import sys, time
t0 = time.perf_counter()
import singtalk.cli, singtalk.batch, singtalk.classify, singtalk.features, singtalk.registry
t1 = time.perf_counter()
from singtalk.batch import _load_classifier
classifier = _load_classifier(sys.argv[2], None, separate=False)
t2 = time.perf_counter()
classifier.classify_source(sys.argv[1])
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, 'tensorflow' in sys.modules, 'librosa' in sys.modules)
"""


@measured("startup")
def bench_startup(tmp: Path, models: Path) -> None:
    clip = long_audio(2.0, tmp, name="short.wav")
    help_s = min(run_cli(["--help"])[0] for _ in range(3))
    row("`singtalk --help`", f"{help_s:.2f} s", "<= 0.5 s", help_s <= 0.5, "(best of 3)")
    runs = [run_cli(["classify", str(clip), "--models", str(models)]) for _ in range(3)]
    if any(code != 0 for _, code, _, _ in runs):
        raise RuntimeError(f"singtalk classify exited {runs[0][1]}: {runs[0][3]}")
    wall = min(r[0] for r in runs)
    row("`singtalk classify` one 2 s clip, from the shell", f"{wall:.2f} s", "<= 2 s", wall <= 2.0, "(best of 3)")
    out = subprocess.run([sys.executable, "-c", STARTUP_PARTS, str(clip), str(models)], capture_output=True,
                         text=True, check=True).stdout.split()
    imports, load, first = (float(x) for x in out[:3])
    row("  of which: imports / model load / first clip", f"{imports:.2f} / {load:.2f} / {first:.2f} s",
        note=f"(in one process; TensorFlow imported: {out[3]}, librosa: {out[4]})")


def classify_folder(tmp: Path, models: Path, name: str, n: int, seconds: float, *extra: str) -> tuple[float, int]:
    """``singtalk classify`` over a folder of ``n`` corpus-built files of ``seconds``: (wall s, peak RSS MB)."""
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    for i in range(n):
        long_audio(seconds, folder, name=f"{i:02d}.wav")
    elapsed, code, peak_mb, err = run_cli_alone(["classify", str(folder), *extra, "--models", str(models),
                                                 "--csv", str(tmp / f"{name}.csv")])
    if code != 0:
        raise RuntimeError(f"singtalk classify {' '.join(extra)} exited {code}: {err}")
    return elapsed, peak_mb


@measured("cli-10x60")
def bench_cli_ten_minutes(tmp: Path, models: Path, n: int = 10, seconds: float = 60.0) -> None:
    elapsed, peak_mb = classify_folder(tmp, models, "ten", n, seconds)
    speed = n * seconds / elapsed
    row(f"CLI `singtalk classify`, {n} files of {seconds:.0f} s, start-up incl.", f"{speed:.0f}x real time",
        ">= 100x", speed >= 100, f"({elapsed:.1f} s, default --jobs)")
    row("peak memory, classifying without separation", f"{peak_mb} MB", "<= 400 MB", peak_mb <= 400,
        "(largest process of that command)")


SEPARATE_PARTS = """
import sys, time
from pathlib import Path
t0 = time.perf_counter()
import singtalk.cli, singtalk.batch, singtalk.classify, singtalk.features, singtalk.registry
t1 = time.perf_counter()
from singtalk.batch import _in_process, _load_classifier
classifier = _load_classifier(sys.argv[2], None, separate=True)
t2 = time.perf_counter()
files = sorted(str(p) for p in Path(sys.argv[1]).glob("*.wav"))
failed = sum(p is None for _, p, _ in _in_process(classifier, files, separate=True, progress=None))
t3 = time.perf_counter()
from singtalk.audio import decode
from singtalk.separation import SPLEETER_RATE, get_separator
alone = 0.0
for path in files:
    y = decode(path, sr=SPLEETER_RATE)
    start = time.perf_counter()
    get_separator().vocals(y, SPLEETER_RATE)
    alone += time.perf_counter() - start
print(t1 - t0, t2 - t1, t3 - t2, alone, failed)
"""


@measured("cli-separate-4x30")
def bench_cli_separate_short(tmp: Path, models: Path, n: int = 4, seconds: float = 30.0) -> None:
    load = os.getloadavg()[0]
    elapsed, _ = classify_folder(tmp, models, "four", n, seconds, "--separate")
    speed = n * seconds / elapsed
    row(f"CLI `singtalk classify --separate`, {n} files of {seconds:.0f} s, start-up incl.",
        f"{speed:.1f}x real time", ">= 10x", speed >= 10,
        f"({elapsed:.1f} s; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)")
    out = subprocess.run([sys.executable, "-c", SEPARATE_PARTS, str(tmp / "four"), str(models)], capture_output=True,
                         text=True, check=True).stdout.split()
    imports, spleeter, batch, alone = (float(x) for x in out[:4])
    row("  of which: imports / TensorFlow + Spleeter load / the batch",
        f"{imports:.2f} / {spleeter:.2f} / {batch:.2f} s",
        note=f"(in one process; the batch: separation one input ahead of the features; separating the {n} "
             f"files again, warm, alone: {alone:.2f} s)")


@measured("cli")
def bench_cli(tmp: Path, models: Path, seconds: float) -> None:
    path = long_audio(seconds, tmp, name="long.wav")
    elapsed, code, _, err = run_cli(["classify", str(path), "--models", str(models), "--csv", str(tmp / "o.csv")])
    if code != 0:
        raise RuntimeError(f"singtalk classify exited {code}: {err}")
    speed = seconds / elapsed
    row(f"CLI `singtalk classify`, one {seconds / 60:.0f} min file, start-up incl.", f"{speed:.0f}x real time",
        ">= 50x", speed >= 50, f"({elapsed:.1f} s)")


@measured("cli-folder")
def bench_cli_folder(tmp: Path, models: Path, seconds: float) -> None:
    folder = tmp / "folder"
    folder.mkdir(exist_ok=True)
    total = 0.0
    for i, (path, duration) in enumerate(corpus_clips(seed=2)):
        if total >= seconds:
            break
        shutil.copy(path, folder / f"{i:05d}{path.suffix}")
        total += duration
    elapsed, code, _, err = run_cli(["classify", str(folder), "--models", str(models), "--csv", str(tmp / "f.csv")])
    if code != 0:
        raise RuntimeError(f"singtalk classify exited {code}: {err}")
    speed = total / elapsed
    row(f"CLI `singtalk classify`, {total / 60:.0f} min as {i} clips (default --jobs)",
        f"{speed:.0f}x real time", ">= 50x", speed >= 50, f"({elapsed:.1f} s)")


@measured("cli-separate")
def bench_cli_separate(tmp: Path, models: Path, seconds: float) -> None:
    path = long_audio(seconds, tmp, name="sep_long.wav")
    elapsed, code, peak_mb, err = run_cli(["classify", str(path), "--separate", "--models", str(models),
                                            "--csv", str(tmp / "s.csv")])
    if code != 0:
        raise RuntimeError(f"singtalk classify --separate exited {code}: {err}")
    speed = seconds / elapsed
    row(f"CLI `singtalk classify --separate`, one {seconds / 60:.0f} min file", f"{speed:.1f}x real time", ">= 8x",
        speed >= 8, f"({elapsed:.1f} s)")
    row("peak memory, one process classifying with Spleeter loaded", f"{peak_mb / 1024:.2f} GB", "<= 1.5 GB",
        peak_mb <= 1536, f"(max RSS of that CLI process, {seconds / 60:.0f} min input)")


@measured("features-cli")
def bench_features_cli(tmp: Path, n: int) -> None:
    """``singtalk features`` over ``n`` corpus clips in class folders (default --jobs): a build from scratch,
    then the same command again, every vector kept (docs/performance.md, "Feature builds that resume")."""
    folder, out = tmp / f"labelled{n}", tmp / f"tables{n}"
    for i, (path, _) in enumerate(corpus_clips(n=n, seed=4)):
        (folder / path.parts[-3]).mkdir(parents=True, exist_ok=True)
        os.symlink(path, folder / path.parts[-3] / f"{i:05d}{path.suffix}")
    times = []
    for _ in range(2):
        elapsed, code, _, err = run_cli(["features", str(folder), "--out", str(out)])
        if code != 0:
            raise RuntimeError(f"singtalk features exited {code}: {err}")
        times.append(elapsed)
    row(f"CLI `singtalk features`, {n} clips, from scratch (default --jobs)", f"{n / times[0]:.1f} files/s",
        note=f"({times[0]:.1f} s, start-up incl.)")
    row("  the same command again (every vector kept)", f"{times[1]:.1f} s")


@measured("scaling")
def bench_scaling(tmp: Path, models: Path, sizes: list[int]) -> None:
    times, audio_s = [], []
    for n in sizes:
        folder = tmp / f"scale{n}"
        folder.mkdir(exist_ok=True)
        clips = corpus_clips(n=n, seed=3)
        for i, (path, _) in enumerate(clips):
            os.symlink(path, folder / f"{i:05d}{path.suffix}")
        elapsed, code, _, err = run_cli(["classify", str(folder), "--models", str(models),
                                         "--csv", str(tmp / f"scale{n}.csv")])
        if code not in (0, 1):
            raise RuntimeError(f"singtalk classify exited {code}: {err}")
        times.append(elapsed)
        audio_s.append(sum(d for _, d in clips))
    slope, intercept = np.polyfit(sizes, times, 1)
    fit = np.polyval([slope, intercept], sizes)
    r2 = 1 - np.sum((np.array(times) - fit) ** 2) / max(np.sum((np.array(times) - np.mean(times)) ** 2), 1e-12)
    per_clip_audio = sum(audio_s) / sum(sizes)
    row("CLI batch time for " + ", ".join(f"{n}" for n in sizes) + " clips",
        " / ".join(f"{t:.1f} s" for t in times), "linear",
        r2 > 0.98, f"(fit: {intercept:.1f} s fixed + {1000 * slope:.0f} ms/file, R^2 {r2:.3f}; "
                   f"mean clip {per_clip_audio:.1f} s)")
    return slope, per_clip_audio


def per_file_overhead(slope: float, per_clip_audio: float, long_speed: float | None) -> None:
    if long_speed:
        row("per-file overhead (batch slope minus the audio's own cost)",
            f"{1000 * (slope - per_clip_audio / long_speed):.0f} ms/file", note="(ffmpeg start, process IPC, model call)")


# -- the app ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@measured("app")
def bench_app(tmp: Path, models: Path) -> None:
    import urllib.request

    port = free_port()
    env = dict(os.environ, SINGTALK_MODELS=str(models))
    start = time.perf_counter()
    server = subprocess.Popen(
        [str(BIN / "streamlit"), "run", str(REPO / "streamlit_app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - start > 60:
                    raise RuntimeError("streamlit did not start")
                time.sleep(0.05)
        health = time.perf_counter() - start
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            row("app: `streamlit run` to server health", f"{health:.1f} s", "<= 6 s", health <= 6,
                "(Playwright missing: page not measured)")
            return
        flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 '--host-resolver-rules="MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"']
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector('[data-testid="stFileUploaderDropzoneInput"]', state="attached", timeout=60000)
            usable = time.perf_counter() - start
            row("app: `streamlit run` to a usable Classify page (uploader drawn)", f"{usable:.1f} s", "<= 6 s",
                usable <= 6, f"(server healthy at {health:.1f} s)")
            # The end mark is the result's caption ("<file> · model …") in the page. Playwright's own
            # waits poll at up to 500 ms intervals, so a MutationObserver in the page timestamps it
            # instead (page clock at both ends). Before each upload the page must be idle: the first
            # result's chart drawn and no script run for a moment, or the warm figure would include
            # the browser still drawing the previous (cold) result.
            observe = """text => {
                window.__seen = new Promise(resolve => {
                    const check = () => document.body.textContent.includes(text);
                    const observer = new MutationObserver(() => {
                        if (check()) { observer.disconnect(); resolve(performance.now()); }
                    });
                    observer.observe(document.body, {childList: true, subtree: true, characterData: true});
                });
                return performance.now();
            }"""

            def idle() -> None:
                if not wait_idle(page, poll_ms=50):
                    raise RuntimeError("the Classify page never went idle")

            names = ["upload_a.wav", "upload_b.wav", "upload_c.wav", "upload_d.wav"]
            clips = [long_audio(10, tmp, name=n, label=("singing", "talking")[i % 2]) for i, n in enumerate(names)]
            times = []
            for path in clips:
                idle()
                started = page.evaluate(observe, f"{path.name} · model")
                page.set_input_files('[data-testid="stFileUploaderDropzoneInput"]', str(path))
                seen = page.evaluate("() => Promise.race([window.__seen, "
                                     "new Promise(r => setTimeout(() => r(null), 120000))])")
                if seen is None:
                    raise RuntimeError(f"no result for {path.name} within 120 s")
                times.append((seen - started) / 1000)
                if path == clips[0]:
                    chart = page.locator('[data-testid="stVegaLiteChart"], [data-testid="stPlotlyChart"]')
                    chart.first.wait_for(timeout=60000)
            browser.close()
        warm = sorted(times[1:])[len(times[1:]) // 2]
        row("app: 10 s upload classified, warm (median of 3 uploads)", f"{warm:.2f} s", "<= 1 s", warm <= 1,
            f"(warm {' / '.join(f'{t:.2f}' for t in times[1:])} s; first, cold: {times[0]:.1f} s; "
            "browser upload and redraw included)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


# -- main -----------------------------------------------------------------------------
def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 ** 2
    except OSError:
        mem = float("nan")
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} CPU ({cpu}), {mem:.0f} GB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; load average at start {load:.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs (scaling 10/30/100, 2 min CLI file)")
    parser.add_argument("--models", help="model store (default: singtalk.config.models_dir())")
    parser.add_argument("--skip", default="", help="comma-separated rows to skip: " + "startup,cli-10x60,cli-separate-4x30,features,features-cli,"
                        "batch,long-in-process,separate-warm,cli,cli-folder,cli-separate,scaling,app,baseline")
    parser.add_argument("--baseline", metavar="VERSION",
                        help="also compare the current model with VERSION of the same store: in-process work "
                             "per minute of audio (features + model, no decode), interleaved in this process")
    args = parser.parse_args(argv)
    SKIP.update(filter(None, args.skip.split(",")))
    models = Path(args.models) if args.models else config.models_dir()
    os.environ["SINGTALK_MODELS"] = str(models)
    header = f"machine: {machine()}"
    print(f"[bench] {header}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="singtalk-bench-"))
    try:
        bench_startup(tmp, models)
        bench_cli_ten_minutes(tmp, models)
        bench_cli_separate_short(tmp, models)
        # subprocess rows first: the CLI's peak memory is read from RUSAGE_CHILDREN, largest child so far
        bench_cli_separate(tmp, models, 120.0)
        long_s = 120.0 if args.quick else 600.0
        bench_cli(tmp, models, long_s)
        bench_cli_folder(tmp, models, long_s)
        scaling = bench_scaling(tmp, models, [10, 30, 100] if args.quick else [10, 100, 1000])
        bench_features_cli(tmp, 100 if args.quick else 300)
        bench_app(tmp, models)
        bench_features(tmp, 9 if args.quick else 15)
        classifier = None
        try:
            from singtalk.batch import _load_classifier

            classifier = _load_classifier(str(models), None, separate="separate-warm" not in SKIP)
        except Exception as err:  # noqa: BLE001
            row("model", "not loaded", note=f"{type(err).__name__}: {err}")
        long_speed = None
        if classifier is not None:
            bench_batch(classifier, 60 if args.quick else 200)
            long_speed = bench_long_in_process(classifier, tmp, long_s)
            if args.baseline:
                bench_baseline(classifier, models, args.baseline, long_s=long_s)
            bench_separate_warm(classifier, tmp, 60.0)
        if scaling:
            per_file_overhead(*scaling, long_speed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    widths = [max(len(r[i]) for r in ROWS + [("what", "measured", "goal", "verdict")]) for i in range(4)]
    print(header)
    print(f"model store: {models}")
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(("what", "measured", "goal", "verdict")))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in ROWS:
        print(line(r))
    return 0


@measured("baseline")
def bench_baseline(classifier, models: Path, version: str, *, n_clips: int = 10, clip_s: float = 60.0,
                   long_s: float = 600.0, n_short: int = 100, rounds: int = 5, model_repeats: int = 20) -> None:
    """The current model against ``version`` of the same store: the in-process work per minute of audio.

    What is timed is ``Classifier.classify`` on mono 16 kHz samples already in memory (features + model, as
    for a decoded upload; the decode is excluded: it is the same for any model). Both models run in this
    process on the same inputs: ``n_clips`` pieces of ``clip_s`` seconds and one ``long_s`` input, cut from
    one stream of corpus clips, and ``n_short`` corpus clips as they are (a few seconds each: there the cost
    per model call weighs more than per minute of audio). Every input is classified by both models in each of ``rounds`` rounds, the
    two back to back, first A then B, next B then A (A B B A A B ...), so slow drift of the machine and the
    order within a pair fall on both alike. Wall and CPU seconds (process-wide, all threads) are summed
    per model and divided by the minutes of audio classified.
    """
    from singtalk.classify import HOP_S, WINDOW_S, Classifier
    from singtalk.registry import ModelStore

    new, old = classifier, Classifier(ModelStore(models).load(version))
    pair = {"new": new, "old": old}
    if new.version == old.version:
        row("baseline", "same version", note=f"(CURRENT is {new.version} too: the ratio below compares a model "
                                             "with itself)")
    stream = corpus_samples(n_clips * clip_s + long_s, seed=4)
    cut = int(clip_s * SR)
    clips = [stream[i * cut:(i + 1) * cut] for i in range(n_clips)]
    long = stream[n_clips * cut:]
    short = [audio.decode(path) for path, _ in corpus_clips(n=n_short, seed=5)] if n_short else []
    for c in pair.values():  # warm: the first Keras call and the first pass over the feature code
        c.classify(clips[0][: 30 * SR])
        c.classify(clips[0])

    def describe(c) -> str:
        return f"{c.version}, {len(c.class_names)} classes"

    def compare(name: str, inputs: list[np.ndarray]) -> None:
        wall = {k: [0.0] * rounds for k in pair}
        cpu = {k: [0.0] * rounds for k in pair}
        flip = 0
        for r in range(rounds):
            for y in inputs:
                for key in (("new", "old") if flip % 2 == 0 else ("old", "new")):
                    w0, c0 = time.perf_counter(), time.process_time()
                    pair[key].classify(y)
                    wall[key][r] += time.perf_counter() - w0
                    cpu[key][r] += time.process_time() - c0
                flip += 1
        minutes = rounds * sum(y.size for y in inputs) / SR / 60
        per_min = {k: sum(wall[k]) / minutes for k in pair}
        cpu_min = {k: sum(cpu[k]) / minutes for k in pair}
        for key, label in (("new", "current"), ("old", "baseline")):
            row(f"{name}: {label} ({describe(pair[key])})", f"{per_min[key]:.3f} s/min",
                note=f"(CPU {cpu_min[key]:.3f} s/min; {60 / per_min[key]:.0f}x real time)")
        ratio = per_min["new"] / per_min["old"]
        per_round = " / ".join(f"{n / o:.3f}" for n, o in zip(wall["new"], wall["old"]))
        row(f"{name}: new / old", f"{ratio:.3f}", "<= 1.10", ratio <= 1.10,
            f"(CPU {cpu_min['new'] / cpu_min['old']:.3f}; per round {per_round})")

    # "work per min": Classifier.classify on decoded samples (features + model), seconds per minute of audio
    compare(f"work per min, {n_clips} x {clip_s:.0f} s clips, {rounds} rounds", clips)
    compare(f"work per min, one {long_s / 60:.0f} min input, {rounds} rounds", [long])
    if short:
        mean_s = sum(y.size for y in short) / SR / len(short)
        compare(f"work per min, {len(short)} corpus clips as they are (mean {mean_s:.1f} s), {rounds} rounds", short)

    # the model call alone, on the long input's window rows (the features are the same for both when the
    # schema is): where a difference between the two would come from
    _, X, _, _ = Classifier._windows(long, window_s=WINDOW_S, hop_s=HOP_S)
    spent = {k: 0.0 for k in pair}
    for i in range(model_repeats):
        for key in (("new", "old") if i % 2 == 0 else ("old", "new")):
            start = time.perf_counter()
            pair[key].probabilities(X)
            spent[key] += time.perf_counter() - start
    ms = {k: 1000 * spent[k] / model_repeats for k in pair}
    row(f"model call alone, {len(X)} window rows ({long_s / 60:.0f} min): new / old",
        f"{ms['new'] / ms['old']:.2f}", note=f"({ms['new']:.1f} ms vs {ms['old']:.1f} ms per call, "
                                             f"{model_repeats} calls each, interleaved)")


@measured("long-in-process")
def bench_long_in_process(classifier, tmp: Path, seconds: float) -> float:
    y = audio.decode(long_audio(seconds, tmp, name="long_ip.wav"))
    classifier.classify(y[: 30 * SR])
    start = time.perf_counter()
    classifier.classify(y)
    elapsed = time.perf_counter() - start
    speed = seconds / elapsed
    row(f"classify one {seconds / 60:.0f} min signal in process (features + model, no decode)",
        f"{speed:.0f}x real time", note=f"({elapsed:.1f} s)")
    return speed


if __name__ == "__main__":
    raise SystemExit(main())
