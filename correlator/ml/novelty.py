"""Optional unsupervised signal: flows unusual for *this* site, by an IsolationForest.

The flow classifier knows malware seen in other networks; it cannot know what is normal
here. The novelty model learns that from the site's own recent conn logs (no labels):
``furui model novelty --data <a week of conn logs> --out <folder>`` fits an IsolationForest
on the same ``features.FEATURES`` and sets its threshold so that ``contamination`` of those
flows (0.1 % by default) would be flagged. Setting ``ml.novelty_path`` to the folder makes
every run also emit low-weight ``ml-novelty`` findings for flows above it. Off by default.

Caveats, stated in docs/model.md: whatever was already happening during the fitting period
(including an infection) is normal to this model; refit it regularly; and an unusual flow
is weak evidence, hence its low default weight (``ml.novelty_weight``).

The bundle has the same files and fail-closed checks as the classifier's (sha256, feature
schema, scikit-learn major.minor, trusted types).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import sklearn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from correlator.errors import ModelError
from correlator.ml.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    check_compatible,
    predict_blocks,
    serialise,
    skops_version,
    verified_artifact,
    write_json,
)
from correlator.ml.features import FEATURE_NAMES, FEATURE_SCHEMA_HASH

NOVELTY_NAME: Final = "novelty"
#: Types an IsolationForest pipeline holds beyond skops' defaults, reviewed.
NOVELTY_TRUSTED: Final = ("numpy.dtype", "sklearn.tree._tree.Tree")


class NoveltyManifest(BaseModel):
    """Provenance of a novelty bundle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Always novelty.")
    version: str = Field(description="When it was fitted, YYYY.MM.DD.N.")
    created_at: datetime = Field(description="When the bundle was written (UTC).")
    sklearn_version: str = Field(description="scikit-learn version used for fitting.")
    skops_version: str = Field(description="skops version that wrote the artifact.")
    feature_names: tuple[str, ...] = Field(description="Columns of the feature matrix.")
    feature_schema_hash: str = Field(description="features.FEATURE_SCHEMA_HASH at fitting.")
    threshold: float = Field(ge=0, le=1, description="Anomaly score flagged at or above.")
    contamination: float = Field(gt=0, lt=0.5, description="Share of fitting flows flagged.")
    random_state: int = Field(description="Seed of the forest.")
    flows: int = Field(description="Flows fitted on.")
    files: dict[str, str] = Field(description="Conn logs fitted on → sha256.")
    artifact_sha256: str = Field(description="sha256 of model.skops.")
    reference: tuple[float | None, ...] = Field(description="Median per feature.")


@dataclass(frozen=True, slots=True)
class NoveltyModel:
    """A verified novelty model (the ``explain.Scorer`` interface)."""

    pipeline: Pipeline
    manifest: NoveltyManifest

    @property
    def ref(self) -> str:
        """``novelty@version``."""
        return f"{self.manifest.name}@{self.manifest.version}"

    @property
    def threshold(self) -> float:
        """Anomaly score flagged at or above."""
        return self.manifest.threshold

    def probability(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Anomaly score in (0, 1]: about 0.5 for ordinary flows, towards 1 for rare ones."""
        return predict_blocks(lambda block: -self.pipeline.score_samples(block), features)

    def reference(self) -> npt.NDArray[np.float64]:
        """Median of each feature over the fitting flows."""
        return np.array([np.nan if v is None else v for v in self.manifest.reference])

    def summary(self, score: float) -> str:
        """A score in words."""
        return (
            f"novelty model {self.ref}: anomaly score {score:.2f}, unusual for this site "
            f"(threshold {self.threshold:.2f})"
        )

    @classmethod
    def fit(
        cls,
        features: npt.NDArray[np.float64],
        *,
        files: dict[str, str],
        version: str,
        created_at: datetime,
        contamination: float = 0.001,
        random_state: int = 0,
    ) -> NoveltyModel:
        """Fit on a site's unlabelled flows; the threshold flags ``contamination`` of them."""
        pipeline = Pipeline(
            [
                # the forest takes no NaN: an unset value counts as the feature's median
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("forest", IsolationForest(n_estimators=100, random_state=random_state)),
            ]
        )
        pipeline.fit(features)
        scores = -pipeline.score_samples(features)
        threshold = float(np.quantile(scores, 1.0 - contamination))
        medians = pipeline.named_steps["impute"].statistics_
        manifest = NoveltyManifest(
            name=NOVELTY_NAME,
            version=version,
            created_at=created_at,
            sklearn_version=sklearn.__version__,
            skops_version=skops_version(),
            feature_names=FEATURE_NAMES,
            feature_schema_hash=FEATURE_SCHEMA_HASH,
            threshold=min(1.0, threshold),
            contamination=contamination,
            random_state=random_state,
            flows=len(features),
            files=files,
            artifact_sha256="",
            reference=tuple(None if np.isnan(v) else float(v) for v in medians),
        )
        return cls(pipeline, manifest)

    def save(self, folder: Path) -> Path:
        """Write ``model.skops`` and ``manifest.json`` into ``folder`` (created)."""
        folder.mkdir(parents=True, exist_ok=False)
        data = serialise(self.pipeline)
        (folder / MODEL_FILE).write_bytes(data)
        manifest = self.manifest.model_copy(
            update={"artifact_sha256": hashlib.sha256(data).hexdigest()}
        )
        write_json(folder / MANIFEST_FILE, manifest.model_dump(mode="json"))
        return folder

    @classmethod
    def load(cls, folder: Path) -> NoveltyModel:
        """Load and verify a novelty bundle.

        Raises:
            ModelError: missing, altered, for other features or scikit-learn, untrusted.
        """
        path = folder / MANIFEST_FILE
        try:
            manifest = NoveltyManifest.model_validate(json.loads(path.read_text("utf-8")))
        except FileNotFoundError as error:
            raise ModelError(f"{folder}: no novelty bundle here (no {MANIFEST_FILE})") from error
        except (ValidationError, json.JSONDecodeError) as error:
            raise ModelError(f"{path}: invalid novelty manifest: {error}") from error
        check_compatible(
            manifest.feature_schema_hash, manifest.feature_names, manifest.sklearn_version, folder
        )
        pipeline = verified_artifact(folder, manifest.artifact_sha256, NOVELTY_TRUSTED)
        if not isinstance(pipeline, Pipeline):
            raise ModelError(f"{folder / MODEL_FILE}: not a scikit-learn Pipeline")
        return cls(pipeline, manifest)
