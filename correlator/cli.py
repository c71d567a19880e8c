"""The ``furui`` command line.

Errors Furui raises on purpose end the process with a one-line message and an exit code
from ``errors.ExitCode``: 2 for usage errors, 3 for input errors, 4 for configuration
errors, 5 when Elasticsearch is unreachable or refuses, 6 for a missing or unverifiable model
bundle, 1 for internal errors.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import orjson
import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table

from correlator import __version__, kibana, log
from correlator.cli_common import ConfigOption, JsonOption, fail_cleanly
from correlator.cli_es import run_command, ship_command
from correlator.cli_eval import eval_command
from correlator.cli_model import model_app
from correlator.cli_rules import rules_app
from correlator.errors import ExitCode
from correlator.pipeline import RunReport, analyze
from correlator.progress import RichProgress
from correlator.settings import Settings, load_settings
from correlator.sinks.ndjson import append_quarantine, documents, write_incidents
from correlator.state import Store

_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "green"}
_STATUSES = ("open", "acknowledged", "closed")
#: Width of tables written to a pipe or file, where no terminal says how wide to be.
_PIPED_WIDTH = 160

app = typer.Typer(
    name="furui",
    help=(
        "Furui: threat analytics beside Zeek and Suricata.\n\n"
        "Reads Zeek logs (TSV or JSON, plain or gzip, rotated) and Suricata eve.json, "
        "normalises them to ECS, scores sensor alerts and behaviour per internal host, and "
        "groups the evidence into explained incidents."
    ),
    epilog=(
        "Examples:\n\n"
        "  furui analyze /opt/zeek/logs/2024-05-01 /var/log/suricata/eve.json\n\n"
        "  furui analyze examples/ --db /tmp/lab.duckdb --output lab-incidents.ndjson\n\n"
        "  furui analyze logs/ --json | jq '.incidents[] | select(.furui.severity==\"critical\")'"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
incidents_app = typer.Typer(help="Look at and triage incidents in the store.", no_args_is_help=True)
settings_app = typer.Typer(help="Inspect settings.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
app.add_typer(settings_app, name="settings")
kibana_app = typer.Typer(help="Kibana saved objects for Furui's indices.", no_args_is_help=True)
app.add_typer(kibana_app, name="kibana")
app.add_typer(model_app, name="model")
app.add_typer(rules_app, name="rules")

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help="Embedded store (DuckDB file). [default: furui.duckdb]", show_default=False
    ),
]


def _settings(config: Path | None, db: Path | None) -> Settings:
    settings = load_settings(config)
    if db is not None:
        settings = settings.model_copy(
            update={"store": settings.store.model_copy(update={"path": db})}
        )
    return settings


@app.command("analyze")
@fail_cleanly
def analyze_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Zeek log files or directories (searched recursively) and Suricata eve.json "
            "files. Plain or gzip; rotated names such as conn.00:00:00-01:00:00.log.gz work.",
            show_default=False,
        ),
    ],
    db: DbOption = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Write all incidents here as NDJSON.")
    ] = Path("incidents.ndjson"),
    quarantine: Annotated[
        Path | None,
        typer.Option(
            "--quarantine",
            help="Append unreadable records here (NDJSON). [default: next to the store]",
            show_default=False,
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Incidents shown in the table.", min=0)] = 20,
    json_output: JsonOption = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Hide the progress bar.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output.")
    ] = 0,
    config: ConfigOption = None,
) -> None:
    """Analyse log files with the embedded store and show the incidents found.

    Reading resumes where a previous run stopped, so re-running over the same files adds
    nothing and a crashed run continues. Malformed records are counted, kept aside in the
    quarantine file with file, line and reason, and never stop the run.
    """
    log.configure(verbose=verbose, json_logs=json_output)
    settings = _settings(config, db)
    stderr = Console(stderr=True)
    progress = None if (no_progress or json_output) else RichProgress(stderr)
    with Store.open(
        settings.store.path,
        memory_limit=settings.store.memory_limit,
        threads=settings.store.threads,
    ) as store:
        report = analyze(paths, settings, store, progress=progress, command=" ".join(sys.argv[1:]))
        quarantine_path = quarantine or settings.store.quarantine_path
        if report.quarantine:
            append_quarantine(report.quarantine, quarantine_path)
        written = write_incidents(report.incidents, output)
        store.finish_run(
            report.run_id,
            orjson.dumps(_summary(report, output, quarantine_path), default=str).decode(),
        )
    if json_output:
        payload = _summary(report, output, quarantine_path)
        payload["incidents"] = documents(report.incidents)
        sys.stdout.buffer.write(
            orjson.dumps(payload, default=str, option=orjson.OPT_UTC_Z | orjson.OPT_INDENT_2)
        )
        sys.stdout.write("\n")
        return
    console = _stdout()
    _print_incidents(console, report.incidents, top)
    _print_summary(console, report, written, output, quarantine_path)


@incidents_app.command("list")
@fail_cleanly
def incidents_list(
    db: DbOption = None,
    top: Annotated[int, typer.Option("--top", help="Incidents shown.", min=0)] = 20,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Show the incidents in the store, riskiest first."""
    settings = _settings(config, db)
    with Store.open(settings.store.path) as store:
        incidents = store.incidents()
    if json_output:
        sys.stdout.buffer.write(
            orjson.dumps(
                documents(incidents), default=str, option=orjson.OPT_UTC_Z | orjson.OPT_INDENT_2
            )
        )
        sys.stdout.write("\n")
        return
    _print_incidents(_stdout(), incidents, top)


