"""``furui run`` survives an Elasticsearch restart in the middle of a run.

A second server (its own port and data folder, data kept across the restart) is started
for this test, so the session's server is not disturbed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from correlator.es.service import open_cluster, ship_paths
from correlator.settings import Settings
from tests.conftest import REPO
from tests.integration.test_es_pipeline import PARITY, es_settings, run_env

PORT = "9211"
RUN_DIR = "/var/tmp/furui-es-restart-test"  # noqa: S108 - es.sh needs a dir outside homes


def _es(command: str, *, keep: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ES_PORT": PORT,
        "ES_RUN_DIR": RUN_DIR,
        "ES_KEEP_DATA": "1" if keep else "0",
    }
    return subprocess.run(
        ["bash", str(REPO / "scripts/es.sh"), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def second_server() -> Iterator[str]:
    started = _es("start", keep=False)
    if started.returncode:
        pytest.fail(f"second server did not start:\n{started.stderr[-3000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        _es("stop")


@pytest.mark.slow
def test_run_resumes_after_the_server_restarts(settings: Settings, second_server: str) -> None:
    configured = es_settings(settings, second_server, "restart")
    ship_paths(open_cluster(configured, wait=60), configured, PARITY)
    env = run_env(configured, FURUI_ELASTICSEARCH__PAGE_SIZE="100")
    command = [sys.executable, "-m", "correlator", "run", "--json", "--name", "restarted"]
    running = subprocess.Popen(
        [*command, "-vv"], env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert running.stderr is not None
    seen = 0
    for line in running.stderr:
        seen += "checkpoint" in line
        if seen == 3:
            break
    assert _es("stop").returncode == 0
    restarted = _es("start")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    out, err = running.communicate(timeout=600)
    assert running.returncode == 0, err[-3000:]
    assert "retry" in err or "reopening" in err  # it noticed and recovered
    resumed = json.loads(out.strip().splitlines()[-1])
    clean = subprocess.run(
        [sys.executable, "-m", "correlator", "run", "--json", "--name", "clean"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(clean.stdout.strip().splitlines()[-1])
    state = open_cluster(configured, wait=60).states.load("run:restarted:0-1")
    assert state.events == expected["documents"]  # every document, exactly once
    assert resumed["findings"] <= expected["findings"]
