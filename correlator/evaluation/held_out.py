"""Flow models refitted without the capture they score (``furui eval --ml held-out``).

The shipped model was trained on the shared labelled captures, so scoring them with it is
in-sample. For each capture, ``HeldOutModels`` fits the shipped recipe (``ml.train.fit``,
its random state; the shipped bundle's threshold, weight and explanation references) on
the labelled conn flows of the *other* captures given, as ``docs/model.md``'s
leave-one-capture-out evaluation does for flows, and hands the pipeline that model in place
of the shipped one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from correlator.engine.base import Detector
from correlator.errors import InputError
from correlator.ml.bundle import ModelBundle
from correlator.ml.dataset import LabelledFlows, load_labelled
from correlator.ml.detector import FlowClassifier
from correlator.ml.train import MIN_CAPTURES, TrainConfig, fit
from correlator.normalise.addresses import Networks
from correlator.pipeline import build_detectors
from correlator.settings import Settings

if TYPE_CHECKING:
    from correlator.evaluation.run import Capture


@dataclass(frozen=True, slots=True)
class HeldOutModels:
    """The labelled flows of every capture, to fit a model without the one analysed.

    Attributes:
        flows: the labelled conn flows of every capture given.
        own: per capture name, the indices (in ``flows.captures``) of its own conn logs.
        shipped: the shipped bundle, whose recipe, threshold and explanation references
            the refitted models keep.
    """

    flows: LabelledFlows
    own: dict[str, frozenset[int]]
    shipped: ModelBundle

    @classmethod
    def of(cls, captures: Sequence[Capture], settings: Settings) -> HeldOutModels:
        """Read the captures' labelled conn flows, and check each leaves enough to fit on.

        Raises:
            ModelError: the shipped bundle fails verification.
            InputError: too few other captures to fit on.
        """
        shipped = ModelBundle.load(
            Path(settings.ml.path) if settings.ml.path else None,
            expected_version=settings.ml.expected_version,
        )
        flows = load_labelled([log for capture in captures for log in capture.logs])
        index = {c.sha256: i for i, c in enumerate(flows.captures)}
        own = {
            capture.name: frozenset(
                index[digest] for log in capture.logs if (digest := _sha256(log)) in index
            )
            for capture in captures
        }
        held_out = cls(flows, own, shipped)
        held_out.check(captures)
        return held_out

    def check(self, captures: Sequence[Capture]) -> None:
        """Fail before any run if some capture leaves too little to fit a model on.

        Raises:
            InputError: fewer than ``MIN_CAPTURES`` other captures, or one class only.
        """
        for capture in captures:
            train = self._training_rows(capture)
            others = len(np.unique(self.flows.capture[train]))
            if others < MIN_CAPTURES or len(np.unique(self.flows.labels[train])) < 2:  # noqa: PLR2004
                raise InputError(
                    f"{capture.name}: a held-out model needs labelled conn flows of both "
                    f"classes from {MIN_CAPTURES} other captures (found {others}); give more "
                    "captures"
                )

    def _training_rows(self, capture: Capture) -> npt.NDArray[np.bool_]:
        return ~np.isin(self.flows.capture, sorted(self.own[capture.name]))

    def detectors(self, capture: Capture, settings: Settings) -> list[Detector]:
        """The settings' detectors, with the flow model refitted without ``capture``."""
        train = self._training_rows(capture)
        config = TrainConfig(random_state=self.shipped.manifest.random_state)
        pipeline = fit(
            self.flows.features[train],
            self.flows.labels[train],
            self.flows.capture[train],
            config,
        )
        manifest = self.shipped.manifest.model_copy(
            update={"name": f"{self.shipped.manifest.name}-held-out"}
        )
        bundle = ModelBundle(pipeline, manifest, {})
        built = build_detectors(settings)
        internal = Networks.of(list(settings.network.internal))
        return [d for d in built if not isinstance(d, FlowClassifier)] + [
            FlowClassifier(
                bundle, internal, settings.correlation.inbound_factor, settings.ml.weight
            )
        ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