@incidents_app.command("status")
@fail_cleanly
def incidents_status(
    incident_id: Annotated[str, typer.Argument(help="The incident's event.id.")],
    status: Annotated[str, typer.Argument(help="open, acknowledged or closed.")],
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Set an incident's status; it survives later runs that update the incident."""
    if status not in _STATUSES:
        raise typer.BadParameter(f"status must be one of {', '.join(_STATUSES)}")
    settings = _settings(config, db)
    with Store.open(settings.store.path) as store:
        if not store.set_status(incident_id, status):
            typer.echo(f"furui: error: no incident {incident_id}", err=True)
            raise typer.Exit(int(ExitCode.INPUT))
    Console().print(f"{incident_id}: {status}")


@settings_app.command("show")
@fail_cleanly
def settings_show(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Print the effective settings (defaults < site file < FURUI_* environment).

    Secrets (API keys, passwords) are shown as ********** when set.
    """
    settings = load_settings(config)
    data = settings.model_dump(mode="json")
    if json_output:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    for section, values in data.items():
        typer.echo(f"[{section}]")
        for key, value in values.items():
            typer.echo(f"{key} = {orjson.dumps(value).decode()}")
        typer.echo("")


@kibana_app.command("export")
@fail_cleanly
def kibana_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write data views, saved searches and a dashboard for Kibana's import (NDJSON).

    Import them in Kibana under Stack Management > Saved Objects > Import, or with
    `curl -X POST <kibana>/api/saved_objects/_import?overwrite=true -H 'kbn-xsrf: true'
    --form file=@furui.ndjson`. Index names follow the [elasticsearch] settings.
    """
    text = kibana.ndjson(kibana.saved_objects(load_settings(config).elasticsearch))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


@app.command("version")
def version() -> None:
    """Print Furui's version."""
    Console().print(__version__)


def _stdout() -> Console:
    """The console for tables: as wide as the terminal, or wide enough when piped."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPED_WIDTH)
    return console


def _summary(report: RunReport, output: Path, quarantine: Path) -> dict[str, Any]:
    severities = (
        Counter(report.incidents.column("furui.severity").to_pylist())
        if (report.incidents.num_rows)
        else Counter()
    )
    return {
        "run_id": report.run_id,
        "events": report.events,
        "rejects": report.rejects,
        "findings": report.findings,
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events / report.seconds) if report.seconds else None,
        "incident_count": report.incidents.num_rows,
        "severities": dict(severities),
        "output": str(output),
        "quarantine": str(quarantine) if report.rejects else None,
        "files": [
            {
                "path": f.path,
                "format": f.format,
                "log_type": f.log_type,
                "status": f.status,
                "events": f.events,
                "rejects": f.rejects,
                "skipped": f.skipped,
                "error": f.error,
            }
            for f in report.files
        ],
        "passed_over": [{"path": str(s.path), "reason": s.reason} for s in report.passed_over],
    }


def _print_incidents(console: Console, incidents: pa.Table, top: int) -> None:
    if not incidents.num_rows:
        console.print("No incidents.")
        return
    table = Table(title=f"Incidents ({incidents.num_rows}, riskiest first)", title_justify="left")
    # identifiers and times never wrap (they must stay greppable); the evidence text does
    for name, style, wrap in (
        ("Risk", "bold", False),
        ("Severity", "", False),
        ("Host", "cyan", False),
        ("First seen", "", False),
        ("Last seen", "", False),
        ("Signals", "", False),
        ("Top evidence", "", True),
        ("Status", "dim", False),
    ):
        table.add_column(name, style=style, no_wrap=not wrap, overflow="fold" if wrap else "crop")
    for row in incidents.slice(0, top).to_pylist():
        level = row["furui.severity"]
        table.add_row(
            f"{row['event.risk_score']:.0f}",
            f"[{_SEVERITY_STYLE.get(level, '')}]{level}[/]",
            row["host.ip"],
            f"{row['event.start']:%Y-%m-%d %H:%M:%S}",
            f"{row['event.end']:%Y-%m-%d %H:%M:%S}",
            str(len(row["furui.evidence"])),
            row["rule.name"] or "",
            row.get("furui.status") or "open",
        )
    console.print(table)
    if incidents.num_rows > top:
        console.print(f"... {incidents.num_rows - top} more (--top to show them)")


def _print_summary(
    console: Console, report: RunReport, written: int, output: Path, quarantine: Path
) -> None:
    states = Counter(f.status for f in report.files)
    rate = f" ({report.events / report.seconds:,.0f} events/s)" if report.seconds else ""
    console.print(
        f"Read {report.events:,} events from {len(report.files)} files"
        f" ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))})"
        f" in {report.seconds:.1f} s{rate}."
    )
    if report.rejects:
        by_file = Counter({f.path: f.rejects for f in report.files if f.rejects})
        worst = ", ".join(f"{p} ({n})" for p, n in by_file.most_common(3))
        console.print(
            f"[yellow]{report.rejects:,} malformed records kept aside in {quarantine}[/]: {worst}"
        )
    for failed in (f for f in report.files if f.error):
        console.print(f"[red]{failed.path}: {failed.error}[/]")
    if report.passed_over:
        console.print(
            f"{len(report.passed_over)} files passed over (not logs); `--json` lists them."
        )
    console.print(f"{written} incidents written to {output}.")


app.command("ship")(fail_cleanly(ship_command))
app.command("run")(fail_cleanly(run_command))
app.command("eval")(fail_cleanly(eval_command))


def main() -> None:
    """Entry point of the ``furui`` console script (and ``python -m correlator``)."""
    app(prog_name="furui")
