"""``furui model``: train, evaluate, score with and verify the flow classifier.

Every command uses the same code as the pipeline (``correlator.ml``); errors end the
process with a one-line message and an exit code (6 for a bundle that fails verification).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import typer
from rich.console import Console
from rich.table import Table

from correlator.cli_common import JsonOption, fail_cleanly
from correlator.errors import InputError, ModelError
from correlator.ml import MODEL_NAME
from correlator.ml.dataset import (
    LabelledFlows,
    conn_logs,
    load_conn,
    load_context,
    load_labelled,
)
from correlator.ml.features import extract

if TYPE_CHECKING:
    from correlator.ml.bundle import ModelBundle
    from correlator.ml.evaluate import Evaluation

# scikit-learn and skops (``ml.bundle``, ``ml.train``, ``ml.evaluate``, ``ml.novelty``) take
# a second to import: each command imports what it uses, so ``furui --help`` stays quick.

logger = logging.getLogger(__name__)

#: Width of tables written to a pipe or file.
_PIPED_WIDTH = 140

model_app = typer.Typer(
    help="Train, evaluate, score with and verify the flow classifier (docs/model.md).",
    no_args_is_help=True,
)

DataOption = Annotated[
    list[Path],
    typer.Option(
        "--data",
        help="Labelled Zeek conn logs (Stratosphere TSV with label/detailedlabel, IoT-23 "
        "CSV), files or folders; repeat the option for several.",
        show_default=False,
    ),
]
ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="A bundle folder (with manifest.json). [default: the bundle shipped in Furui]",
        show_default=False,
    ),
]


@model_app.command("train")
@fail_cleanly
def train_command(
    data: DataOption,
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder of the model line; the bundle goes in <out>/<version>."),
    ] = Path("models") / MODEL_NAME,
    version: Annotated[
        str | None,
        typer.Option("--version", help="CalVer YYYY.MM.N. [default: next free one this month]"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random state of the training.")] = 0,
) -> None:
    """Train the flow classifier on labelled captures and write a bundle.

    Evaluates leave-one-capture-out (each capture scored by a model that never saw it),
    chooses the threshold on those scores, fits on every capture, and writes model.skops,
    manifest.json and metrics.json.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    from correlator.ml.bundle import next_version  # noqa: PLC0415
    from correlator.ml.train import Provenance, TrainConfig, make_bundle, train  # noqa: PLC0415

    chosen = version or next_version(out, now)
    if (out / chosen).exists():  # before a minute of training, not after
        raise ModelError(f"{out / chosen}: exists; bundles are immutable, choose a new --version")
    labelled = load_labelled(data)
    config = TrainConfig(random_state=seed)
    result = train(labelled, config)
    command = " ".join(
        [
            "furui model train",
            *(f"--data {p}" for p in data),
            f"--out {out}",
            f"--version {chosen}",
            f"--seed {seed}",
        ]
    )
    provenance = Provenance(
        version=chosen,
        created_at=now,
        git_commit=_git_commit(),
        command=command,
        datasets=tuple(sorted({p.resolve().name for p in data})),
    )
    bundle = make_bundle(labelled, result, config, provenance)
    folder = bundle.save(out)
    console = _console()
    _print_evaluation(console, result.cross_capture, "Leave-one-capture-out metrics")
    console.print(f"Wrote {folder} ({bundle.ref}, threshold {bundle.threshold:.2f}).")


@model_app.command("evaluate")
@fail_cleanly
def evaluate_command(
    data: DataOption, model: ModelOption = None, json_output: JsonOption = False
) -> None:
    """Print a bundle's metrics on labelled captures, at its threshold.

    Captures the bundle was trained on are marked: metrics on them are in-sample and
    optimistic (the bundle's metrics.json holds the cross-capture ones).
    """
    from correlator.ml.bundle import ModelBundle  # noqa: PLC0415
    from correlator.ml.evaluate import evaluate  # noqa: PLC0415

    bundle = ModelBundle.load(model)
    labelled = load_labelled(data)
    scores = bundle.probability(labelled.features)
    result = evaluate(scores, labelled, bundle.threshold)
    seen = _seen_in_training(bundle, labelled)
    if json_output:
        payload = {"model": bundle.ref, "trained_on": sorted(seen), **result.to_dict()}
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    console = _console()
    _print_evaluation(console, result, f"{bundle.ref} at threshold {bundle.threshold:.2f}", seen)
    if seen:
        console.print(f"* trained on these {len(seen)} captures: in-sample, optimistic.")


