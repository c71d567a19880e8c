"""``furui eval``: detection quality of the whole pipeline on labelled captures.

Runs ``pipeline.analyze`` over each capture in a temporary store (``evaluation.run``) and
scores the incidents against the labels (``evaluation.metrics``); ``docs/detection.md``
gives the definitions and the figures on the shared labelled captures.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Final

import orjson
import typer
from rich.console import Console
from rich.table import Table

from correlator import log
from correlator.cli_common import ConfigOption
from correlator.errors import InputError
from correlator.evaluation.labels import ATTACK_PATTERN, HostClass
from correlator.evaluation.metrics import HostOutcome, Summary, summarise
from correlator.evaluation.run import (
    CaptureRun,
    Evaluation,
    ModelMode,
    evaluate_captures,
    find_captures,
    parse_labels,
)
from correlator.settings import load_settings

#: Width of tables written to a pipe or file.
_PIPED_WIDTH: Final = 160
#: Rules listed per host in the host table.
_RULES_SHOWN: Final = 3


def eval_command(  # noqa: PLR0917 - typer commands take their options as parameters
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Labelled captures: log files or folders (each folder of logs is a "
            "capture; a folder of several labelled conn logs, one capture per file).",
            show_default=False,
        ),
    ],
    labels: Annotated[
        str,
        typer.Option(
            "--labels",
            help="Where the truth is: a label field of the logs (label: the label / "
            "detailedlabel columns of Stratosphere and IoT-23 logs, in every log; or a full "
            "field name such as zeek.connection.label), or a CSV file: ip,label[,family]"
            "[,capture] lists hosts (infected, attacked, benign), uid,label[,detailedlabel]"
            "[,capture] lists flows.",
        ),
    ] = "label",
    attack_label: Annotated[
        str,
        typer.Option(
            "--attack-label",
            help="Detailed-label text of malicious flows that attack the device: its "
            "hosts are victims, not infected.",
        ),
    ] = ATTACK_PATTERN,
    ml: Annotated[
        list[ModelMode] | None,
        typer.Option(
            "--ml",
            help="How the flow model takes part: settings (ml.enabled), off (rules and "
            "sensor signals only), shipped, or held-out (refitted without each capture). "
            "Repeat to compare.  [default: settings]",
            show_default=False,
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a PNG of host risks and confusion (matplotlib)."),
    ] = None,
    all_hosts: Annotated[
        bool, typer.Option("--all-hosts", help="List every labelled host, not only notable ones.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole evaluation as JSON.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output.")
    ] = 0,
    config: ConfigOption = None,
) -> None:
    """Measure host- and event-level precision and recall of incidents against labels.

    Each capture is analysed by the whole pipeline in a temporary store. A host is
    infected when it originates malicious flows other than attacks on it; it is alerted
    when its strongest incident is high or critical. Infected hosts must be alerted;
    attacked and benign hosts must not. Definitions: docs/detection.md.
    """
    log.configure(verbose=verbose, json_logs=json_output)
    settings = load_settings(config)
    source = parse_labels(labels, attack_pattern=attack_label)
    found = find_captures(paths, source)
    stderr = Console(stderr=True)
    if not found.captures:
        raise InputError(
            f"{', '.join(str(p) for p in paths)}: no labelled capture (no log with the label "
            f"field {labels!r}; --labels names another field or a label file)"
        )
    modes = list(dict.fromkeys(ml or [ModelMode.SETTINGS]))
    evaluations: list[tuple[Evaluation, Summary]] = []
    for mode in modes:

        def progress(run: CaptureRun, mode: ModelMode = mode) -> None:
            if not json_output:
                stderr.print(
                    f"[dim]ml {mode.value}: {run.name}: {run.events:,} events, "
                    f"{run.incidents} incidents ({run.seconds:.1f} s)[/]"
                )

        evaluation = evaluate_captures(
            found.captures, settings, source, mode=mode, on_capture=progress
        )
        evaluations.append((evaluation, summarise(evaluation.results)))
    if plot is not None:
        from correlator.evaluation.plot import plot_summaries  # noqa: PLC0415 - matplotlib

        plot_summaries([(_mode_label(e), s) for e, s in evaluations], plot)
    if json_output:
        payload = {
            "captures": [asdict(c) for c in found.captures],
            "passed_over": [{"path": p, "reason": r} for p, r in found.passed_over],
            "evaluations": [_document(e, s) for e, s in evaluations],
        }
        sys.stdout.buffer.write(
            orjson.dumps(payload, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z)
        )
        sys.stdout.write("\n")
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPED_WIDTH)
    for evaluation, summary in evaluations:
        _print(console, evaluation, summary, all_hosts=all_hosts)
    console.print(
        f"{len(found.captures)} captures; {len(found.passed_over)} files passed over "
        "(--json lists them with the reason)."
    )
    if plot is not None:
        console.print(f"Plot written to {plot}.")


def _mode_label(evaluation: Evaluation) -> str:
    return f"ml {evaluation.mode}"


def _document(evaluation: Evaluation, summary: Summary) -> dict[str, Any]:
    return {
        "mode": evaluation.mode,
        "model": evaluation.model,
        "labels": evaluation.labels,
        "rules": evaluation.rules,
        "ruleset": evaluation.ruleset,
        "runs": [asdict(r) for r in evaluation.runs],
        "summary": asdict(summary),
        "failures": [_failure(h) for h in summary.failures()],
    }


def _failure(host: HostOutcome) -> dict[str, Any]:
    return {
        "capture": host.capture,
        "host": host.truth.ip,
        "class": host.truth.klass.value,
        "family": host.truth.family,
        "severity": host.severity,
        "risk": host.risk,
        "rules": [r.name for r in host.rules],
    }


def _print(console: Console, evaluation: Evaluation, summary: Summary, *, all_hosts: bool) -> None:
    console.rule(
        f"ml {evaluation.mode}: {evaluation.model}; {evaluation.rules} rules "
        f"({evaluation.ruleset[:12]}); labels: {evaluation.labels}"
    )
    captures = Table(title="Per capture", title_justify="left")
    captures.add_column("Capture", overflow="fold")
    for name in (
        *("Inf/Att/Ben", "TP/FN/FP", "Host P", "Host R", "Malicious flows"),
        *("Event R", "Event P", "Event R alerts", "Event P alerts"),
    ):
        captures.add_column(name, justify="right", no_wrap=True)
    for result in summary.captures:
        rates = result.host_rates
        counts = [
            sum(h.truth.klass is k for h in result.hosts)
            for k in (HostClass.INFECTED, HostClass.ATTACKED, HostClass.BENIGN)
        ]
        flows = result.flows
        captures.add_row(
            result.name,
            "/".join(str(c) for c in counts),
            f"{rates.tp}/{rates.fn}/{rates.fp}",
            _fmt(rates.precision),
            _fmt(rates.recall),
            f"{flows.any_incident.malicious:,}",
            _fmt(flows.any_incident.recall),
            _fmt(flows.any_incident.precision),
            _fmt(flows.alerting.recall),
            _fmt(flows.alerting.precision),
        )
    pooled = summary.hosts
    captures.add_row(
        "all captures",
        "",
        f"{pooled.tp}/{pooled.fn}/{pooled.fp}",
        _fmt(pooled.precision),
        _fmt(pooled.recall),
        f"{summary.flows_any.malicious:,}",
        _fmt(summary.flows_any.recall),
        _fmt(summary.flows_any.precision),
        _fmt(summary.flows_alerting.recall),
        _fmt(summary.flows_alerting.precision),
        style="bold",
    )
    console.print(captures)
    _print_hosts(console, summary, all_hosts=all_hosts)
    _print_families(console, summary)
    confusion = Table(title="Hosts by class and strongest incident", title_justify="left")
    confusion.add_column("Class")
    for severity in next(iter(summary.confusion.values())):
        confusion.add_column(severity, justify="right")
    for klass, row in summary.confusion.items():
        confusion.add_row(klass, *(str(v) for v in row.values()))
    console.print(confusion)
    drivers = Table(title="Rules in incidents of attacked and benign hosts", title_justify="left")
    for name in ("Rule", "Ruleset", "Hosts", "Alerted", "Max points", "Hosts (capture:ip)"):
        drivers.add_column(name, justify="right" if name in ("Hosts", "Alerted") else "left")
    for impact in summary.false_positive_drivers:
        drivers.add_row(
            impact.name,
            impact.ruleset,
            str(impact.hosts),
            str(impact.alerted),
            f"{impact.max_contribution:.1f}",
            ", ".join(impact.examples),
        )
    console.print(
        drivers if summary.false_positive_drivers else "No attacked or benign host has an incident."
    )
    failures = summary.failures()
    if not failures:
        console.print("[green]Every infected host alerted; no attacked or benign host alerted.[/]")
    for host in failures:
        console.print(
            f"[red]misses the bar[/]: {host.capture} {host.truth.ip} ({host.truth.klass.value}, "
            f"{host.truth.family}) got {host.severity} ({host.risk:.1f}) from "
            f"{', '.join(r.name for r in host.rules) or 'nothing'}"
        )


def _print_hosts(console: Console, summary: Summary, *, all_hosts: bool) -> None:
    table = Table(title="Hosts", title_justify="left")
    table.add_column("Capture", overflow="fold")
    for name in ("Host", "Class", "Family", "Severity", "Risk"):
        table.add_column(name, justify="right" if name == "Risk" else "left", no_wrap=True)
    table.add_column("Top evidence (risk points)")
    for result in summary.captures:
        for host in result.hosts:
            notable = host.truth.klass in (HostClass.INFECTED, HostClass.ATTACKED) or host.incidents
            if not (all_hosts or notable):
                continue
            table.add_row(
                result.name,
                host.truth.ip,
                host.truth.klass.value,
                host.truth.family,
                host.severity,
                f"{host.risk:.1f}",
                "; ".join(f"{r.name} ({r.contribution:.1f})" for r in host.rules[:_RULES_SHOWN]),
            )
    console.print(table)


def _print_families(console: Console, summary: Summary) -> None:
    table = Table(title="Per family", title_justify="left")
    for name in ("Family", "Role", "Hosts", "Alerted", "Flows", "Referenced", "By alerts"):
        table.add_column(name, justify="left" if name in ("Family", "Role") else "right")
    for family in summary.families:
        table.add_row(
            family.family,
            family.role,
            str(family.hosts),
            str(family.alerted),
            f"{family.flows:,}",
            f"{family.referenced:,}",
            f"{family.referenced_alerting:,}",
        )
    console.print(table)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
