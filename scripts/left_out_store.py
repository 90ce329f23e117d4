"""Where the served model's heads refitted without each corpus are kept, for measurements.

``train_default.py`` keeps the heads of its leave-one-source-out run here (:func:`keep`), and
``scripts/robustness.py --left-out`` asks each corpus's clips of the head that never heard that corpus, fitting
the ones missing (``robustness.left_out_models``). A folder ``var/left-out/<served version>/`` per version: a
:class:`~singtalk.registry.ModelStore` (one version per corpus, never promoted) and ``index.json`` =
{corpus: {"version", "nets"}}, ``nets`` = {view: path of the spectrogram network trained without the corpus},
empty when no network of the served model heard the corpus (its shipped networks are then already left out).
Not committed: fourteen heads take about twenty minutes to fit on two cores, and the command refits what is
missing.
"""

from __future__ import annotations

import json
from pathlib import Path

LEFT_OUT_DIR = Path(__file__).resolve().parent.parent / "var" / "left-out"
INDEX = "index.json"


def store_dir(version: str, root: Path = LEFT_OUT_DIR) -> Path:
    """The folder of ``version``'s left-out heads."""
    return Path(root) / version


def read_index(version: str, root: Path = LEFT_OUT_DIR) -> dict[str, dict]:
    """{corpus: {"version", "nets"}} of the heads kept for ``version`` (empty when none are)."""
    path = store_dir(version, root) / INDEX
    return json.loads(path.read_text()) if path.is_file() else {}


def keep(version: str, config: dict, corpus: str, result, scaler, names: list[str], *, nets: dict[str, str],
         root: Path = LEFT_OUT_DIR) -> str:
    """Save the head ``result`` (with ``scaler``) fitted without ``corpus`` for ``version``, and index it with
    the spectrogram networks ``nets`` ({view: path}) its features were computed with."""
    from singtalk import atomic
    from singtalk.features import FEATURE_VERSION
    from singtalk.registry import ModelStore, make_metadata

    folder = store_dir(version, root)
    metadata = make_metadata(feature_version=FEATURE_VERSION, feature_names=names, class_names=result.class_names,
                             config=config, trained_on={"left_out": corpus, "as": version}, parent=version)
    kept = ModelStore(folder).save(result.model, scaler, metadata, promote=False, suffix=f"without-{corpus}",
                                   note=f"{version} without {corpus}")
    index = read_index(version, root)
    index[corpus] = {"version": kept, "nets": {view: str(path) for view, path in nets.items()}}
    atomic.write_json(folder / INDEX, index)
    return kept


def networks(nets: dict[str, str] | tuple):
    """{view: SpectroNet} from {view: path} (or its items), or None (the shipped networks) when empty."""
    from singtalk.spectro import SpectroNet

    items = dict(nets)
    return {view: SpectroNet.load(path) for view, path in items.items()} or None
