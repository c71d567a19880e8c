"""The closed set of rule kinds: ``kind = "<name>"`` in a rule file names one of these.

A new kind is a module in ``engine/kinds/``, one line here, its unit tests and at least one
rule that uses it (docs/rules.md).
"""

from __future__ import annotations

from typing import Final

from correlator.engine.kinds.absence import AbsenceKind
from correlator.engine.kinds.base import Kind
from correlator.engine.kinds.beacon import BeaconKind
from correlator.engine.kinds.match import MatchKind
from correlator.engine.kinds.novelty import NewKind, RareKind
from correlator.engine.kinds.sequence import SequenceKind
from correlator.engine.kinds.threshold import ThresholdKind

KINDS: Final[dict[str, type[Kind]]] = {
    "match": MatchKind,
    "threshold": ThresholdKind,
    "sequence": SequenceKind,
    "beacon": BeaconKind,
    "new": NewKind,
    "rare": RareKind,
    "absence": AbsenceKind,
}
