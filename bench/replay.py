"""Build large benchmark inputs by replaying real logs with shifted times and addresses.

Each copy of a source log moves every timestamp forward by the source's time span (so
copies follow each other in time), rewrites the third octet of IPv4 addresses (private
ranges stay private), and suffixes Zeek uids and Suricata flow ids with the copy number,
so the copies are distinct connections to the pipeline and not duplicates.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

SHARED: Final = Path(__file__).resolve().parents[2] / "shared" / "datasets"

#: Real logs replayed, chosen to mix the logs a sensor writes most (conn, dns, ssl, http,
#: weird, notice, files) with Suricata eve of every common event type.
SOURCES: Final = (
    "zeek-wrccdc2018/zeek-default/dns.log.gz",
    "zeek-wrccdc2018/zeek-default/ssl.log.gz",
    "zeek-wrccdc2018/zeek-default/weird.log.gz",
    "zeek-wrccdc2018/zeek-default/rdp.log.gz",
    "zeek-wrccdc2018/zeek-default/notice.log.gz",
    "stratosphere-ctu-zeek/011-zeek-mixed/data/conn.log.labeled",
    "stratosphere-ctu-zeek/008-zeek-mixed/data/conn.log.labeled",
    "stratosphere-ctu-zeek/010-zeek-mixed/data/conn.log.labeled",
    "stratosphere-ctu-zeek/009-zeek-malicious/data/http.log.labeled",
    "stratosphere-ctu-zeek/009-zeek-malicious/data/files.log.labeled",
    "suricata-eve-stratosphere-2021/eve.json",
)
_IPV4_THIRD: Final = r"^(\d{1,3}\.\d{1,3})\.\d{1,3}\.(\d{1,3})$"


@dataclass(frozen=True, slots=True)
class Source:
    """One real log loaded for replay."""

    name: str
    header: list[str]
    table: pa.Table | None  # Zeek TSV rows as text
    lines: list[dict[str, object]] | None  # eve records
    span: float  # seconds from first to last record

    @property
    def rows(self) -> int:
        """Records in one copy."""
        return self.table.num_rows if self.table is not None else len(self.lines or [])


def load(relative: str) -> Source:
    """Load a Zeek TSV log or an eve.json for replay."""
    path = SHARED / relative
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if relative.endswith("eve.json"):
        records = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
        records = [r for r in records if r.get("event_type") != "stats"]
        stamps = pc.cast(pa.array([r["timestamp"] for r in records]), pa.timestamp("us", "UTC"))
        span = (pc.max(stamps).as_py() - pc.min(stamps).as_py()).total_seconds()
        return Source(relative, [], None, records, span + 1.0)
    text = raw.decode()
    header = [
        line for line in text.splitlines() if line.startswith("#") and not line.startswith("#close")
    ]
    fields = next(h for h in header if h.startswith("#fields")).split("\t")[1:]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    table = pcsv.read_csv(
        io.BytesIO(body.encode()),
        read_options=pcsv.ReadOptions(column_names=fields),
        parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(fields, pa.string()), strings_can_be_null=False
        ),
    )
    ts = pc.cast(table.column("ts"), pa.float64())
    span = pc.max(ts).as_py() - pc.min(ts).as_py() + 1.0
    return Source(relative, header, table, None, span)


def write_copy(source: Source, copy: int, out: Path) -> int:
    """Write copy number ``copy`` of ``source`` into ``out``; returns records written."""
    if source.lines is not None:
        return _write_eve(source, copy, out)
    assert source.table is not None
    table = source.table
    columns = []
    for name in table.column_names:
        values = table.column(name).combine_chunks()
        if name == "ts":
            shifted = pc.add(pc.cast(values, pa.float64()), copy * source.span)
            values = pc.cast(pc.round(shifted, 6), pa.string())
        elif name in ("id.orig_h", "id.resp_h", "src", "dst"):
            values = pc.replace_substring_regex(values, _IPV4_THIRD, rf"\1.{copy % 250}.\2")
        elif name in ("uid", "fuid"):
            values = pc.binary_join_element_wise(values, pa.scalar(f"r{copy}"), "")
        columns.append(values)
    lines = pc.binary_join_element_wise(*columns, "\t")
    body = "\n".join(lines.to_pylist())
    origin = source.name.split("/")[1].split("-")[0]  # scenario, so sources never collide
    target = out / f"{Path(source.name).name.split('.')[0]}.{origin}.{copy:04d}.log"
    target.write_text("\n".join(source.header) + "\n" + body + "\n")
    return int(table.num_rows)


def _write_eve(source: Source, copy: int, out: Path) -> int:
    assert source.lines is not None
    stamps = pc.cast(pa.array([r["timestamp"] for r in source.lines]), pa.timestamp("us", "UTC"))
    shifted = pc.add(stamps, pa.scalar(int(copy * source.span * 1_000_000), pa.duration("us")))
    text = pc.strftime(shifted, "%Y-%m-%dT%H:%M:%S+0000").to_pylist()
    target = out / f"eve.{copy:04d}.json"
    with target.open("wb") as handle:
        for record, stamp in zip(source.lines, text, strict=True):
            moved = {**record, "timestamp": stamp}
            if "flow_id" in moved:
                moved["flow_id"] = int(moved["flow_id"]) + copy
            handle.write(orjson.dumps(moved) + b"\n")
    return len(source.lines)


def build(out: Path, target_events: int) -> int:
    """Write copies of every source until at least ``target_events`` records exist."""
    out.mkdir(parents=True, exist_ok=True)
    sources = [load(s) for s in SOURCES]
    per_copy = sum(s.rows for s in sources)
    total, copy = 0, 0
    while total < target_events:
        for source in sources:
            total += write_copy(source, copy, out)
        copy += 1
    assert total >= target_events > 0
    assert per_copy > 0
    return total
