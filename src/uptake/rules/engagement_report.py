"""What the client does with engagement signals: events, host callbacks, explicit checks.

The engine decides a signal inside the subject's store update (see :mod:`.signals`);
:class:`ChangeHooks` records each one as an "Engagement Tier Changed" or "Engagement
Declining" event through the client's pipeline and calls the ``on_engagement_change``
callbacks whose filters match, on the thread whose call found the change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from ..definitions import DECLINING_EVENT, TIER_EVENT
from ..errors import ConfigurationError
from .engagement_signals import CHANGES, KINDS, Change, EngagementChange
from .state import SubjectState

if TYPE_CHECKING:
    from .engine import RulesEngine

__all__ = ["ChangeHook", "ChangeHooks", "check"]

logger = logging.getLogger("uptake")

ChangeHook = Callable[[EngagementChange], object]

_SCOPES = ("user", "account")


class _Emitter(Protocol):
    def message(
        self,
        kind: str,
        uid: str | None,
        anon: str | None,
        t: float,
        account: str | None,
        context: Any,
        session_id: str | None,
    ) -> dict[str, Any]: ...

    def emit(self, message: dict[str, Any]) -> None: ...


def _choice(value: str | None, allowed: Sequence[str], what: str) -> str | None:
    if value is not None and value not in allowed:
        raise ConfigurationError(f"{what} must be one of {tuple(allowed)} or None, not {value!r}")
    return value


class ChangeHooks:
    """The ``on_engagement_change`` callbacks of one client, and how signals are recorded."""

    def __init__(self, emitter: _Emitter) -> None:
        self.emitter = emitter
        self._hooks: list[tuple[str | None, str | None, str | None, ChangeHook]] = []

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def register(
        self, scope: str | None, kind: str | None, change: str | None
    ) -> Callable[[ChangeHook], ChangeHook]:
        """Return a decorator registering a callback for the changes matching the filters."""
        scope = _choice(scope, _SCOPES, "scope")
        kind = _choice(kind, KINDS, "kind")
        change = _choice(change, CHANGES, "change")
        if (
            kind is not None
            and change is not None
            and (kind == "tier") != (change in ("rose", "dropped"))
        ):
            raise ConfigurationError(f"a {kind!r} change is never {change!r}")

        def register(hook: ChangeHook) -> ChangeHook:
            if not callable(hook):
                raise ConfigurationError(f"on_engagement_change needs a callable, not {hook!r}")
            self._hooks.append((scope, kind, change, hook))
            return hook

        return register

    def report(
        self,
        changes: list[Change],
        uid: str | None,
        anon: str | None,
        account: str | None,
        session_id: str | None,
    ) -> list[EngagementChange]:
        """Record each change as an event; call the matching callbacks; return them."""
        made = []
        for scope, kind, change, was, tier, score, declining, t in changes:
            properties: dict[str, Any] = {"scope": scope, "change": change, "score": score}
            if kind == "tier":
                name = TIER_EVENT
                properties["from"], properties["to"] = was, tier
                properties["declining"] = declining
            else:
                name = DECLINING_EVENT
                properties["declining"], properties["tier"] = declining, tier
            who, visitor = uid, anon
            if who is None and visitor is None:  # a check of an account alone
                visitor = f"account:{account}"
            message = self.emitter.message("track", who, visitor, t, account, None, session_id)
            message["event"] = name
            message["properties"] = properties
            self.emitter.emit(message)
            value = EngagementChange(
                scope=scope,  # type: ignore[arg-type]
                kind=kind,  # type: ignore[arg-type]
                change=change,  # type: ignore[arg-type]
                user_id=uid if uid is not None else anon,
                account_id=account,
                tier=tier,  # type: ignore[arg-type]
                previous_tier=was,  # type: ignore[arg-type]
                score=score,
                declining=declining,
                timestamp=datetime.fromtimestamp(t, timezone.utc),
            )
            made.append(value)
            for want_scope, want_kind, want_change, hook in self._hooks:
                if (
                    (want_scope is None or want_scope == scope)
                    and (want_kind is None or want_kind == kind)
                    and (want_change is None or want_change == change)
                ):
                    try:
                        hook(value)
                    except Exception:  # one broken callback must not stop the others
                        logger.exception("on_engagement_change callback %r raised", hook)
        return made


def check(
    engine: RulesEngine, user_id: object, account_id: object, t: float
) -> tuple[str, list[Change]]:
    """Evaluate the signals of one stored subject at ``t`` in one store update; return
    its store key and the changes (none for a subject never seen: it gets no state)."""
    found = engine.state(user_id, account_id, t)
    if found is None:
        return "", []
    key = found[0]
    signals = engine.account_signals if key.startswith("account:") else engine.user_signals
    assert signals is not None  # the caller turned signals on
    evaluate = signals.evaluate

    def change(state: SubjectState, at: float) -> list[Change]:
        return evaluate(state, at, False)

    result: list[Change] = engine.store.update(key, change, t)
    return key, result
