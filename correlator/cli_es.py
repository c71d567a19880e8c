"""``furui ship`` and ``furui run``: the Elasticsearch mode of the command line."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from correlator import log
from correlator.cli_common import ConfigOption
from correlator.errors import ConfigError
from correlator.es.client import redacted
from correlator.es.run import CycleReport, follow
from correlator.es.service import open_cluster, run_once, ship_paths
from correlator.pipeline import build_detectors
from correlator.progress import RichProgress
from correlator.settings import Settings, load_settings
from correlator.sinks.ndjson import append_quarantine
from correlator.sources.elasticsearch import Slice

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

EsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--es",
        help="Elasticsearch URL (repeat for several nodes); default from "
        "settings ([elasticsearch] urls, FURUI_ELASTICSEARCH__URLS).",
        show_default=False,
    ),
]
WaitOption = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for Elasticsearch to become ready.")
]


def _settings(config: Path | None, urls: list[str] | None) -> Settings:
    settings = load_settings(config)
    if urls:
        es = settings.elasticsearch.model_copy(update={"urls": tuple(urls)})
        settings = settings.model_copy(update={"elasticsearch": es})
    return settings


def ship_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Zeek logs or directories, eve.json files.", show_default=False),
    ],
    es: EsOption = None,
    quarantine: Annotated[
        Path,
        typer.Option(
            "--quarantine", help="Append unreadable records and refused documents here (NDJSON)."
        ),
    ] = Path("furui-ship-quarantine.ndjson"),
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Hide the progress bar.")
    ] = False,
    wait: WaitOption = 60.0,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True)] = 0,
    config: ConfigOption = None,
) -> None:
    """Load Zeek and Suricata logs into Elasticsearch in the Elastic Agent ECS layout.

    One index per dataset (furui-events-zeek.dns ...), with index templates; documents keep
    their deterministic ids, so shipping again overwrites instead of duplicating, and an
    interrupted ship resumes where it stopped. Refused documents are reported with file and
    line.
    """
    log.configure(verbose=verbose, json_logs=json_output)
    settings = _settings(config, es)
    es_settings = settings.elasticsearch
    cluster = open_cluster(settings, wait=wait)
    progress = None if (no_progress or json_output) else RichProgress(Console(stderr=True))
    report = ship_paths(cluster, settings, paths, progress=progress)
    kept = [
        {
            "path": r.location.path,
            "line": r.location.line,
            "offset": r.offset,
            "reason": r.reason,
            "text": r.text,
            "at": datetime.now(UTC),
        }
        for r in report.rejects
    ] + [
        {
            "path": where.rsplit(":", 1)[0],
            "line": int(where.rsplit(":", 1)[1]),
            "offset": None,
            "reason": f"refused by Elasticsearch: {reason}",
            "text": b"",
            "at": datetime.now(UTC),
        }
        for where, reason in report.refused
    ]
    if kept:
        append_quarantine(kept, quarantine)
    summary = {
        "events": report.events,
        "written": report.written,
        "refused": len(report.refused),
        "rejects": len(report.rejects),
        "indices": sorted(report.indices),
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events / report.seconds) if report.seconds else None,
        "elasticsearch": [redacted(u) for u in es_settings.urls],
    }
    if json_output:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    console = Console()
    console.print(
        f"Shipped {report.written:,} of {report.events:,} events from "
        f"{report.files} files to {len(report.indices)} indices in "
        f"{report.seconds:.1f} s."
    )
    for where, reason in report.refused[:10]:
        console.print(f"[red]{where}: refused: {reason}[/]")
    if kept:
        console.print(f"[yellow]{len(kept)} records kept aside in {quarantine}[/]")


def run_command(
    es: EsOption = None,
    follow_mode: Annotated[
        bool, typer.Option("--follow", help="Keep polling for new documents and report the lag.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Where a first run starts: an ISO time "
            "(2024-05-01T00:00:00Z) or an age (24h, 7d). Ignored once a checkpoint "
            "exists.",
            show_default=False,
        ),
    ] = None,
    slice_spec: Annotated[
        str,
        typer.Option(
            "--slice",
            help="This worker's part, I/N: N workers split the input "
            "(by internal host on indices furui ship wrote).",
        ),
    ] = "0/1",
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Name of this input's checkpoints (default: derived from the index patterns).",
            show_default=False,
        ),
    ] = None,
    cycles: Annotated[
        int | None,
        typer.Option(
            "--cycles", help="With --follow, stop after this many polls.", show_default=False
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    wait: WaitOption = 60.0,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True)] = 0,
    config: ConfigOption = None,
) -> None:
    """Run the correlator over Zeek and Suricata documents in Elasticsearch.

    Reads Elastic Agent, Filebeat, Security Onion or furui-ship layouts (recognised from the
    indices' fields), incrementally from a checkpoint kept in the state index, and writes
    findings and incidents (furui-incidents, ready for Kibana) back.
    """
    log.configure(verbose=verbose, json_logs=json_output)
    settings = _settings(config, es)
    es_settings = settings.elasticsearch
    cluster = open_cluster(settings, wait=wait)
    part = _slice(slice_spec)
    start = _since(since) if since else None
    detectors = build_detectors(settings)

    def cycle(until: datetime) -> CycleReport:
        return run_once(
            cluster, settings, until=until, name=name, part=part, since=start, detectors=detectors
        )

    def show(report: CycleReport, now: datetime) -> None:
        lag = report.lag_seconds(now)
        line: dict[str, Any] = {
            "@timestamp": now.isoformat(),
            "documents": report.documents,
            "findings": report.findings,
            "incidents_updated": report.incidents,
            "seconds": round(report.seconds, 3),
            "lag_seconds": None if lag is None else round(lag, 1),
        }
        if json_output:
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
        else:
            lag_text = "no data yet" if lag is None else f"lag {timedelta(seconds=int(lag))}"
            Console().print(
                f"{report.documents:,} documents, {report.findings:,} findings, "
                f"{report.incidents:,} incidents updated in {report.seconds:.1f} s; "
                f"{lag_text}"
            )

    lag = timedelta(seconds=es_settings.lag_seconds)
    if not follow_mode:
        now = datetime.now(UTC)
        show(cycle(now - lag), now)
        return
    try:
        follow(
            cycle,
            lag=lag,
            poll=timedelta(seconds=es_settings.poll_seconds),
            report=show,
            cycles=cycles,
        )
    except KeyboardInterrupt:
        Console(stderr=True).print("stopped; the next run resumes at the checkpoint")


def _slice(spec: str) -> Slice:
    match = re.fullmatch(r"(\d+)/(\d+)", spec)
    if match is None or not int(match.group(1)) < int(match.group(2)):
        raise typer.BadParameter("--slice is I/N with 0 <= I < N, e.g. 0/2")
    return Slice(int(match.group(1)), int(match.group(2)))


def _since(text: str) -> datetime:
    match = _DURATION.fullmatch(text)
    if match:
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise ConfigError(f"--since {text!r}: not an ISO time or an age like 24h") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
