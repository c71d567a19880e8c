"""Metrics of a flow classifier on labelled flows, and the choice of its threshold.

Shared by ``furui model train``/``evaluate`` and the notebooks. Every metric is reported per
capture (a capture is a different network, host and malware: what matters is how the model
does on one it has not seen) and pooled, and recall is reported per malware family.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, precision_recall_curve

from correlator.ml.dataset import LabelledFlows


@dataclass(frozen=True, slots=True)
class Counts:
    """A confusion matrix at the operating threshold and what follows from it.

    Attributes:
        flows: labelled flows.
        malicious: malicious flows among them.
        tp: malicious flows at or above the threshold.
        fp: benign flows at or above it.
        fn: malicious flows below it.
        tn: benign flows below it.
        pr_auc: average precision (area under the PR curve); ``None`` where one class is
            absent and it is undefined.
        precision: ``tp / (tp + fp)``; ``None`` when nothing was flagged.
        recall: ``tp / malicious``; ``None`` without malicious flows.
        fpr: ``fp / benign``; ``None`` without benign flows.
    """

    flows: int
    malicious: int
    tp: int
    fp: int
    fn: int
    tn: int
    pr_auc: float | None
    precision: float | None
    recall: float | None
    fpr: float | None


@dataclass(frozen=True, slots=True)
class FamilyRecall:
    """Recall on the malicious flows of one malware family."""

    family: str
    flows: int
    detected: int
    recall: float
    captures: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """All metrics of one set of scores at one threshold."""

    threshold: float
    pooled: Counts
    per_capture: dict[str, Counts]
    per_family: dict[str, FamilyRecall]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``metrics.json``), values rounded to 4 decimals."""
        rounded: dict[str, Any] = _rounded(asdict(self))
        return rounded


def counts(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], threshold: float
) -> Counts:
    """The confusion matrix and metrics of ``scores`` at ``threshold``."""
    flagged = scores >= threshold
    malicious = labels == 1
    tp = int((flagged & malicious).sum())
    fp = int((flagged & ~malicious).sum())
    fn = int((~flagged & malicious).sum())
    tn = int((~flagged & ~malicious).sum())
    both = 0 < malicious.sum() < len(labels)
    return Counts(
        flows=len(labels),
        malicious=int(malicious.sum()),
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        pr_auc=float(average_precision_score(labels, scores)) if both else None,
        precision=tp / (tp + fp) if tp + fp else None,
        recall=tp / (tp + fn) if tp + fn else None,
        fpr=fp / (fp + tn) if fp + tn else None,
    )


def evaluate(scores: npt.NDArray[np.float64], data: LabelledFlows, threshold: float) -> Evaluation:
    """Metrics pooled, per capture and per family.

    Args:
        scores: probability of malice per labelled flow of ``data``.
        data: the labelled flows (labels, capture and family of each row).
        threshold: the operating threshold.
    """
    labels, capture, family = data.labels, data.capture, data.family
    capture_names = data.capture_names
    per_capture = {
        name: counts(scores[capture == i], labels[capture == i], threshold)
        for i, name in enumerate(capture_names)
        if (capture == i).any()
    }
    per_family: dict[str, FamilyRecall] = {}
    for name in sorted(set(family[labels == 1].tolist())):
        rows = (family == name) & (labels == 1)
        detected = int((scores[rows] >= threshold).sum())
        seen_in = sorted({capture_names[i] for i in np.unique(capture[rows])})
        per_family[name] = FamilyRecall(
            name, int(rows.sum()), detected, detected / int(rows.sum()), tuple(seen_in)
        )
    return Evaluation(threshold, counts(scores, labels, threshold), per_capture, per_family)


def choose_threshold(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], max_fpr: float
) -> float:
    """The lowest threshold that flags at most ``max_fpr`` of the benign flows.

    The scores should be cross-capture (each flow scored by a model that never saw its
    capture), so the false-positive rate is the one to expect on a new network. The
    threshold is rounded up to two decimals, so it reads well in a manifest and a rounding
    never adds false positives.
    """
    benign = np.sort(scores[labels == 0])[::-1]
    allowed = math.floor(max_fpr * len(benign))
    if not len(benign):
        return 0.5
    # flag strictly above the (allowed+1)-th highest benign score
    boundary = float(benign[min(allowed, len(benign) - 1)])
    return min(1.0, math.ceil((boundary + 1e-9) * 100) / 100)


def pr_curve(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Precision and recall arrays of the PR curve (for plots)."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    return precision, recall


def _rounded(value: Any) -> Any:  # noqa: ANN401 - walks any JSON-like structure
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value
