"""Per-host risk from many pieces of evidence: bounded, monotone, led by the strongest.

Each distinct piece of evidence (one rule on one host in one window) carries a score in
0–100, read as the probability ``p`` that it means compromise. The incident's risk is a
noisy-OR in which the i-th strongest piece counts with weight ``1 / i**DECAY``::

    risk = 100 * (1 - prod_i (1 - p_i) ** (1 / i**DECAY))

So one critical signal alone makes a critical incident, a second strong one raises it, and a
hundred weak signals stay weak together (the weights sum to zeta(1.5) ≈ 2.6, so a hundred
signals of 20 give about 44, not 100). Repeating the same evidence adds nothing: counting
happens per rule, not per event.

``decayed_peak`` adds time: evidence fades after its last sighting (half-life), and an
incident's risk is the highest the decayed noisy-OR ever reached, with each piece of
evidence's share of it (the contribution breakdown incidents carry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

DECAY: Final = 1.5
_CEILING: Final = 1.0 - 1e-12


def combine(scores: npt.ArrayLike) -> float:
    """Risk of one incident from its evidence scores (any order)."""
    values = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if not len(values):
        return 0.0
    offsets = np.array([0], dtype=np.int64)
    return float(combine_groups(values, offsets)[0])


def combine_groups(
    scores: npt.NDArray[np.float64], offsets: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Risk of many incidents at once.

    Args:
        scores: evidence scores of all incidents, each incident's run sorted descending.
        offsets: start of each incident's run in ``scores`` (ascending, first is 0).

    Returns:
        One risk score in 0–100 per incident.
    """
    if not len(offsets):
        return np.zeros(0, dtype=np.float64)
    starts = np.repeat(offsets, np.diff(np.append(offsets, len(scores))))
    rank = np.arange(len(scores), dtype=np.float64) - starts + 1.0
    p = np.clip(scores / 100.0, 0.0, _CEILING)
    log_keep = np.log1p(-p) / rank**DECAY
    total = np.add.reduceat(log_keep, offsets) if len(scores) else np.zeros(len(offsets))
    return np.round(100.0 * (1.0 - np.exp(total)), 2)


@dataclass(frozen=True, slots=True)
class Peak:
    """The risk of one incident at its peak, and what each piece of evidence gave to it.

    Attributes:
        risk: 0–100.
        at: when the peak was reached (µs since the epoch).
        contributions: risk points of each piece of evidence (in input order); they sum to
            ``risk``. Evidence not yet seen at the peak contributes nothing.
    """

    risk: float
    at: int
    contributions: npt.NDArray[np.float64]


def decayed_peak(
    scores: npt.ArrayLike,
    first: npt.ArrayLike,
    last: npt.ArrayLike,
    half_life_seconds: float,
    hold_seconds: float = 0.0,
) -> Peak:
    """Risk of one incident with evidence that fades: the highest risk it ever reached.

    Each piece of evidence counts in full from its first sighting until ``hold_seconds``
    after its last, then halves every ``half_life_seconds``. At any moment the risk is the
    rank-weighted noisy-OR of the evidence seen so far (``combine``); the incident's risk
    is the maximum over time, which is reached at one of the first sightings. Taking the
    maximum keeps the score monotone:
    more or stronger evidence never lowers it, and a strong signal followed hours later by
    a weak one is not diluted by it. With an infinite half-life this equals ``combine``.

    Args:
        scores: 0–100 per piece of evidence (weight × confidence).
        first: first sighting of each, µs since the epoch.
        last: last sighting of each, µs.
        half_life_seconds: how fast evidence fades once held.
        hold_seconds: how long evidence counts in full after its last sighting.
    """
    values = np.asarray(scores, dtype=np.float64)
    starts = np.asarray(first, dtype=np.int64)
    ends = np.maximum(np.asarray(last, dtype=np.int64), starts)
    if not len(values):
        return Peak(0.0, 0, np.zeros(0))
    moments = np.unique(starts)
    age = np.maximum((moments[:, None] - ends[None, :]) / 1e6 - hold_seconds, 0.0)  # s
    fade = np.where(np.isinf(half_life_seconds), 1.0, np.exp2(-age / half_life_seconds))
    seen = starts[None, :] <= moments[:, None]
    p = np.clip(values[None, :] / 100.0 * fade * seen, 0.0, _CEILING)
    ordered = -np.sort(-p, axis=1)
    rank = np.arange(1, len(values) + 1, dtype=np.float64) ** DECAY
    log_keep = (np.log1p(-ordered) / rank).sum(axis=1)
    risks = 100.0 * (1.0 - np.exp(log_keep))
    best = int(np.argmax(risks))
    risk = float(np.round(risks[best], 2))
    # each piece's share of the log of the risk's complement, at the peak
    at_peak = p[best]
    order = np.argsort(-at_peak, kind="stable")
    shares = np.zeros(len(values))
    shares[order] = np.log1p(-at_peak[order]) / rank
    total = shares.sum()
    contributions = risk * shares / total if total < 0 else np.zeros(len(values))
    return Peak(risk, int(moments[best]), contributions)
