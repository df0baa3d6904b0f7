"""What the rules engine keeps to make the tracking path short (internal).

:class:`Event` carries one event through a store's update (one argument, not a dozen),
:class:`Keys` keeps the store keys of recent subjects instead of rebuilding them, and
:class:`AccountMemo` remembers what this process last wrote to each account, so that an
event changing nothing there but the account's latest time skips the account's update.
:class:`Effects` is what an event decided; :class:`Deferred`, that the store could not
take it (the caller keeps it to apply later).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import StoreUnavailable
from .engagement_signals import Change
from .milestones import Milestone
from .nudge_decide import Question
from .nudge_spec import Action

__all__ = [
    "ACCOUNT_LAST_RESOLUTION_S",
    "AccountMemo",
    "Deferred",
    "Effects",
    "Event",
    "Keys",
    "Reached",
    "deferred",
    "outage",
]

#: What one event reached: (milestone, reached at, first seen), in event time.
Reached = tuple[Milestone, float, float]


class Event:
    """One event on its way through the store's update, and what it decided there."""

    __slots__ = (
        "account",
        "account_changes",
        "account_reached_now",
        "actions",
        "active",
        "anon",
        "day",
        "decide",
        "event",
        "feature",
        "known",
        "question",
        "reached",
        "t",
        "uid",
        "user",
        "user_changes",
        "with_account",
    )

    def __init__(
        self,
        event: str,
        t: float,
        active: bool,
        feature: str | None,
        day: int | None,
        uid: str | None,
        anon: str | None,
        account: str | None,
        decide: bool,
    ) -> None:
        self.event = event
        self.t = t
        self.active = active
        self.feature = feature
        self.day = day
        self.uid = uid
        self.anon = anon
        self.account = account
        self.decide = decide
        self.with_account = False
        self.user = False
        # What the account reached (and has reached: ``known``), for the user's step.
        self.account_reached_now: list[Reached] = []
        self.known: frozenset[str] = frozenset()
        self.reached: list[Reached] = []
        self.actions: list[Action] = []
        self.question: Question | None = None
        # Engagement signals decided in each subject's update (empty when off).
        self.account_changes: list[Change] = _NO_CHANGES
        self.user_changes: list[Change] = _NO_CHANGES


#: Shared, never appended to: each step assigns a new list when it signals.
_NO_CHANGES: list[Change] = []


class Effects:
    """What applying one event (or one look at a user) decided.

    ``changes`` are engagement signals (the account's first, then the user's). ``uid``
    is the user a merged visitor's event was applied to; ``deferred`` is set
    when the store could not be reached: (the store's way to tell whether the write
    landed after all, or None; what that write decided).
    """

    __slots__ = ("changes", "deferred", "nudges", "reached", "uid")

    def __init__(self) -> None:
        self.reached: list[Reached] = []
        self.nudges: list[Action] = []
        self.changes: list[Change] = []
        self.uid: str | None = None
        self.deferred: tuple[Callable[[], bool] | None, Effects] | None = None

    def __bool__(self) -> bool:
        return bool(self.reached or self.nudges or self.changes)


class Deferred(Effects):
    """The effects of an event the store could not take (always true: to be kept)."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return True


def outage(exc: BaseException) -> bool:
    """Whether a store's failure is an outage (the event waits for the store to answer
    again) rather than a refusal of this key or command (the event is left out)."""
    if isinstance(exc, TimeoutError):  # (a SQLite file locked for longer than its timeout)
        return True
    return isinstance(exc, StoreUnavailable) and exc.outage


def deferred(exc: Exception, ev: Event | None) -> Effects:
    """The effects of an event the store could not take: to be applied again later
    (``ev``: what the store's change decided, when it carried one)."""
    made = Effects()
    if ev is not None:
        made.reached, made.nudges = ev.reached, ev.actions
        made.changes = ev.account_changes + ev.user_changes
    deferred = Deferred()
    deferred.deferred = (getattr(exc, "landed", None), made)
    return deferred


class Keys:
    """Store keys of recently seen subjects, so the hot path does not rebuild them."""

    __slots__ = ("_accounts", "_anons", "_users")

    _LIMIT = 4096  # per kind; past it the cache starts afresh

    def __init__(self) -> None:
        self._users: dict[str, str] = {}
        self._anons: dict[str, str] = {}
        self._accounts: dict[str, str] = {}

    @property
    def users(self) -> dict[str, str]:
        """User id -> key, for a lookup inline (the same dict for the cache's life)."""
        return self._users

    def user(self, uid: str | None, anon: str | None) -> str:
        """The key of a user (by user id, else anonymous id)."""
        if uid is not None:
            key = self._users.get(uid)
            if key is None:
                key = self._users[uid] = _keep(self._users, f"user:{uid}")
            return key
        key = self._anons.get(anon)  # type: ignore[arg-type]
        if key is None:
            key = self._anons[anon] = _keep(self._anons, f"anon:{anon}")  # type: ignore[index]
        return key

    def account(self, account: str) -> str:
        """The key of an account."""
        key = self._accounts.get(account)
        if key is None:
            key = self._accounts[account] = _keep(self._accounts, f"account:{account}")
        return key


class _Seen:
    """What this process last wrote to one account, on one calendar day."""

    __slots__ = ("day", "features", "members", "written")

    def __init__(self, day: int, written: float) -> None:
        self.day = day
        self.written = written
        self.members: set[str | None] = set()
        self.features: set[str] = set()


#: An account's ``last`` (its snapshot's ``last_seen``) may lag by up to this many seconds.
ACCOUNT_LAST_RESOLUTION_S = 60.0


class AccountMemo:
    """Accounts this process wrote recently, so repeated events skip the account's update.

    Only records what a successful store update wrote; a day change, a feature or member
    not yet seen that day, an event an account milestone counts, a touchpoint, an event
    earlier than the last write or a minute after it still updates the account.
    """

    __slots__ = ("_seen",)

    _LIMIT = 10_000

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    @property
    def seen(self) -> dict[str, _Seen]:
        """Account -> what was last written there, for a lookup inline (the same dict for
        the memo's life)."""
        return self._seen

    def get(self, account: str) -> _Seen | None:
        return self._seen.get(account)

    def written(self, account: str, day: int, t: float, ev: Event) -> None:
        """Record that the account's state was just updated with ``ev`` (on ``day``)."""
        seen = self._seen.get(account)
        if seen is None or seen.day != day or not seen.written <= t:
            if len(self._seen) >= self._LIMIT:
                self._seen.clear()
            seen = self._seen[account] = _Seen(day, t)  # replaced whole: never mixes days
        else:
            seen.written = t
        if ev.active:
            seen.members.add(ev.uid if ev.uid is not None else ev.anon)
        if ev.feature is not None:
            seen.features.add(ev.feature)

    def forget(self, account: str) -> None:
        self._seen.pop(account, None)


def _keep(cache: dict[str, str], key: str) -> str:
    if len(cache) >= Keys._LIMIT:
        cache.clear()
    return key
