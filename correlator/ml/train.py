"""Fit the flow classifier: one scikit-learn Pipeline, evaluated on captures it never saw.

The estimator is a ``HistGradientBoostingClassifier`` (native missing values and
categories, fast batch prediction) inside ``CalibratedClassifierCV``, itself the one step of
a ``Pipeline``. Calibration folds are split by capture (``GroupKFold``), so the
probabilities are those of flows from a network the booster did not see. The calibration
is sigmoid (Platt): two parameters cannot reshape the score scale around the few captures
of a fold, as an isotonic map did when we compared them (held-out Hakai flows fell from
recall 1.0 to 0.0 at the chosen threshold with isotonic; docs/model.md).

Evaluation is leave-one-capture-out: for each capture, the whole pipeline (calibration
included) is fitted on the other captures and scores the held-out one. Those scores give
every metric reported and the operating threshold (``evaluate.choose_threshold``); random
row splits are never used, because flows of one capture are near copies of each other and
would be scored as if known.

Each capture weighs the same, and so does each class within it (``capture_weights``), so
the 8,222 flows of one Hakai bot do not define what "malicious" looks like, nor a 24-hour
benign capture what "benign" does.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from correlator.errors import InputError
from correlator.ml.bundle import (
    MODEL_NAME,
    Manifest,
    ModelBundle,
    TrainingData,
    TrainingFile,
    artifact_sha256,
    skops_version,
)
from correlator.ml.dataset import LABELS, LabelledFlows
from correlator.ml.evaluate import Evaluation, choose_threshold, evaluate
from correlator.ml.features import CATEGORICAL, FEATURE_NAMES, FEATURE_SCHEMA_HASH, FEATURES

logger = logging.getLogger(__name__)

#: Name of the pipeline's one step.
STEP: Final = "classifier"
#: Captures needed: one held out, and two to fit and calibrate on (folds by capture).
MIN_CAPTURES: Final = 3


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyperparameters, fixed here so that one command reproduces the shipped model.

    Attributes:
        random_state: seed of every random choice.
        max_iter: boosting rounds; few and shallow trees keep prediction over 1M flows/s.
        learning_rate: shrinkage per round.
        max_leaf_nodes: leaves per tree.
        max_depth: levels per tree: shallow trees generalise across captures (mean
            per-capture PR-AUC 0.98 against 0.88 unbounded, in leave-one-capture-out
            runs) and are faster to walk.
        min_samples_leaf: smallest leaf; large, so that no leaf memorises a few flows.
        l2_regularization: on leaf values.
        calibration: ``sigmoid`` or ``isotonic`` (see the module's docstring).
        calibration_folds: capture-grouped folds of the calibration.
        max_fpr: share of benign held-out flows the threshold may flag.
    """

    random_state: int = 0
    max_iter: int = 30
    learning_rate: float = 0.3
    max_leaf_nodes: int = 15
    max_depth: int = 4
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    calibration: str = "sigmoid"
    calibration_folds: int = 3
    max_fpr: float = 0.01


@dataclass(frozen=True, slots=True)
class TrainResult:
    """A fitted pipeline, its threshold and its cross-capture evaluation.

    Attributes:
        pipeline: fitted on every capture.
        threshold: chosen on the cross-capture scores.
        cross_capture: metrics of the leave-one-capture-out scores at the threshold.
        scores: the leave-one-capture-out score of every labelled flow.
        reference: per feature, a typical benign value (explanations compare against it).
    """

    pipeline: Pipeline
    threshold: float
    cross_capture: Evaluation
    scores: npt.NDArray[np.float64]
    reference: tuple[float, ...]


