"""Per-host risk from many pieces of evidence: bounded, monotone, led by the strongest.

Each distinct piece of evidence (one rule on one host in one window) carries a score in
0–100, read as the probability ``p`` that it means compromise. The incident's risk is a
noisy-OR in which the i-th strongest piece counts with weight ``1 / i**DECAY``::

    risk = 100 * (1 - prod_i (1 - p_i) ** (1 / i**DECAY))

So one critical signal alone makes a critical incident, a second strong one raises it, and a
hundred weak signals stay weak together (the weights sum to zeta(1.5) ≈ 2.6, so a hundred
signals of 20 give about 44, not 100). Repeating the same evidence adds nothing: counting
happens per rule, not per event.
"""

from __future__ import annotations

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
