"""``scripts/robustness.py`` (the model card's robustness table) on a few test-split clips with the shipped model,
and reverberant clips through the real ``singtalk classify``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from singtalk import augment, dataset, labels
from singtalk.audio import SAMPLE_RATE, write_wav
from singtalk.config import REPO_ROOT
from singtalk.registry import ModelStore

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import robustness  # noqa: E402
import train_default  # noqa: E402

SHIPPED = REPO_ROOT / "models"
PER_CLASS = 2


def shipped_classes() -> list[str]:
    store = ModelStore(SHIPPED)
    return list(store.read_metadata(store.current_version())["class_names"])


def three_class_shipped() -> bool:
    """Whether the shipped model (``models/CURRENT``) also answers no_voice."""
    return labels.NO_VOICE in shipped_classes()


@pytest.fixture(scope="module")
def report(corpus, tmp_path_factory):
    """The script on :data:`PER_CLASS` clips per class of the model (``--limit``), in this process."""
    out = tmp_path_factory.mktemp("robustness")
    args = ["--data", str(corpus), "--models", str(SHIPPED), "--limit", str(PER_CLASS), "--jobs", "1",
            "--json", str(out / "r.json"), "--markdown", str(out / "r.md")]
    assert robustness.main(args) == 0
    return json.loads((out / "r.json").read_text()), (out / "r.md").read_text()


def test_every_condition_is_measured_and_written(report):
    data, table = report
    classes = shipped_classes()
    three = labels.NO_VOICE in classes
    assert list(data["conditions"]) == list(robustness.CONDITIONS)
    assert data["model"] == ModelStore(SHIPPED).current_version() and data["class_names"] == classes
    assert data["counts"] == {c: PER_CLASS if c in classes else 0 for c in labels.CLASSES}
    assert data["generators"]["pyroomacoustics"] and data["seed"] == robustness.SEED
    for name, scores in data["conditions"].items():
        assert scores["n"] == PER_CLASS * len(classes) and 0 <= scores["failed"] <= scores["n"], name
        for metric in robustness.METRICS:
            value = scores[metric]
            if metric in ("voiced_as_no_voice", "recall_no_voice") and not three:
                assert value is None, (name, metric)  # a two-class model: the no-voice columns stay empty
            else:
                assert 0.0 <= value <= 1.0, (name, metric, value)
            if scores["delta"][metric] is not None:
                assert scores["delta"][metric] == pytest.approx(value - data["conditions"]["clean"][metric])
    # every clip has an answer (or the reason it has none) under every condition
    assert len(data["clips"]) == PER_CLASS * len(classes)
    for clip in data["clips"]:
        for name in robustness.CONDITIONS:
            answer = clip[name]
            assert (answer["answer"] in classes) != bool(answer["error"]), (clip["path"], name, answer)
    # the markdown table: named model, seeds and generator, one row per condition
    assert data["model"] in table and "pyroomacoustics " + data["generators"]["pyroomacoustics"] in table
    assert "default_rng([0, crc32(condition), crc32(clip)])" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Condition")]
    assert [row.split(" | ")[0][2:] for row in rows] == list(robustness.CONDITIONS)
    assert all(row.count("|") == len(robustness.COLUMNS) + 1 for row in rows)


def test_backgrounds_are_other_test_split_recordings(report, corpus):
    data, _ = report
    test = robustness.split_clips(corpus, train_default.SPLIT_FILE)
    group = dict(zip(test["key"], test["group"]))
    language = dict(zip(test["key"], test["language"]))
    for clip in data["clips"]:
        for name, condition in robustness.CONDITIONS.items():
            background = clip[name].get("background")
            if condition.background is None:
                assert background is None
                continue
            assert background in group, background  # a test-split clip ...
            assert language[background] == condition.background  # ... of the condition's kind
            assert group[background] != group[clip["path"]]  # never the clip itself nor its speaker group


def test_the_shipped_model_holds_up_where_it_should(report):
    """Honest floors on these few clips: the clean voiced clips are told apart as in the model card's test (the
    shipped model scores > 0.9 there), and 16-bit audio peaking at -35 dBFS (features are gain-free; about 10
    bits are left) moves no probability by more than 0.05."""
    data, _ = report
    assert data["conditions"]["clean"]["balanced_accuracy"] >= 0.8
    for clip in data["clips"]:
        clean, quiet = clip["clean"], clip["quiet -35 dB"]
        if clean["error"]:
            continue
        for column in (labels.probability_column(c) for c in data["class_names"]):
            assert abs(quiet[column] - clean[column]) <= 0.05, (clip["path"], column)


def test_a_clip_gets_the_same_alteration_whatever_the_run(report, corpus, tmp_path):
    """Seeds follow the clip, not its place in the run: ``--limit 1`` in two worker processes answers as the
    ``--limit 2`` run did in one, background choice included."""
    data, _ = report
    conditions = ["hall", "music 0 dB"]
    out = tmp_path / "r.json"
    assert robustness.main(["--data", str(corpus), "--models", str(SHIPPED), "--limit", "1", "--jobs", "2",
                            "--conditions", ",".join(conditions), "--json", str(out)]) == 0
    small = json.loads(out.read_text())
    assert list(small["conditions"]) == ["clean", *conditions] and small["jobs"] == 2
    earlier = {clip["path"]: clip for clip in data["clips"]}
    assert len(small["clips"]) == len(data["class_names"]) and all(c["path"] in earlier for c in small["clips"])
    for clip in small["clips"]:
        for name in ["clean", *conditions]:
            now, before = clip[name], earlier[clip["path"]][name]
            assert now["answer"] == before["answer"] and now.get("background") == before.get("background")
            for column in (labels.probability_column(c) for c in data["class_names"]):
                assert now.get(column) == pytest.approx(before.get(column), abs=2e-3)


def test_limit_is_stratified_by_source_and_sources_restrict(corpus):
    test = robustness.split_clips(corpus, train_default.SPLIT_FILE)
    picked = robustness.pick(test, limit=20)
    counts = picked.groupby("label").size()
    assert counts.to_dict() == {c: 20 for c in labels.CLASSES}
    singing = picked[picked.label == labels.SINGING].source.value_counts()
    assert singing["ravdess"] >= singing["mir1k"] > 1  # as the split: 132 RAVDESS, 74 MIR-1K, 19 others
    assert robustness.pick(test, limit=20).equals(picked)  # deterministic
    only = robustness.pick(test, sources=["librispeech", "olpc"], limit=2)
    assert set(only.source) == {"librispeech", "olpc_berklee_tonejs"} and len(only) == 4
    with pytest.raises(Exception, match="no test clips from nowhere"):
        robustness.pick(test, sources=["nowhere"])


@pytest.mark.xfail(not three_class_shipped(), strict=True,
                   reason="needs the three-class model (singing, talking, no_voice); the shipped one has two")
def test_reverberant_speech_and_instrumental_through_the_cli(corpus, tmp_path):
    """Issue 30: a reverberant spoken clip (image-source room, RT60 1 s, 2 m) and a reverberant instrumental come
    back talking and no voice through ``singtalk classify``. The clips are fixed by a rule, not picked to pass:
    the first LibriSpeech reading of the test split (8 s) and its longest instrumental music clip; the rooms are
    seeded."""
    test = robustness.split_clips(corpus, train_default.SPLIT_FILE)
    speech = test[test.source == "librispeech"].iloc[0]
    music = test[(test.label == labels.NO_VOICE) & (test.language == "music")]
    music = music.iloc[int(np.argmax(pd.to_numeric(music.duration_s, errors="coerce").fillna(0)))]
    files = {}
    for name, row in (("speech", speech), ("music", music)):
        y = dataset.decode_clip(row.path)
        wet = augment.in_room(y, np.random.default_rng(0), SAMPLE_RATE, rt60=1.0, distance=2.0)
        files[name] = write_wav(tmp_path / f"{name}.wav", 0.9 * wet / np.max(np.abs(wet)))
    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "singtalk.cli", "classify", files["speech"], files["music"],
                           "--csv", out, "--models", SHIPPED], capture_output=True, text=True, timeout=600,
                          cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    answers = pd.read_csv(out, keep_default_na=False).set_index("path")["label"]
    assert answers[str(files["speech"])] == labels.TALKING, (speech.key, answers.to_dict())
    assert answers[str(files["music"])] == labels.NO_VOICE, (music.key, answers.to_dict())


def test_left_out_mode_answers_each_corpus_by_its_own_head_and_networks(corpus, tmp_path):
    """``--left-out``: each corpus's clips, from both sides of the split, go to the head kept for that corpus
    (``scripts/left_out_store.py``'s index) with the spectrogram networks its index names. Here the kept "heads"
    are the shipped model itself, so the answers must be the shipped classifier's with RAVDESS's left-out
    networks for RAVDESS clips and with the shipped networks for OLPC's (no network heard OLPC)."""
    import shutil

    import left_out_store

    from singtalk.classify import Classifier
    from singtalk.spectro import VIEWS

    store = ModelStore(SHIPPED)
    version = store.current_version()
    heads = left_out_store.store_dir(version, tmp_path)
    shutil.copytree(SHIPPED / "versions" / version, heads / "versions" / version)
    without_ravdess = {view: str(train_default.SPECTRO_FOLDS / view / "without_ravdess.npz") for view in VIEWS}
    (heads / left_out_store.INDEX).write_text(json.dumps({"ravdess": {"version": version, "nets": without_ravdess},
                                                          "olpc": {"version": version, "nets": {}}}))
    out = tmp_path / "r.json"
    assert robustness.main(["--data", str(corpus), "--models", str(SHIPPED), "--left-out", "--heads", str(tmp_path),
                            "--sources", "ravdess,olpc", "--limit", "1", "--conditions", "hall", "--jobs", "1",
                            "--json", str(out), "--markdown", str(tmp_path / "r.md")]) == 0
    data = json.loads(out.read_text())
    assert data["left_out"] and sorted(data["by_corpus"]) == ["olpc", "ravdess"]
    assert list(data["by_corpus"]["ravdess"]) == ["clean", "hall"]
    every = robustness.corpus_clips(corpus, train_default.SPLIT_FILE).set_index("key")
    loaded = store.load(version)
    for clip in data["clips"]:
        row = every.loc[clip["path"]]
        nets = left_out_store.networks(without_ravdess if row["corpus"] == "ravdess" else {})
        expected = Classifier(loaded, nets=nets).classify(dataset.decode_clip(row["path"]))
        for name, p in expected.probabilities.items():
            assert clip["clean"][labels.probability_column(name)] == pytest.approx(p, abs=2e-3), clip["path"]
    ravdess = [c for c in data["clips"] if every.loc[c["path"], "corpus"] == "ravdess" and not c["clean"]["error"]]
    shipped = Classifier(loaded)
    assert any(abs(c["clean"][labels.probability_column(labels.SINGING)]
                   - shipped.classify(dataset.decode_clip(every.loc[c["path"], "path"])).probabilities[labels.SINGING])
               > 1e-3 for c in ravdess)  # the left-out networks were used
    table = (tmp_path / "r.md").read_text()
    assert "Per corpus left out" in table and "| ravdess |" in table and "| olpc |" in table


def test_a_kept_left_out_head_is_indexed_and_loads_as_it_was_saved(tmp_path):
    """``left_out_store.keep`` (what ``train_default.py`` calls for each head of its leave-one-source-out run)
    writes a loadable version, never promoted, and indexes it with the networks its features need."""
    import left_out_store

    from singtalk.model import TrainResult

    store = ModelStore(SHIPPED)
    loaded = store.load(store.current_version())
    result = TrainResult(model=loaded.model, history={}, config=None, class_names=list(loaded.class_names),
                         n_train=0)
    nets = {"mel": "/x/without_ravdess.npz"}
    kept = left_out_store.keep("v1", {"head": "stack"}, "ravdess", result, loaded.scaler,
                               list(loaded.feature_names), nets=nets, root=tmp_path)
    again = left_out_store.keep("v1", {"head": "stack"}, "olpc", result, loaded.scaler,
                                list(loaded.feature_names), nets={}, root=tmp_path)
    assert left_out_store.read_index("v1", tmp_path) == {"ravdess": {"version": kept, "nets": nets},
                                                         "olpc": {"version": again, "nets": {}}}
    heads = ModelStore(tmp_path / "v1")
    assert heads.current_version() is None and kept.endswith("without-ravdess")
    low, high = loaded.scaler.min_, loaded.scaler.max_
    raw = low + np.random.default_rng(0).uniform(0, 1, (4, low.size)) * (high - low)
    reloaded = heads.load(kept)
    assert reloaded.metadata["trained_on"] == {"left_out": "ravdess", "as": "v1"}
    np.testing.assert_allclose(reloaded.predict_proba(raw), loaded.predict_proba(raw), atol=1e-5)
