"""The served model's heads refitted without each corpus, kept as a model store for measurements.

``scripts/robustness.py --left-out`` asks each corpus's clips of the head that never heard that corpus
(``train_default.left_out_fits``: the same features, augmented copies and settings as the served version, and
CNN logits from the networks trained without the corpus). Fitting fourteen heads takes about twenty minutes on
two cores, so they are kept in ``var/left-out/<served version>/``: a :class:`~singtalk.registry.ModelStore`
(one version per corpus, never promoted) and ``index.json`` = {corpus: {"version", "nets"}}, ``nets`` the
corpus whose left-out spectrogram networks the features must use ("" for the shipped ones: no network heard
the corpus). Not committed: the command rebuilds what is missing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
LEFT_OUT_DIR = HERE.parent / "var" / "left-out"
INDEX = "index.json"


def store_dir(version: str, root: Path = LEFT_OUT_DIR) -> Path:
    return Path(root) / version


def nets_of(corpus: str):
    """The spectrogram networks trained without ``corpus`` ({view: SpectroNet}), or None when no network of
    the served model heard it (its shipped networks are then already left out)."""
    import train_default as T

    from singtalk.spectro import VIEWS, SpectroNet

    if not corpus:
        return None
    return {view: SpectroNet.load(T.SPECTRO_FOLDS / view / f"without_{corpus}.npz") for view in VIEWS}


def keep(version: str, config: dict, corpus: str, result, scaler, names: list[str], *, heard: bool,
         root: Path = LEFT_OUT_DIR) -> str:
    """Save the head ``result`` (with ``scaler``) fitted without ``corpus`` for ``version`` and index it;
    ``heard``: the served model's spectrogram networks heard the corpus (its left-out networks are used)."""
    from singtalk import atomic
    from singtalk.features import FEATURE_VERSION
    from singtalk.registry import ModelStore, make_metadata

    folder = store_dir(version, root)
    index_path = folder / INDEX
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    metadata = make_metadata(feature_version=FEATURE_VERSION, feature_names=names, class_names=result.class_names,
                             config=config, trained_on={"left_out": corpus, "as": version}, parent=version)
    kept = ModelStore(folder).save(result.model, scaler, metadata, promote=False, suffix=f"without-{corpus}",
                                   note=f"{version} without {corpus}")
    index[corpus] = {"version": kept, "nets": corpus if heard else ""}
    atomic.write_json(index_path, index)
    return kept


def left_out_heads(loaded, corpora: list[str], *, data_dir: Path | None = None, jobs: int = 2,
                   cache: str = "var/cache", root: Path = LEFT_OUT_DIR) -> dict[str, dict]:
    """{corpus: {"version", "nets"}} for every corpus of ``corpora`` (see the module docstring), fitting and
    keeping (:func:`keep`) the heads that ``root/<loaded.version>/`` does not hold yet."""
    import train_default as T

    index_path = store_dir(loaded.version, root) / INDEX
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    missing = [c for c in corpora if c not in index]
    if missing:
        args = argparse.Namespace(data=str(data_dir) if data_dir else None, copies=2, seed=0, jobs=jobs,
                                  backgrounds=True, split=str(T.SPLIT_FILE), cache=cache,
                                  spectro_folds=str(T.SPECTRO_FOLDS / "{view}"))
        table, inputs, fold_dirs, _, names = T.prepare(args)
        if names != list(loaded.feature_names):
            raise SystemExit(f"the feature table's columns are not model {loaded.version}'s features")
        heard = {T.dataset.corpus_of(s) for s in table["source"][table["heard"]]}
        for corpus, _, result, scaler in T.left_out_fits(table, inputs, fold_dirs, names,
                                                         T.head_args_of(loaded.metadata), missing):
            kept = keep(loaded.version, loaded.metadata.get("config", {}), corpus, result, scaler, names,
                        heard=corpus in heard, root=root)
            print(f"  head without {corpus}: {kept}", flush=True)
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    return {c: index[c] for c in corpora if c in index}
