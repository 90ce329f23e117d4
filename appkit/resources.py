"""Heavy objects shared by every session: the model store, the classifier, the separator.

All are ``st.cache_resource`` (one instance per process). The classifier is keyed
by the store root and the serving version, so a promotion made anywhere (this
app, the CLI) is picked up on the next run; :func:`forget_models` drops the old
one at once after a promotion from the app.
"""

from __future__ import annotations

import re
import threading

import streamlit as st

from singtalk import model_name
from singtalk.classify import Classifier
from singtalk.config import models_dir
from singtalk.errors import ModelError, SingtalkError
from singtalk.registry import ModelStore


def store() -> ModelStore:
    """The model store at ``$SINGTALK_MODELS`` (cheap: only paths)."""
    return ModelStore(models_dir())


@st.cache_resource(max_entries=2, show_spinner="Loading the model…")
def _load_classifier(root: str, version: str) -> Classifier:
    return Classifier(ModelStore(root).load(version))


def classifier() -> Classifier:
    """The serving model as a classifier; :class:`ModelError` when the store is empty."""
    models = store()
    version = models.current_version()
    if version is None:
        raise ModelError(f"No model is installed in {models.root}. Train one on the Training page, "
                         "or restore the shipped models/ folder.")
    return _load_classifier(str(models.root), version)


def serving_version() -> str | None:
    try:
        return store().current_version()
    except OSError:
        return None


@st.cache_data(max_entries=16, show_spinner=False)
def model_description(root: str, version: str) -> str:
    """:func:`singtalk.model_name.describe` of a stored version (its date and headline figures)."""
    try:
        return model_name.describe(ModelStore(root).read_metadata(version))
    except (OSError, ValueError, SingtalkError):
        return model_name.describe({"version": version})


@st.cache_data(max_entries=64, show_spinner=False)
def model_date(root: str, version: str) -> str:
    """:func:`singtalk.model_name.made_on` of a stored version (``'6 Dec 2026, 04:28 UTC'``); read from the id
    itself when the version is no longer in the store."""
    try:
        metadata = ModelStore(root).read_metadata(version)
    except (OSError, ValueError, SingtalkError):
        metadata = {}
    return model_name.made_on({"version": version, **metadata})


VERSION_ID = re.compile(r"\b\d{8}T\d{6}Z(?:-[A-Za-z0-9_.-]*[A-Za-z0-9])?")
"""A model version id (``20261206T042832Z``, a suffix allowed) inside a text."""


def version_names(root: str, versions) -> dict[str, str]:
    """Each version's name for a person: its date (:func:`model_date`), with seconds where two versions of
    the same minute would otherwise read alike."""
    dates = {v: model_date(root, v) for v in versions}
    alike = list(dates.values())
    return {v: f"{date[:-4]}:{v[13:15]} UTC" if alike.count(date) > 1 and date.endswith(" UTC")
            and VERSION_ID.fullmatch(v) else date for v, date in dates.items()}


def name_versions(text: str, root: str | None = None) -> str:
    """``text`` with every version id in it replaced by the model's date (:func:`model_date`)."""
    root = root or str(store().root)
    return VERSION_ID.sub(lambda found: model_date(root, found.group(0)), str(text))


def serving_description() -> tuple[str, str] | None:
    """``(version, description)`` of the serving model; None when the store is empty."""
    version = serving_version()
    return (version, model_description(str(store().root), version)) if version else None


@st.cache_resource(show_spinner="Loading Spleeter (first use only)…")
def separator():
    """The process-wide Spleeter separator; :class:`SeparationUnavailable` without weights."""
    from singtalk.separation import get_separator

    return get_separator()


@st.cache_resource
def separation_status() -> tuple[bool, str]:
    from singtalk.separation import weights_status

    return weights_status()


def forget_models() -> None:
    """Drop cached classifiers (after a promotion or a rollback)."""
    _load_classifier.clear()


_warm_started = threading.Event()


def warm_up_in_background() -> None:
    """Import the classifying path (NumPy, SciPy, the feature constants) once, in a thread, after the first
    page is drawn. TensorFlow is not needed to classify (the model runs from its NumPy copy); vocal
    extraction and training import it when first used.
    """
    if _warm_started.is_set():
        return
    _warm_started.set()

    def work():
        try:
            from singtalk import classify, features

            features._constants(features.SAMPLE_RATE)
            classify.Classifier  # noqa: B018 - imported for its side effect
        except Exception:  # noqa: BLE001 - warming is best effort
            pass

    threading.Thread(target=work, name="singtalk-warm-up", daemon=True).start()
