"""Why the model scored a flow as it did, in words.

For each scored flow, every feature in turn is set to a typical benign value (the bundle's
``reference``: the median, or most common category, of benign training flows) and the flow
is scored again. The features whose replacement lowers the probability most are the ones
that drove the score; they are named with their values (``features.describe``). This is an
occlusion explanation: model-agnostic, exact for the model at hand, and it costs one
prediction per feature per *distinct* flow (beacons repeat the same feature row, so a
thousand identical C2 attempts are explained once).
"""

from __future__ import annotations

from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from correlator.ml.features import FEATURES, describe

#: Features named in a message.
TOP: Final = 3
#: A feature counts as a driver when replacing it lowers the probability by this much.
MIN_EFFECT: Final = 0.01
_NAN_KEY: Final = -1.0e300  # stands for NaN while looking for identical rows


class Scorer(Protocol):
    """What detectors and explanations need of a model: scores, threshold, reference."""

    @property
    def ref(self) -> str:
        """``name@version``."""
        ...

    @property
    def threshold(self) -> float:
        """Scores at or above it are flagged."""
        ...

    def probability(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """One score in 0–1 per feature row."""
        ...

    def reference(self) -> npt.NDArray[np.float64]:
        """A typical benign value per feature."""
        ...

    def summary(self, score: float) -> str:
        """A score in words."""
        ...


def drivers(bundle: Scorer, features: npt.NDArray[np.float64], top: int = TOP) -> list[list[int]]:
    """For each row, the indices of the features that raised its score most, strongest first."""
    if not len(features):
        return []
    rows, inverse = _distinct(features)
    found = _drivers_of_distinct(bundle, rows, top)
    return [found[i] for i in inverse]


def messages(bundle: Scorer, features: npt.NDArray[np.float64]) -> list[str]:
    """One sentence per row: its score and the features that drove it.

    Computed once per distinct row (a beacon's thousand identical attempts are one row).
    """
    if not len(features):
        return []
    rows, inverse = _distinct(features)
    scores = bundle.probability(rows)
    found = _drivers_of_distinct(bundle, rows, TOP, scores)
    texts = []
    for row, indices, score in zip(rows, found, scores, strict=True):
        named = [describe(j, float(row[j])) for j in indices]
        because = _join(named) if named else "the combination of its features, none alone"
        texts.append(f"{bundle.summary(float(score))}, driven by {because}")
    return [texts[i] for i in inverse]


def _distinct(
    features: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp]]:
    """The distinct rows (NaN equal to NaN) and, per input row, the index of its own."""
    keys = np.where(np.isnan(features), _NAN_KEY, features)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    return np.where(unique == _NAN_KEY, np.nan, unique), inverse.ravel()


def _drivers_of_distinct(
    bundle: Scorer,
    rows: npt.NDArray[np.float64],
    top: int,
    base: npt.NDArray[np.float64] | None = None,
) -> list[list[int]]:
    base = bundle.probability(rows) if base is None else base
    reference = bundle.reference()
    k = len(FEATURES)
    # rows × features variants, each with one feature replaced by its reference value
    variants = np.repeat(rows, k, axis=0)
    columns = np.tile(np.arange(k), len(rows))
    variants[np.arange(len(variants)), columns] = reference[columns]
    drop = base[:, None] - bundle.probability(variants).reshape(len(rows), k)
    # replacing a value by itself changes nothing: such features never drive a score
    same = (rows == reference) | (np.isnan(rows) & np.isnan(reference))
    drop[same] = 0.0
    order = np.argsort(-drop, axis=1, kind="stable")[:, :top]
    return [[int(j) for j in order[i] if drop[i, j] >= MIN_EFFECT] for i in range(len(rows))]


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]
