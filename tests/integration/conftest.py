"""Fixtures for the integration tests that run against a real Elasticsearch server.

The server is the one named by ``FURUI_TEST_ES_URL`` when that variable is set. Otherwise the
session starts the integ-test server with ``scripts/es.sh start`` (which fetches it on first use)
and stops it with ``scripts/es.sh stop`` at the end. A server that cannot be started fails the
run: it is never a skip. Every test under ``tests/integration`` gets the ``es`` marker, and with
``CI=true`` a skipped ``es`` test fails the run (docs/elasticsearch.md).

``FURUI_TEST_ES_URL`` is deliberately not the runtime ``FURUI_ELASTICSEARCH__URL``: these fixtures
delete indices, so they must never reach a production cluster by accident.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from elasticsearch import ApiError, Elasticsearch, TransportError

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
ES_SCRIPT = REPO_ROOT / "scripts" / "es.sh"
URL_ENV = "FURUI_TEST_ES_URL"
ES_MARKER = "es"
# A cold start fetches a zip of about 100 MB with Maven before the server's own (up to) 120 s start.
START_TIMEOUT_S = 900
STOP_TIMEOUT_S = 120
STDERR_TAIL_LINES = 60
HEALTH_TIMEOUT = "60s"
INTEGRATION_DIR = Path(__file__).resolve().parent


@dataclass(eq=False)  # pluggy keeps plugins in sets: hash by identity
class EsSkipGuard:
    """Fails a CI run in which any test marked ``es`` was skipped.

    Registered as a plain plugin (not through this conftest's own hooks), so that it sees every
    report in the session, wherever the ``es`` test lives.

    Attributes:
        enabled: Whether the guard acts; true when the environment has ``CI=true``.
        rootpath: The session's root directory, against which report paths are relative.
        skipped: Node ids of the ``es`` tests (or modules) that were skipped, with the reason.
    """

    enabled: bool
    rootpath: Path
    skipped: list[str] = field(default_factory=list)

    def _record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        self.skipped.append(f"{report.nodeid}: {reason}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Records a skipped ``es`` test (an expected failure is not a skip).

        Args:
            report: The report of one phase (setup, call or teardown) of one test.
        """
        if report.skipped and not hasattr(report, "wasxfail") and ES_MARKER in report.keywords:
            self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Records a module under ``tests/integration`` skipped as a whole at collection.

        Args:
            report: The report of collecting one node.
        """
        if report.skipped and (self.rootpath / report.fspath).resolve().is_relative_to(
            INTEGRATION_DIR
        ):
            self._record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Turns an otherwise green CI run with skipped ``es`` tests into a failed one.

        Args:
            session: The test session, whose exit status pytest returns after this hook.
        """
        if self.enabled and self.skipped and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Explains why the run failed.

        Args:
            terminalreporter: pytest's terminal reporter.
        """
        if not (self.enabled and self.skipped):
            return
        terminalreporter.section("es tests skipped in CI", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"CI=true and {len(self.skipped)} Elasticsearch test(s) were skipped; "
            "an es test skipped in CI fails the run:",
            red=True,
        )
        for line in self.skipped:
            terminalreporter.line(f"  {line}")


def pytest_configure(config: pytest.Config) -> None:
    """Declares the ``es`` marker and installs the CI skip guard once per session.

    Args:
        config: The pytest configuration.
    """
    config.addinivalue_line("markers", f"{ES_MARKER}: needs the real Elasticsearch server")
    if not config.pluginmanager.has_plugin("furui-es-skip-guard"):
        guard = EsSkipGuard(
            enabled=os.environ.get("CI", "").lower() == "true", rootpath=config.rootpath
        )
        config.pluginmanager.register(guard, "furui-es-skip-guard")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test collected under ``tests/integration`` with ``es``.

    Args:
        items: All collected items of the session (this hook sees the whole session).
    """
    marker = getattr(pytest.mark, ES_MARKER)
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR):
            item.add_marker(marker)


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """Returns the last ``lines`` lines of ``text``."""
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_es_script(command: str, timeout_s: int) -> subprocess.CompletedProcess[str]:
    """Runs ``scripts/es.sh <command>`` and captures its output.

    Args:
        command: ``start`` or ``stop``.
        timeout_s: Seconds after which the script is killed and the fixture fails.

    Returns:
        The finished process; ``start`` prints only the URL on stdout.
    """
    bash = shutil.which("bash")
    if bash is None:
        pytest.fail("bash is not on PATH, so scripts/es.sh cannot run", pytrace=False)
    try:
        # The script is this repository's own; its output goes to pipes, not to a terminal.
        return subprocess.run(
            [bash, str(ES_SCRIPT), command],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(
            f"scripts/es.sh {command} did not finish in {timeout_s} s:\n{_tail(stderr)}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """The base URL of the Elasticsearch server the integration tests use.

    ``FURUI_TEST_ES_URL`` when set; otherwise a server started for this session with
    ``scripts/es.sh start`` and stopped at its end.

    Yields:
        The URL, without a trailing slash.
    """
    external = os.environ.get(URL_ENV, "").strip()
    if external:
        yield external.rstrip("/")
        return
    started = _run_es_script("start", START_TIMEOUT_S)
    url = started.stdout.strip().splitlines()[-1] if started.stdout.strip() else ""
    if started.returncode != 0 or not url.startswith("http"):
        pytest.fail(
            f"scripts/es.sh start failed (exit {started.returncode}); set {URL_ENV} to use a "
            f"running server instead.\n{_tail(started.stderr)}",
            pytrace=False,
        )
    try:
        yield url
    finally:
        stopped = _run_es_script("stop", STOP_TIMEOUT_S)
        if stopped.returncode != 0:
            pytest.fail(
                f"scripts/es.sh stop failed (exit {stopped.returncode}):\n{_tail(stopped.stderr)}",
                pytrace=False,
            )


@pytest.fixture(scope="session")
def es_client(es_url: str) -> Iterator[Elasticsearch]:
    """An official Elasticsearch client for ``es_url``, once the cluster is at least yellow.

    Args:
        es_url: The server's URL.

    Yields:
        The client; it is closed at the end of the session.
    """
    client = Elasticsearch(es_url, request_timeout=30)
    try:
        # Never info() or ping(): the integ-test server has no GET / (docs/elasticsearch.md).
        health = client.cluster.health(wait_for_status="yellow", timeout=HEALTH_TIMEOUT)
    except (ApiError, TransportError) as exc:
        client.close()
        pytest.fail(f"Elasticsearch at {es_url} is not usable: {exc}", pytrace=False)
    if health.body.get("timed_out") or health.body.get("status") not in {"yellow", "green"}:
        client.close()
        pytest.fail(f"Elasticsearch at {es_url} is not yellow: {health.body}", pytrace=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def index_prefix(es_client: Elasticsearch) -> Iterator[str]:
    """A random prefix that isolates one test's indices and templates.

    Name indices ``<prefix>-...`` and templates ``<prefix>-...``. At teardown, the indices, data
    streams, index templates and component templates whose names start with the prefix are
    deleted. Indices are deleted by name, because wildcard deletes are refused by default
    (``action.destructive_requires_name``).

    Args:
        es_client: The session's client.

    Yields:
        A prefix such as ``furui-test-3f9a0c1b``.
    """
    prefix = f"furui-test-{secrets.token_hex(4)}"
    yield prefix
    client = es_client.options(ignore_status=404)
    pattern = f"{prefix}*"
    resolved = client.indices.resolve_index(name=pattern, expand_wildcards="all").body
    data_streams = [ds["name"] for ds in resolved.get("data_streams", [])]
    if data_streams:
        try:
            client.indices.delete_data_stream(name=data_streams)
        except ApiError as exc:
            # The integ-test server creates data streams implicitly but has no API to delete them.
            pytest.fail(
                f"the test left data streams {data_streams} that this server cannot delete "
                f"({exc.meta.status}: {exc.message}); use plain indices (docs/elasticsearch.md)",
                pytrace=False,
            )
    indices = [ix["name"] for ix in resolved.get("indices", [])]
    if indices:
        client.indices.delete(index=indices, expand_wildcards="all")
    templates = client.indices.get_index_template(name=pattern).body.get("index_templates", [])
    for template in templates:
        client.indices.delete_index_template(name=template["name"])
    components = client.cluster.get_component_template(name=pattern).body
    for component in components.get("component_templates", []):
        client.cluster.delete_component_template(name=component["name"])
