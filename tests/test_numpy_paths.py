"""Classifying without TensorFlow or librosa: the NumPy copies agree with what they replace.

The dense head runs from ``model.npz`` (:mod:`singtalk.numpy_net`), the trim intervals are computed in
NumPy (:func:`singtalk.audio.loud_intervals`) and the filter banks come from a stored file
(:data:`singtalk.features.FILTERS_FILE`). Each is checked here against the library it stands in for.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from singtalk import features
from singtalk.audio import decode, loud_intervals, write_wav
from singtalk.config import REPO_ROOT, data_dir, models_dir
from singtalk.errors import ModelError
from singtalk.numpy_net import NumpyNet, from_keras
from singtalk.registry import NET_FILE, ModelStore

TEST_TABLE = REPO_ROOT / "models" / "tables" / "test_features_scaled.csv"


@pytest.fixture(scope="module")
def shipped():
    store = ModelStore(models_dir())
    return store, store.load()


def test_shipped_model_is_served_from_numpy_and_matches_keras_on_the_test_table(shipped):
    store, loaded = shipped
    assert loaded.net is not None, f"the serving version has no {NET_FILE}"
    table = pd.read_csv(TEST_TABLE)
    X = table[loaded.feature_names].to_numpy(np.float32)
    keras = np.asarray(loaded.model(X, training=False))
    numpy = loaded.net(X)
    assert numpy.shape == keras.shape == (len(table), len(loaded.class_names))
    assert np.max(np.abs(numpy - keras)) < 1e-5
    assert (numpy.argmax(1) == keras.argmax(1)).all()


def test_every_compatible_shipped_version_has_its_numpy_copy():
    store = ModelStore(models_dir())
    compatible = []
    for info in store.list_versions():
        try:
            compatible.append(store.load(info.version))
        except ModelError:
            continue  # an older feature schema: never served by this code
    assert compatible
    assert all(loaded.net is not None for loaded in compatible), [v.version for v in compatible if v.net is None]


def test_saving_a_model_writes_its_numpy_copy_and_loading_serves_it(tmp_path):
    from singtalk.model import TrainConfig, average_models, build_model
    from singtalk.registry import make_metadata
    from singtalk.scaling import MinMaxScaling

    rng = np.random.default_rng(3)
    X = rng.uniform(size=(40, 6)).astype(np.float32)
    config = TrainConfig(hidden_units=(8, 4), dropout=0.2)
    members = [build_model(6, 3, config) for _ in range(2)]
    model = average_models(members, config)
    scaler = MinMaxScaling().fit(X, [f"f{i}" for i in range(6)])
    store = ModelStore(tmp_path)
    version = store.save(model, scaler, make_metadata(feature_version=features.FEATURE_VERSION,
                                                      feature_names=scaler.feature_names,
                                                      class_names=["singing", "talking", "no_voice"]),
                         promote=True)
    assert (store.version_dir(version) / NET_FILE).is_file()
    loaded = store.load(version, expected_feature_names=scaler.feature_names)
    assert loaded.net is not None and len(loaded.net.towers) == 2
    assert np.allclose(loaded.predict_proba(X), np.asarray(model(scaler.transform(X))), atol=1e-6)


def test_a_damaged_numpy_copy_is_refused_in_words(tmp_path, shipped):
    store, loaded = shipped
    net = from_keras(loaded.model)
    path = tmp_path / NET_FILE
    net.save(path)
    assert np.allclose(NumpyNet.load(path)(np.zeros((2, net.n_inputs))), net(np.zeros((2, net.n_inputs))))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a NumPy network file"):
        NumpyNet.load(path)


def test_classifying_imports_neither_tensorflow_nor_librosa(tmp_path):
    clip = tmp_path / "tone.wav"
    t = np.arange(16000 * 2) / 16000
    write_wav(clip, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    code = (
        "import sys\nfrom singtalk.cli import main\n"
        f"status = main(['classify', {str(clip)!r}])\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'librosa') if m in sys.modules)\n"
        "print('HEAVY', heavy)\nsys.exit(status)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout
    assert "tone.wav," in done.stdout


def test_trim_intervals_equal_librosa_split_on_corpus_clips():
    import librosa

    manifest = pd.read_csv(data_dir() / "manifest.csv")
    picked = manifest.groupby("label", group_keys=False).apply(lambda g: g.sample(4, random_state=7))
    signals = [decode(str(data_dir() / path)) for path in picked["path"]]
    rng = np.random.default_rng(0)
    signals += [(rng.standard_normal(n) * np.linspace(0, 1, n)).astype(np.float32) for n in (1, 300, 1023, 9000)]
    for y in signals:
        for top_db in (20, 60):
            expected = librosa.effects.split(y, top_db=top_db, frame_length=1024, hop_length=256)
            np.testing.assert_array_equal(loud_intervals(y, top_db=top_db), expected)


def test_stored_filter_banks_are_librosas():
    with np.load(features.FILTERS_FILE) as stored:
        for name, expected in features.librosa_filters(features.SAMPLE_RATE).items():
            np.testing.assert_array_equal(stored[name], expected, err_msg=f"{name}: rewrite {features.FILTERS_FILE}")
