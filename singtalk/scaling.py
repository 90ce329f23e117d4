"""Min-max feature scaling fitted on training rows, stored as plain JSON.

``transform`` maps the fitted range of each feature to [0, 1] exactly like
:class:`sklearn.preprocessing.MinMaxScaler`, then clips to ``clip``
(default [-0.5, 1.5]): values up to half a range outside what training saw pass
through unchanged, wilder ones (a broken recording, a bug upstream) cannot push
the network far outside the region it was trained on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic import write_json
from .errors import DatasetError, ModelError

SCALER_FORMAT = 1
DEFAULT_CLIP = (-0.5, 1.5)


class MinMaxScaling:
    """Per-feature min-max scaling with a named feature schema.

    ``X`` is a 2-D array ``(n_rows, n_features)`` in ``feature_names`` order, or
    a DataFrame holding (at least) those columns. Learned state ends in ``_``.
    """

    def __init__(
        self,
        feature_names: Sequence[str] | None = None,
        *,
        clip: tuple[float, float] | None = DEFAULT_CLIP,
        feature_version: str | None = None,
    ):
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.clip = tuple(clip) if clip is not None else None
        self.feature_version = feature_version
        self.min_: np.ndarray | None = None
        self.max_: np.ndarray | None = None

    # -- fitting and applying -------------------------------------------------
    def fit(self, X, feature_names: Sequence[str] | None = None) -> "MinMaxScaling":
        """Learn each feature's min and max from training rows ``X``."""
        if feature_names is not None:
            self.feature_names = list(feature_names)
        if self.feature_names is None and hasattr(X, "columns"):
            self.feature_names = [str(c) for c in X.columns]
        values = self._matrix(X, fitted=False)
        if values.shape[0] == 0:
            raise DatasetError("Cannot fit the scaler on an empty table.")
        self.min_ = values.min(axis=0)
        self.max_ = values.max(axis=0)
        return self

    def transform(self, X) -> np.ndarray:
        """Scale ``X`` to the fitted range; returns float32 ``(n_rows, n_features)``."""
        if self.min_ is None or self.max_ is None:
            raise ModelError("The scaler is not fitted: fit it on training rows or load a saved one.")
        values = self._matrix(X, fitted=True)
        span = self.max_ - self.min_
        # (near-)constant features map to 0, with sklearn's threshold
        span = np.where(span < 10 * np.finfo(np.float64).eps, 1.0, span)
        scaled = (values - self.min_) / span
        if self.clip is not None:
            scaled = np.clip(scaled, self.clip[0], self.clip[1])
        return scaled.astype(np.float32)

    def fit_transform(self, X, feature_names: Sequence[str] | None = None) -> np.ndarray:
        return self.fit(X, feature_names).transform(X)

    @property
    def n_features(self) -> int:
        if self.feature_names is not None:
            return len(self.feature_names)
        return 0 if self.min_ is None else len(self.min_)

    def _matrix(self, X, *, fitted: bool) -> np.ndarray:
        if hasattr(X, "columns"):
            if self.feature_names is None:
                raise DatasetError("The scaler has no feature names to select table columns with.")
            missing = [name for name in self.feature_names if name not in X.columns]
            if missing:
                raise DatasetError(f"The feature table lacks {len(missing)} feature column(s): {missing[:5]}")
            X = X[self.feature_names].to_numpy()
        values = np.asarray(X, dtype=np.float64)
        if values.ndim == 1:
            values = values.reshape(1, -1)
        if values.ndim != 2:
            raise DatasetError(f"Features must be a 2-D table, got shape {values.shape}.")
        expected = len(self.min_) if fitted else (len(self.feature_names) if self.feature_names else None)
        if expected is not None and values.shape[1] != expected:
            raise DatasetError(f"Expected {expected} feature columns, got {values.shape[1]}.")
        bad = ~np.isfinite(values)
        if bad.any():
            columns = sorted(set(np.nonzero(bad)[1].tolist()))
            names = [self.feature_names[c] if self.feature_names else str(c) for c in columns]
            raise DatasetError(f"Features contain NaN or infinite values in column(s) {names[:5]}.")
        return values

    # -- persistence ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        if self.min_ is None or self.max_ is None:
            raise ModelError("Cannot serialise a scaler that is not fitted.")
        return {
            "kind": "minmax",
            "version": SCALER_FORMAT,
            "feature_version": self.feature_version,
            "feature_names": list(self.feature_names or []),
            "min": [float(v) for v in self.min_],
            "max": [float(v) for v in self.max_],
            "clip": list(self.clip) if self.clip is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MinMaxScaling":
        try:
            if data.get("kind", "minmax") != "minmax" or int(data["version"]) != SCALER_FORMAT:
                raise ModelError(
                    f"Unsupported scaler file (kind={data.get('kind')!r}, version={data.get('version')!r}); "
                    f"this code reads minmax version {SCALER_FORMAT}."
                )
            names = [str(n) for n in data["feature_names"]]
            low = np.asarray(data["min"], dtype=np.float64)
            high = np.asarray(data["max"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"Malformed scaler data: {err!r}") from err
        if not (len(names) == len(low) == len(high)) or not len(names):
            raise ModelError(
                f"Malformed scaler data: {len(names)} names, {len(low)} minima, {len(high)} maxima."
            )
        clip = data.get("clip")
        scaler = cls(names, clip=tuple(clip) if clip is not None else None, feature_version=data.get("feature_version"))
        scaler.min_, scaler.max_ = low, high
        return scaler

    def save(self, path: str | os.PathLike) -> Path:
        """Write the scaler as JSON (atomically)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MinMaxScaling":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ModelError(f"Cannot read the scaler file {path}: {err}") from err
        return cls.from_dict(data)

    def __repr__(self) -> str:
        state = "fitted" if self.min_ is not None else "unfitted"
        return f"MinMaxScaling({self.n_features} features, {state}, clip={self.clip})"
