"""The Zeek TSV and Zeek JSON renderings of the same WRCCDC 2018 logs normalise identically.

Upstream wrote both from one Zeek 6.2 run (``zeek-default/`` and ``zeek-json/``); only the
record's origin (file, line, offset, and the id derived from them) may differ.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from correlator.testing import load_events
from tests.conftest import shared

ORIGIN = ["event.id", "log.file.path", "log.offset", "furui.line"]
LOGS = [
    "analyzer",
    "capture_loss",
    "dce_rpc",
    "dns",
    "dpd",
    "ftp",
    "kerberos",
    "known_certs",
    "known_hosts",
    "known_services",
    "ldap_search",
    "modbus",
    "notice",
    "ntlm",
    "ntp",
    "ocsp",
    "packet_filter",
    "pe",
    "rdp",
    "rfb",
    "smb_files",
    "smb_mapping",
    "smtp",
    "snmp",
    "software",
    "ssh",
    "ssl",
    "stats",
    "syslog",
    "weird",
    "x509",
]


def _canonical(table: pa.Table) -> pa.Table:
    table = table.drop_columns(ORIGIN)
    table = table.select(sorted(table.column_names))
    order = [
        (name, "ascending")
        for name in ("@timestamp", "zeek.session_id")
        if name in table.column_names
    ]
    return table.sort_by(order) if order else table


@pytest.mark.parametrize("log", LOGS)
def test_tsv_and_json_normalise_to_identical_events(log: str) -> None:
    tsv = load_events(shared("zeek-wrccdc2018", "zeek-default", f"{log}.log.gz"))
    json = load_events(shared("zeek-wrccdc2018", "zeek-json", f"{log}.json.gz"))
    assert not tsv.rejects
    assert not json.rejects
    assert tsv.streams.keys() == json.streams.keys()
    for stream in tsv.streams:
        left, right = _canonical(tsv.stream(stream)), _canonical(json.stream(stream))
        assert left.schema == right.schema, stream
        assert left.num_rows == right.num_rows > 0
        for name in left.column_names:
            assert left.column(name).equals(right.column(name)), f"{stream}: {name} differs"
