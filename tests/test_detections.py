"""Every rule over its fixtures: positives give expected.json, negatives give nothing.

Fixtures are normalised events carved from the real logs of ``../shared/datasets``
(``tests/detections/<rule stem>/README.md`` says which rows). The same fixtures are also
fed in small blocks, in another file order and across a checkpoint (snapshot, restore),
which must not change a single finding: results may not depend on how input is cut.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from correlator.engine.fixtures import (
    EXPECTED,
    canonical,
    engine_for,
    read_events,
    run,
    run_fixtures,
)
from correlator.engine.kinds.base import Limits
from correlator.engine.loader import load_rules
from correlator.engine.registry import KINDS
from correlator.engine.rule import Rule
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "detections"
RULES = sorted(load_rules().rules, key=lambda r: r.path.stem)
#: Long enough for every fixture's time span, so that any order of its events is on time.
ANY_ORDER = Limits(lateness_seconds=100 * 365 * 86400, settle_seconds=100 * 365 * 86400)


def _stem(rule: Rule) -> str:
    return rule.path.stem


def _positive(rule: Rule) -> dict[str, pa.Table]:
    return read_events(FIXTURES / rule.path.stem / "positive.ndjson")


@pytest.mark.parametrize("rule", RULES, ids=_stem)
def test_positive_fixtures_give_the_expected_findings(rule: Rule) -> None:
    result = run_fixtures(rule, FIXTURES / rule.path.stem)
    assert result.expected is not None, f"{FIXTURES / rule.path.stem / EXPECTED} is missing"
    assert result.positive, f"{rule.path.stem}: the positive fixtures give no finding"
    assert result.positive == result.expected


@pytest.mark.parametrize("rule", RULES, ids=_stem)
def test_negative_fixtures_give_nothing(rule: Rule) -> None:
    result = run_fixtures(rule, FIXTURES / rule.path.stem)
    assert result.negative == []


@pytest.mark.parametrize("rule", RULES, ids=_stem)
def test_block_size_does_not_change_findings(rule: Rule) -> None:
    whole = canonical(run(engine_for([rule]), _positive(rule)))
    for rows in (1, 7, 64):
        assert canonical(run(engine_for([rule]), _positive(rule), batch_rows=rows)) == whole


@pytest.mark.parametrize("rule", RULES, ids=_stem)
def test_file_order_does_not_change_findings(rule: Rule) -> None:
    streams = _positive(rule)
    forward = canonical(run(engine_for([rule], limits=ANY_ORDER), streams))
    # the second half of every stream first, as if its files were listed the other way round,
    # and the streams themselves in reverse order
    swapped = {
        s: pa.concat_tables([t.slice(t.num_rows // 2), t.slice(0, t.num_rows // 2)])
        for s, t in streams.items()
    }
    engine = engine_for([rule], limits=ANY_ORDER)
    backward = canonical(run(engine, swapped, batch_rows=5, order=sorted(streams, reverse=True)))
    assert backward == forward


@pytest.mark.parametrize("rule", RULES, ids=_stem)
def test_state_survives_a_checkpoint(rule: Rule) -> None:
    """Half the input, snapshot, a new engine restored from it, the rest: as if in one go."""
    streams = _positive(rule)
    whole = canonical(run(engine_for([rule]), streams))
    first = engine_for([rule])
    found = []
    for stream in sorted(streams):
        table = streams[stream]
        found.append(first.observe(stream, table.slice(0, table.num_rows // 2)))
    state = first.snapshot()
    second = engine_for([rule])
    second.restore(state)
    for stream in sorted(streams):
        table = streams[stream]
        found.append(second.observe(stream, table.slice(table.num_rows // 2)))
    found.append(second.finish())
    assert canonical(pa.concat_tables(found)) == whole


def test_every_kind_has_production_rules() -> None:
    used = {r.kind for r in RULES if r.spec.metadata.maturity == "production"}
    assert used == set(KINDS)


def test_fixture_folders_name_their_sources() -> None:
    for rule in RULES:
        readme = (FIXTURES / rule.path.stem / "README.md").read_text(encoding="utf-8")
        assert "positive.ndjson" in readme
        assert "negative.ndjson" in readme
        assert "shared/datasets" in readme or "derived" in readme


def test_fixture_events_come_from_real_files() -> None:
    """Every fixture event names the dataset file and line it was carved from."""
    for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        for name in ("positive.ndjson", "negative.ndjson"):
            for stream, table in read_events(folder / name).items():
                paths = set(table.column("log.file.path").to_pylist())
                assert all(isinstance(p, str) and not Path(p).is_absolute() for p in paths), (
                    folder.name,
                    stream,
                )
                assert table.column("furui.line").null_count == 0
