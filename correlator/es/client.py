"""The Elasticsearch client, built from settings, with readiness and retries.

Credentials come from settings (a site file or ``FURUI_ELASTICSEARCH__*`` variables) and
are handed to the client as secrets; they never appear in a log line or an error message.
Readiness is ``_cluster/health``: the integration-test distribution has no ``GET /``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.serializer import OrjsonSerializer

from correlator.errors import ServiceError
from correlator.settings import ElasticsearchSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP answers worth retrying: overload and gateway trouble.
RETRY_STATUSES: Final = (429, 502, 503, 504)
_BACKOFF_CAP: Final = 30.0


def redacted(url: str) -> str:
    """``url`` without user information, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class RawResponses(OrjsonSerializer):
    """Serialises requests as usual; hands JSON responses back unparsed."""

    def loads(self, data: bytes) -> bytes:
        """The response body as it came, for columnar parsing (``es.documents``)."""
        return bytes(data)


def connect(settings: ElasticsearchSettings, *, raw: bool = False) -> Elasticsearch:
    """A client for the configured cluster (not yet contacted).

    Args:
        settings: URLs, credentials, TLS and retry settings.
        raw: search responses stay raw bytes, for parsing straight into columns.
    """
    kwargs: dict[str, object] = {
        "request_timeout": settings.request_timeout,
        "max_retries": settings.max_retries,
        "retry_on_status": RETRY_STATUSES,
        "retry_on_timeout": True,
    }
    if raw:
        kwargs["serializers"] = {"application/json": RawResponses()}
    else:
        kwargs["serializer"] = OrjsonSerializer()
    api_key = settings.api_key.get_secret_value()
    if api_key:
        kwargs["api_key"] = api_key
    elif settings.username:
        kwargs["basic_auth"] = (settings.username, settings.password.get_secret_value())
    if settings.ca_certs:
        kwargs["ca_certs"] = settings.ca_certs
    if not settings.verify_certs:
        kwargs["verify_certs"] = False
        kwargs["ssl_show_warn"] = False
    return Elasticsearch(list(settings.urls), **kwargs)  # type: ignore[arg-type]


def wait_ready(client: Elasticsearch, settings: ElasticsearchSettings, *, wait: float) -> None:
    """Wait until the cluster answers with a yellow or green health.

    Raises:
        ServiceError: the cluster did not become ready within ``wait`` seconds; the message
            names the URLs (without credentials) and the last reason.
    """
    deadline = time.monotonic() + wait
    delay = 0.5
    reason = "no answer"
    while True:
        try:
            health = client.options(request_timeout=10).cluster.health(
                wait_for_status="yellow", timeout="5s"
            )
        except (ApiError, TransportError) as error:
            reason = _reason(error)
        else:
            if health.body.get("status") in ("yellow", "green"):
                return
            reason = f"cluster health {health.body.get('status')}"
        if time.monotonic() + delay > deadline:
            where = ", ".join(redacted(u) for u in settings.urls)
            raise ServiceError(f"Elasticsearch at {where} is not ready: {reason}")
        logger.warning("Elasticsearch not ready (%s); retrying in %.1f s", reason, delay)
        time.sleep(delay)
        delay = min(delay * 2, _BACKOFF_CAP)


def with_retries(action: Callable[[], T], *, what: str, attempts: int, wait: float = 1.0) -> T:
    """Run ``action``, retrying with backoff on connection errors and overload.

    Raises:
        ServiceError: still failing after ``attempts`` tries.
    """
    delay = wait
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (ApiError, TransportError) as error:
            status = getattr(error, "status_code", None) or getattr(
                getattr(error, "meta", None), "status", None
            )
            if isinstance(error, ApiError) and status not in RETRY_STATUSES:
                raise ServiceError(f"{what}: {_reason(error)}") from error
            if attempt == attempts:
                raise ServiceError(f"{what}: {_reason(error)} (after {attempts} tries)") from error
            logger.warning("%s: %s; retry %d in %.1f s", what, _reason(error), attempt, delay)
            time.sleep(delay)
            delay = min(delay * 2, _BACKOFF_CAP)
    raise AssertionError("unreachable")


def _reason(error: Exception) -> str:
    if isinstance(error, ApiError):
        return f"{error.meta.status} {error.message}"
    return type(error).__name__ + (f": {error.message}" if hasattr(error, "message") else "")
