"""The evaluation as a picture: each labelled host's strongest incident, and the confusion.

matplotlib is imported when a plot is asked for (it is a development dependency, not one
of the pipeline's).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from correlator.evaluation.labels import HostClass
from correlator.evaluation.metrics import SEVERITIES, HostOutcome, Summary
from correlator.schema.incident import SEVERITY_BANDS

#: Folder names that say nothing about a capture, skipped when naming it on the plot.
_GENERIC: Final = frozenset({"data", "logs", "zeek-labeled", "zeek"})
_CLASS_COLOUR: Final = {
    HostClass.INFECTED: "#c0392b",
    HostClass.ATTACKED: "#d68910",
    HostClass.BENIGN: "#1e8449",
    HostClass.UNKNOWN: "#7f8c8d",
}
_MODE_COLOUR: Final = ("#34495e", "#5dade2", "#af7ac5", "#48c9b0")
_CLASSES: Final = (HostClass.INFECTED, HostClass.ATTACKED, HostClass.BENIGN)


def short_name(capture: str) -> str:
    """A capture's name for a plot: its last telling path part, without the extension."""
    parts = [p for p in capture.split("/") if p not in _GENERIC] or [capture]
    name = parts[-1]
    for suffix in (".csv", ".log", ".labeled", "-labeled"):
        name = name.removesuffix(suffix)
    return name


def shown_hosts(summaries: Sequence[Summary]) -> list[tuple[str, str]]:
    """(capture, ip) of hosts worth a bar: infected or attacked, or with an incident."""
    keys: dict[tuple[str, str], HostOutcome] = {}
    for summary in summaries:
        for capture in summary.captures:
            for host in capture.hosts:
                interesting = host.truth.klass in (HostClass.INFECTED, HostClass.ATTACKED)
                if host.truth.klass is not HostClass.UNKNOWN and (interesting or host.incidents):
                    keys.setdefault((capture.name, host.truth.ip), host)
    order = {k: i for i, k in enumerate(_CLASSES)}
    return sorted(keys, key=lambda k: (order[keys[k].truth.klass], k[0], k[1]))


def plot_summaries(runs: Sequence[tuple[str, Summary]], path: Path) -> Path:
    """Write a PNG: risk of each shown host per run (bars) and each run's host confusion.

    Args:
        runs: (label, summary) per evaluation run, e.g. one per model mode.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    import matplotlib  # noqa: PLC0415 - optional, only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    hosts = shown_hosts([s for _, s in runs])
    figure = plt.figure(figsize=(max(9.0, 0.55 * len(hosts) + 3), 9.5), layout="constrained")
    grid = figure.add_gridspec(2, max(1, len(runs)), height_ratios=(1.6, 1.0))
    bars = figure.add_subplot(grid[0, :])
    width = 0.8 / max(1, len(runs))
    for i, (label, summary) in enumerate(runs):
        outcome = {(c.name, h.truth.ip): h for c in summary.captures for h in c.hosts}
        risks = [outcome[k].risk if k in outcome else 0.0 for k in hosts]
        positions = [x - 0.4 + width * (i + 0.5) for x in range(len(hosts))]
        bars.bar(positions, risks, width, label=label, color=_MODE_COLOUR[i % len(_MODE_COLOUR)])
    for band, floor in SEVERITY_BANDS[2:]:
        bars.axhline(floor, color="#922b21", linestyle="--", linewidth=0.8)
        bars.text(len(hosts) - 0.45, floor + 1, band, ha="right", fontsize=8, color="#922b21")
    first = {(c.name, h.truth.ip): h for _, s in runs for c in s.captures for h in c.hosts}
    bars.set_xticks(
        range(len(hosts)), [f"{short_name(c)}\n{ip}" for c, ip in hosts], rotation=60, ha="right"
    )
    for tick, key in zip(bars.get_xticklabels(), hosts, strict=True):
        tick.set_color(_CLASS_COLOUR[first[key].truth.klass])
        tick.set_fontsize(7)
    bars.set_xlim(-0.6, len(hosts) - 0.4)
    bars.set_ylim(0, 100)
    bars.set_ylabel("risk of the host's strongest incident")
    bars.set_title(
        "Labelled hosts: infected (red) must reach high; attacked (orange) and benign "
        "(green) must stay below"
    )
    bars.legend(loc="upper right", fontsize=8)
    for i, (label, summary) in enumerate(runs):
        axis = figure.add_subplot(grid[1, i])
        matrix = [[summary.confusion[k.value][s] for s in SEVERITIES] for k in _CLASSES]
        axis.imshow(matrix, cmap="Blues")
        for row, values in enumerate(matrix):
            for column, value in enumerate(values):
                axis.text(column, row, str(value), ha="center", va="center", fontsize=9)
        axis.set_xticks(range(len(SEVERITIES)), SEVERITIES, fontsize=8)
        axis.set_yticks(range(len(_CLASSES)), [k.value for k in _CLASSES], fontsize=8)
        axis.set_title(f"{label}: strongest incident per host", fontsize=9)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
