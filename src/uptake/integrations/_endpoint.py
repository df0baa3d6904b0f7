"""The JSON nudge endpoint: list the pending nudges, record shown, clicked, dismissed.

``GET {prefix}/nudges`` lists the request's pending nudges; ``POST
{prefix}/nudges/{name}/shown|clicked|dismissed`` records an outcome (dismissed takes an
optional ``{"snooze_seconds": N}``). A POST must be sent as ``application/json`` (an
empty body is fine), which a cross-site HTML form cannot do: that is the endpoint's
protection against cross-site requests. As defence in depth, a POST whose
``Sec-Fetch-Site`` header (sent by browsers) says ``cross-site`` is refused with 403.
Framework-free: the adapters read the request and write the :class:`Reply`.
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import attrs

from ..errors import InvalidEventError
from ..rules.nudges import NudgeFired

if TYPE_CHECKING:
    from ..client import Client
    from ._core import RequestState

__all__ = ["MAX_BODY", "Reply", "answer", "error", "incomplete_body"]

#: Largest body the nudge endpoint reads, in bytes.
MAX_BODY = 4096
_MAX_SNOOZE_S = 3650 * 86_400.0
_OUTCOME = re.compile(r"/nudges/([^/]+)/(shown|clicked|dismissed)/?\Z")


@attrs.frozen
class Reply:
    """A response of the nudge endpoint, framework-free."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def answer(
    client: Client,
    nudge_names: frozenset[str] | None,
    state: RequestState,
    *,
    method: str,
    path: str,
    content_type: str | None,
    body: bytes | None,
    fetch_site: str | None = None,
) -> Reply:
    """Answer one request to the nudge endpoint (``path`` is what follows its prefix).

    Raises only on SDK failures, which the caller turns into a 500.
    """
    if path in ("/nudges", "/nudges/"):
        if method not in ("GET", "HEAD"):
            return error(405, "use GET", allow="GET")
        if state.subject is None:
            return error(401, "no user")
        listed = [_nudge_json(n) for n in state.nudges]
        return json_reply(200, {"nudges": listed})
    match = _OUTCOME.match(path)
    if match is None:
        return error(404, "no such endpoint")
    if method != "POST":
        return error(405, "use POST", allow="POST")
    if (fetch_site or "").strip().lower() == "cross-site":
        return error(403, "cross-site requests are refused")
    if state.subject is None:
        return error(401, "no user")
    name, outcome = unquote(match[1]), match[2]
    if nudge_names is not None and name not in nudge_names:
        return error(404, "no such nudge")
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        return error(415, "send Content-Type: application/json")
    if body is None or len(body) > MAX_BODY:
        return error(413, f"body larger than {MAX_BODY} bytes")
    data = _parse_body(body)
    if data is None:
        return error(400, "the body must be a JSON object")
    snooze = None
    if outcome == "dismissed" and "snooze_seconds" in data:
        snooze = _snooze(data.pop("snooze_seconds"))
        if snooze is None:
            return error(400, "snooze_seconds must be a positive number of seconds")
    if data:
        return error(400, f"unexpected fields: {sorted(data)}")
    who: dict[str, Any] = {"account_id": state.account_id}
    if state.user_id is None:
        who["anonymous_id"] = state.anonymous_id
    try:
        if outcome == "shown":
            client.nudge_shown(state.user_id, name, **who)
        elif outcome == "clicked":
            client.nudge_clicked(state.user_id, name, **who)
        else:
            client.nudge_dismissed(state.user_id, name, snooze=snooze, **who)
    except InvalidEventError as exc:
        return error(400, str(exc))
    return Reply(204, b"", (("Cache-Control", "no-store"),))


def incomplete_body() -> Reply:
    """The reply to a POST whose body does not match its ``Content-Length``: 400."""
    return error(400, "the body does not match its Content-Length")


def _nudge_json(nudge: NudgeFired) -> dict[str, Any]:
    return {
        "name": nudge.name,
        "payload": dict(nudge.payload),
        "priority": nudge.priority,
        "timestamp": nudge.timestamp.isoformat().replace("+00:00", "Z"),
    }


def json_reply(status: int, data: object) -> Reply:
    """A JSON response that no cache keeps."""
    body = json.dumps(data, separators=(",", ":"), default=str).encode()
    headers = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))
    return Reply(status, body, headers)


def error(status: int, message: str, *, allow: str | None = None) -> Reply:
    """A JSON error response ``{"error": message}``."""
    reply = json_reply(status, {"error": message})
    if allow is None:
        return reply
    return attrs.evolve(reply, headers=(*reply.headers, ("Allow", allow)))


def _parse_body(body: bytes) -> dict[str, Any] | None:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _snooze(value: object) -> timedelta | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 < seconds <= _MAX_SNOOZE_S:
        return None
    return timedelta(seconds=seconds)
