"""``match``: single-event predicates, one finding per host, group and window.

Every group with at least one matching event is reported once per ``window``, however often
the event repeats: repeated identical evidence is suppressed here, and counted.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from correlator.engine.kinds.base import GroupedParams
from correlator.engine.kinds.threshold import CountingKind
from correlator.engine.window import Duration


class MatchParams(GroupedParams):
    """Params of ``match``."""

    # one finding per host, group and window of this length, however many events
    window: Duration = 3600


class MatchKind(CountingKind):
    """Single-event predicates; one finding per host, group and window."""

    name = "match"
    Params = MatchParams
    statistics = frozenset({"count", "first", "last", "span", "window", "peer"})
    default_message = "{rule}: {count} matching events from {host} ({first} to {last})"

    def judge(self, groups: pa.Table) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """Every group qualifies: it holds at least one matching event."""
        return np.ones(groups.num_rows, dtype=bool), self.per_rule(groups, "confidence")
