"""Benchmark scoring with the shipped flow classifier, on one core, against a raw baseline.

Input: the conn flows of every labelled shared capture (about 37k real flows), repeated
with timestamps shifted by each copy's time span and the third octet of IPv4 addresses
rewritten (so copies are distinct hosts and windows, as in ``replay.py``) up to the size
asked for. Measured in this process, pinned to one core, one OpenMP thread, best of
``--repeat`` runs:

* raw baseline: the bare ``HistGradientBoostingClassifier.predict_proba`` of the bundle's
  booster on the precomputed feature matrix, in one call;
* model step: ``ModelBundle.probability`` (booster and calibration, in cache-sized
  blocks) on the same matrix: the step the ≥ 1M flows/s target is about;
* features: ``features.extract`` on the events (per-flow and window context);
* detector: ``FlowClassifier`` over the events (features, model, findings, explanations).

Usage::

    python bench/model.py                    # 1M flows
    python bench/model.py --flows 200000     # a quick run
    python bench/model.py --benign           # only flows labelled benign: little to flag
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import sklearn
from threadpoolctl import threadpool_limits

from correlator.ml.bundle import ModelBundle
from correlator.ml.dataset import load_conn
from correlator.ml.detector import FlowClassifier
from correlator.ml.features import extract
from correlator.normalise.addresses import Networks
from correlator.testing import DEFAULT_INTERNAL

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CAPTURES = ("stratosphere-ctu-zeek", "stratosphere-ctu-sme-11-labelled", "iot23-labelled-subset")


def flows(count: int, *, benign: bool = False) -> pa.Table:
    """``count`` conn events: the real flows, repeated as distinct hosts and times."""
    base = load_conn([SHARED / c for c in CAPTURES])
    if benign:  # only the flows labelled benign: a network with little to flag
        label = pc.utf8_lower(base.column("zeek.connection.label"))
        base = base.filter(pc.equal(label, "benign").fill_null(False))
    keep = ["@timestamp", "event.id", "event.dataset", "zeek.session_id", "source.port"]
    keep += [c for c in base.column_names if c.startswith(("source.", "destination.", "network.",
             "event.duration", "zeek.connection."))]  # fmt: skip
    base = base.select(sorted(set(keep) & set(base.column_names)))
    stamps = pc.cast(base.column("@timestamp"), pa.int64())
    span = int(pc.max(stamps).as_py()) - int(pc.min(stamps).as_py()) + 1
    parts: list[pa.Table] = []
    copy = 0
    while sum(p.num_rows for p in parts) < count:
        shifted = pc.cast(pc.add(stamps, copy * span), pa.timestamp("us", tz="UTC"))
        part = base.set_column(base.column_names.index("@timestamp"), "@timestamp", shifted)
        for name in ("source.ip", "destination.ip"):
            octet = f"\\1{copy % 250}\\2"
            moved = pc.replace_substring_regex(
                part.column(name), r"^(\d+\.\d+\.)\d+(\.\d+)$", octet
            )
            part = part.set_column(part.column_names.index(name), name, moved)
        parts.append(part)
        copy += 1
    return pa.concat_tables(parts).slice(0, count)


def best(repeat: int, run: Callable[[], object]) -> float:
    """Fastest of ``repeat`` timed runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Measure and print the table for docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--benign", action="store_true", help="only benign-labelled flows")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    bundle = ModelBundle.load()
    events = flows(args.flows, benign=args.benign)
    network = Networks.of(list(DEFAULT_INTERNAL))
    with threadpool_limits(limits=1):
        matrix = extract(events)
        booster = bundle.pipeline[-1].calibrated_classifiers_[0].estimator
        raw = best(args.repeat, lambda: booster.predict_proba(matrix))
        step = best(args.repeat, lambda: bundle.probability(matrix))
        rows = [
            ("raw: booster.predict_proba, one call", raw),
            ("model step: bundle.probability", step),
            ("features: extract", best(args.repeat, lambda: extract(events))),
        ]

        def detect() -> int:
            detector = FlowClassifier(bundle, network, 0.5, 0.75)
            found: int = detector.observe("zeek.connection", events).num_rows
            return found + int(detector.finish().num_rows)

        rows.append(("detector: features + model + findings", best(1, detect)))
    flagged = int((bundle.probability(matrix) >= bundle.threshold).sum())
    print(
        f"{args.flows:,} {'benign ' if args.benign else ''}flows ({flagged:,} flagged), "
        f"{bundle.ref}, Python "
        f"{platform.python_version()}, scikit-learn {sklearn.__version__}, one core\n"
    )
    print("| step | seconds | flows/s |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {args.flows / seconds:,.0f} |")


if __name__ == "__main__":
    main()