def build_pipeline(
    config: TrainConfig, folds: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]
) -> Pipeline:
    """The untrained pipeline."""
    booster = HistGradientBoostingClassifier(
        max_iter=config.max_iter,
        learning_rate=config.learning_rate,
        max_leaf_nodes=config.max_leaf_nodes,
        max_depth=config.max_depth,
        min_samples_leaf=config.min_samples_leaf,
        l2_regularization=config.l2_regularization,
        categorical_features=list(CATEGORICAL),
        # a fixed number of rounds: early stopping would draw a random validation split
        early_stopping=False,
        random_state=config.random_state,
    )
    calibrated = CalibratedClassifierCV(
        booster, method=config.calibration, cv=folds, ensemble=False
    )
    return Pipeline([(STEP, calibrated)])


def capture_weights(
    capture: npt.NDArray[np.int64], labels: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Sample weights giving each (capture, class) the same total weight; mean 1."""
    keys = capture * 2 + labels
    _, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    weights = np.asarray(1.0 / sizes[inverse], dtype=np.float64)
    normalised: npt.NDArray[np.float64] = weights / weights.mean()
    return normalised


def fit(
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    capture: npt.NDArray[np.int64],
    config: TrainConfig,
) -> Pipeline:
    """Fit the pipeline on flows of several captures (calibration folds by capture)."""
    folds = min(config.calibration_folds, len(np.unique(capture)))
    splitter = GroupKFold(n_splits=folds)
    # scikit-learn 1.9's CalibratedClassifierCV(ensemble=False) does not pass ``groups`` on
    # to its splitter (cross_val_predict gets only the estimator's parameters), so the
    # capture-grouped folds are handed over as explicit index pairs ...
    splits = list(splitter.split(features, labels, groups=capture))
    features = without_unknown_columns(features, [rows for rows, _ in splits])
    pipeline = build_pipeline(config, splits)
    # one OpenMP thread: on tens of thousands of rows, threads cost more in waiting than
    # they save (three times slower on the 2-core build machines, worse when it is busy),
    # and the histogram sums are then taken in one order, so bundles are byte-identical
    with threadpool_limits(limits=1, user_api="openmp"):
        # the calibrator hands the weights on to the booster's fit
        weights = capture_weights(capture, labels)
        pipeline.fit(features, labels, **{f"{STEP}__sample_weight": weights})
    # ... and replaced afterwards by the splitter that made them: the fitted calibrator
    # does not use them, and the bundle should not carry 36k indices per fold
    pipeline.set_params(**{f"{STEP}__cv": splitter})
    return pipeline


def without_unknown_columns(
    features: npt.NDArray[np.float64], subsets: Sequence[npt.NDArray[np.int64]] = ()
) -> npt.NDArray[np.float64]:
    """``features`` with every column never known in the rows, or in one subset, made 0.

    A feature with no known value in the training rows (no labelled capture has DNS
    visibility today, see ``dns_tls``) cannot be learned, and scikit-learn 1.9's binning
    raises ``ValueError`` on a column that is NaN in every row a booster is fitted on:
    the whole training set, or the rows of one calibration fold (``subsets``; a TLS
    feature known in one capture only is unknown in the folds without it). A constant
    column gets no split point, so no tree uses it and its values at scoring time change
    nothing. Known columns are left as they are.
    """
    unknown = np.isnan(features).all(axis=0)
    for rows in subsets:
        unknown |= np.isnan(features[rows]).all(axis=0)
    if not unknown.any():
        return features
    logger.info(
        "features without a known value in the training rows (not used by the model): %s",
        ", ".join(FEATURE_NAMES[i] for i in np.flatnonzero(unknown)),
    )
    filled = features.copy()
    filled[:, unknown] = 0.0
    return filled


def probability(pipeline: Pipeline, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Calibrated probability of malice per row."""
    return np.asarray(pipeline.predict_proba(features)[:, 1], dtype=np.float64)


def cross_capture_scores(data: LabelledFlows, config: TrainConfig) -> npt.NDArray[np.float64]:
    """Score every flow with a pipeline fitted on all the other captures."""
    scores = np.zeros(len(data.labels), dtype=np.float64)
    for held_out in np.unique(data.capture):
        test = data.capture == held_out
        train = ~test
        if len(np.unique(data.labels[train])) < 2:  # noqa: PLR2004 - two classes
            continue
        model = fit(data.features[train], data.labels[train], data.capture[train], config)
        scores[test] = probability(model, data.features[test])
    return scores


def train(data: LabelledFlows, config: TrainConfig) -> TrainResult:
    """Evaluate across captures, choose the threshold, then fit on every capture.

    Raises:
        InputError: fewer than three captures (each held-out capture needs two others to
            train and calibrate on), or a class missing.
    """
    if len(data.captures) < MIN_CAPTURES or len(np.unique(data.labels)) < 2:  # noqa: PLR2004
        raise InputError(
            f"training needs labelled flows of both classes from {MIN_CAPTURES} captures or "
            f"more (found {len(data.captures)}: {', '.join(data.capture_names)}): evaluation "
            "and calibration are split by capture"
        )
    scores = cross_capture_scores(data, config)
    threshold = choose_threshold(scores, data.labels, config.max_fpr)
    metrics = evaluate(scores, data, threshold)
    pipeline = fit(data.features, data.labels, data.capture, config)
    return TrainResult(pipeline, threshold, metrics, scores, reference_values(data))


def reference_values(data: LabelledFlows) -> tuple[float, ...]:
    """A typical benign value per feature: the median, or the most common category.

    Explanations replace one feature at a time by this value and report the features
    whose replacement lowers the score most.
    """
    benign = data.features[data.labels == 0]
    values: list[float] = []
    for index, spec in enumerate(FEATURES):
        column = benign[:, index]
        column = column[~np.isnan(column)]
        if not len(column):
            values.append(float("nan"))
        elif spec.kind == "category":
            codes, counts = np.unique(column, return_counts=True)
            values.append(float(codes[np.argmax(counts)]))
        else:
            values.append(float(np.median(column)))
    return tuple(values)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where and how a bundle is made, for its manifest.

    Attributes:
        version: CalVer of the bundle.
        created_at: when (UTC).
        git_commit: the code's commit, if known.
        command: the command line that trained it.
        datasets: names of the data roots given.
    """

    version: str
    created_at: datetime
    git_commit: str | None
    command: str
    datasets: tuple[str, ...]


def make_bundle(
    data: LabelledFlows, result: TrainResult, config: TrainConfig, provenance: Provenance
) -> ModelBundle:
    """A bundle of a training result: the pipeline, its manifest and its metrics."""
    training = TrainingData(
        datasets=provenance.datasets,
        files=tuple(
            TrainingFile(
                name=c.name,
                sha256=c.sha256,
                flows=c.flows,
                rows=c.rows,
                label_counts=c.label_counts,
            )
            for c in data.captures
        ),
        row_selection=(
            "every flow of every labelled Zeek conn log under the data roots whose label "
            "maps to a class; features use all flows of the capture and the dns and ssl "
            "logs in its folder (dataset_sha256 covers them)"
        ),
        label_mapping=LABELS,
        rows=len(data.labels),
        label_counts=data.label_counts(),
        dataset_sha256=data.fingerprint(),
    )
    manifest = Manifest(
        name=MODEL_NAME,
        version=provenance.version,
        created_at=provenance.created_at,
        git_commit=provenance.git_commit,
        python=platform.python_version(),
        sklearn_version=sklearn.__version__,
        skops_version=skops_version(),
        feature_names=FEATURE_NAMES,
        feature_schema_hash=FEATURE_SCHEMA_HASH,
        threshold=result.threshold,
        random_state=config.random_state,
        artifact_sha256=artifact_sha256(result.pipeline),
        command=provenance.command,
        hyperparameters=asdict(config),
        reference=tuple(None if np.isnan(v) else v for v in result.reference),
        training_data=training,
    )
    metrics = {
        "evaluation": "leave-one-capture-out: each capture scored by a pipeline fitted on "
        "all the others (calibration included)",
        "threshold_rule": f"lowest threshold flagging at most {config.max_fpr:.0%} of benign "
        "held-out flows",
        **result.cross_capture.to_dict(),
    }
    return ModelBundle(result.pipeline, manifest, metrics)