@model_app.command("score")
@fail_cleanly
def score_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Zeek conn logs (TSV, JSON or CSV), files or folders; dns and ssl logs in "
            "the same folders are read for the DNS/TLS features."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CSV with one row per conn event: uid,score.")
    ] = Path("scores.csv"),
    model: ModelOption = None,
) -> None:
    """Score every conn event with a bundle: a CSV of uid and probability (0–1)."""
    from correlator.ml.bundle import ModelBundle  # noqa: PLC0415

    bundle = ModelBundle.load(model)
    events = load_conn(paths)
    context = load_context(paths)  # the dns and ssl logs beside them, as in training
    scores = bundle.probability(extract(events, dns=context.dns, ssl=context.ssl))
    table = pa.table(
        {
            "uid": events.column("zeek.session_id").combine_chunks(),
            "score": pa.array(scores.round(6), pa.float64()),
        }
    )
    pcsv.write_csv(table, output)
    flagged = int((scores >= bundle.threshold).sum())
    Console(stderr=True).print(
        f"{len(scores):,} conn events scored with {bundle.ref}; {flagged:,} at or above the "
        f"threshold {bundle.threshold:.2f}; written to {output}."
    )


@model_app.command("verify")
@fail_cleanly
def verify_command(model: ModelOption = None, json_output: JsonOption = False) -> None:
    """Verify a bundle (sha256, feature schema, scikit-learn version, trusted types)."""
    from correlator.ml.bundle import ModelBundle  # noqa: PLC0415

    bundle = ModelBundle.load(model)
    manifest = bundle.manifest
    facts = {
        "model": bundle.ref,
        "threshold": manifest.threshold,
        "artifact_sha256": manifest.artifact_sha256,
        "feature_schema_hash": manifest.feature_schema_hash,
        "sklearn_version": manifest.sklearn_version,
        "trained_on_rows": manifest.training_data.rows,
        "dataset_sha256": manifest.training_data.dataset_sha256,
    }
    if json_output:
        sys.stdout.write(orjson.dumps(facts, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    for key, value in facts.items():
        typer.echo(f"{key} = {value}")
    typer.echo("OK: the bundle verifies.")


@model_app.command("novelty")
@fail_cleanly
def novelty_command(
    data: Annotated[
        list[Path],
        typer.Option(
            "--data", help="This site's recent Zeek conn logs (unlabelled).", show_default=False
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="New folder for the novelty bundle.")],
    contamination: Annotated[
        float,
        typer.Option("--contamination", help="Share of these flows to flag.", min=1e-5, max=0.1),
    ] = 0.001,
) -> None:
    """Fit the optional novelty model (IsolationForest) on this site's own traffic.

    Point ``ml.novelty_path`` at the folder to add its low-weight findings to every run.
    """
    events = load_conn(data)
    now = datetime.now(UTC).replace(microsecond=0)
    files = {
        str(log.path): hashlib.sha256(log.path.read_bytes()).hexdigest()
        for root in data
        for log in conn_logs(root)
    }
    context = load_context(data)
    from correlator.ml.novelty import NoveltyModel  # noqa: PLC0415

    model = NoveltyModel.fit(
        extract(events, dns=context.dns, ssl=context.ssl),
        files=files,
        version=f"{now:%Y.%m.%d}.1",
        created_at=now,
        contamination=contamination,
    )
    if out.exists():
        raise InputError(f"{out}: exists; give a new folder")
    folder = model.save(out)
    _console().print(
        f"Fitted {model.ref} on {events.num_rows:,} flows; threshold {model.threshold:.3f}; "
        f"wrote {folder}. Set ml.novelty_path = {str(folder)!r} to use it."
    )


def _seen_in_training(bundle: ModelBundle, labelled: LabelledFlows) -> set[str]:
    trained = {f.sha256 for f in bundle.manifest.training_data.files}
    return {c.name for c in labelled.captures if c.sha256 in trained}


def _print_evaluation(
    console: Console, result: Evaluation, title: str, seen: set[str] | None = None
) -> None:
    seen = seen or set()
    table = Table(title=title, title_justify="left")
    table.add_column("Capture", no_wrap=True)
    for name in ("Flows", "Malicious", "PR-AUC", "Precision", "Recall", "FPR"):
        table.add_column(name, justify="right", no_wrap=True)
    rows = [*result.per_capture.items(), ("all captures", result.pooled)]
    for name, c in rows:
        table.add_row(
            f"{name}{' *' if name in seen else ''}",
            f"{c.flows:,}",
            f"{c.malicious:,}",
            _fmt(c.pr_auc),
            _fmt(c.precision),
            _fmt(c.recall),
            _fmt(c.fpr),
        )
    console.print(table)
    families = Table(title="Recall per family", title_justify="left")
    for name in ("Family", "Flows", "Detected", "Recall"):
        families.add_column(name, justify="left" if name == "Family" else "right")
    for name, f in result.per_family.items():
        families.add_row(name, f"{f.flows:,}", f"{f.detected:,}", _fmt(f.recall))
    console.print(families)


def _console() -> Console:
    """Standard output as wide as the terminal, or wide enough for capture names in a pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=_PIPED_WIDTH)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _git_commit() -> str | None:
    """The commit of the working tree, where it is a git checkout with git installed."""
    git = shutil.which("git")
    if git is None:
        return None
    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None if done.returncode == 0 else None
