"""Benchmark ``furui analyze`` end to end against a raw DuckDB load of the same files.

Builds inputs of growing size by replaying real logs from ``../shared/datasets`` (see
``replay.py``), then for each size runs, pinned to one core and in separate processes:

* ``furui analyze`` with the embedded store (read, normalise, detect, store, correlate);
* a raw baseline: DuckDB (one thread) loading the same files into tables of text columns
  (``read_csv`` for Zeek TSV, ``read_json`` for eve) in a fresh database file.

It prints events/s of both, their ratio, and each one's peak resident memory, so growth of
memory with input size is visible. Usage::

    python bench/analyze.py                      # 1M, 2.5M, 5M events
    python bench/analyze.py --sizes 200000       # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import replay

HERE = Path(__file__).resolve().parent
RAW_LOAD = textwrap.dedent(
    """
    import sys, duckdb
    from pathlib import Path
    db = duckdb.connect(sys.argv[1])
    db.execute("SET threads = 1").fetchall()
    rows = 0
    for i, path in enumerate(sorted(Path(sys.argv[2]).iterdir())):
        if path.suffix == ".json":
            source = f"read_json('{path}', format='newline_delimited')"
        else:
            source = (f"read_csv('{path}', delim='\\t', header=false, comment='#', "
                      "all_varchar=true, quote='', escape='', null_padding=true)")
        db.execute(f"CREATE TABLE t{i} AS SELECT * FROM {source}").fetchall()
        rows += db.execute(f"SELECT count(*) FROM t{i}").fetchall()[0][0]
    db.execute("CHECKPOINT").fetchall()
    print(rows)
    """
)


@dataclass(frozen=True, slots=True)
class Measured:
    """One timed process."""

    seconds: float
    peak_rss_mb: float
    stdout: str


def measure(command: list[str], env: dict[str, str]) -> Measured:
    """Run ``command`` pinned to CPU 0; its wall time and its own peak RSS (from wait4)."""
    pinned = ["taskset", "-c", "0", *command] if shutil.which("taskset") else command
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(pinned, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read().decode()[-2000:]}")
        return Measured(seconds, usage.ru_maxrss / 1024, out.read().decode())


def prepare(root: Path, size: int) -> tuple[Path, int]:
    """A folder with at least ``size`` replayed events (built once, cached by size)."""
    folder = root / f"events-{size}"
    marker = folder / ".events"
    if marker.exists():
        return folder, int(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    total = replay.build(folder, size)
    marker.write_text(str(total))
    return folder, total


def run_size(root: Path, size: int) -> dict[str, float]:
    """Measure furui and the raw baseline on one input size."""
    folder, events = prepare(root, size)
    env = {**os.environ, "FURUI_STORE__THREADS": "1"}
    for name in ("furui.duckdb", "raw.duckdb", "incidents.ndjson"):
        (root / name).unlink(missing_ok=True)
    furui = measure(
        [
            sys.executable,
            "-m",
            "correlator",
            "analyze",
            str(folder),
            "--db",
            str(root / "furui.duckdb"),
            "--output",
            str(root / "incidents.ndjson"),
            "--json",
        ],
        env,
    )
    summary = json.loads(furui.stdout)
    assert summary["events"] == events, (summary["events"], events)
    assert summary["rejects"] == 0
    raw = measure([sys.executable, "-c", RAW_LOAD, str(root / "raw.duckdb"), str(folder)], env)
    raw_rows = int(raw.stdout.strip())
    return {
        "events": events,
        "furui_s": furui.seconds,
        "furui_eps": events / furui.seconds,
        "furui_rss_mb": furui.peak_rss_mb,
        "raw_rows": raw_rows,
        "raw_s": raw.seconds,
        "raw_eps": raw_rows / raw.seconds,
        "raw_rss_mb": raw.peak_rss_mb,
        "ratio": (events / furui.seconds) / (raw_rows / raw.seconds),
        "incidents": summary["incident_count"],
    }


def main() -> None:
    """Parse arguments, measure each size, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1000000,2500000,5000000", help="comma-separated event counts"
    )
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    args = parser.parse_args()
    if not replay.SHARED.exists():
        raise SystemExit(f"{replay.SHARED} is missing: the benchmark replays the shared datasets")
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; both pinned to one core (taskset -c 0)"
    )
    print(
        "| events | furui s | furui events/s | furui peak RSS | raw DuckDB s | raw events/s "
        "| raw peak RSS | furui/raw speed | incidents |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        r = run_size(args.workdir, size)
        print(
            f"| {r['events']:,.0f} | {r['furui_s']:.1f} | {r['furui_eps']:,.0f} | "
            f"{r['furui_rss_mb']:,.0f} MB | {r['raw_s']:.1f} | {r['raw_eps']:,.0f} | "
            f"{r['raw_rss_mb']:,.0f} MB | {r['ratio']:.2f} | {r['incidents']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
