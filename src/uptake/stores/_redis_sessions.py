"""Open sessions in Redis: one hash of every user's session, and two sorted sets to sweep.

``{prefix}{sessions}`` maps a user's key to their open session (a JSON list);
``...:last`` orders automatic sessions by their latest event and ``...:started`` all of
them by their start, so a sweep finds the idle ones without a scan. The three keys share
the ``{sessions}`` hash tag, so on a Redis Cluster they sit in one slot and each script
below is atomic there too. A change is optimistic: the script writes only if the
session still holds what the change started from, and otherwise hands back what it
holds now. :class:`RedisSessions` holds the store's session methods.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .._sessionstate import SessionChange, SessionRecord
from ..errors import StoreUnavailable

__all__ = ["CAS", "TAKE", "RedisSessions", "cas_args", "dumps", "keys", "loads", "text"]

T = TypeVar("T")

# KEYS: the hash, the 'last' and 'started' sorted sets. ARGV: the user's key, the value
# the change started from ("": none), the new value ("": delete), its last event time,
# its start, "1" for an explicit session. Returns {1} when written, {0, current} if not.
CAS = """
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return {0, current} end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
  if ARGV[6] == '1' then
    redis.call('ZREM', KEYS[2], ARGV[1])
  else
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  end
end
return {1}
"""

# KEYS: as above. ARGV: idle before, started before, most to take. Deletes and returns
# {key, value, key, value, ...} of the sessions over: each goes to exactly one caller.
TAKE = """
local taken = {}
local seen = {}
local found = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[3])
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, key in ipairs(old) do table.insert(found, key) end
for _, key in ipairs(found) do
  if not seen[key] then
    seen[key] = true
    local value = redis.call('HGET', KEYS[1], key)
    if value then
      table.insert(taken, key)
      table.insert(taken, value)
    end
    redis.call('HDEL', KEYS[1], key)
    redis.call('ZREM', KEYS[2], key)
    redis.call('ZREM', KEYS[3], key)
  end
end
return taken
"""


def keys(prefix: str) -> list[str]:
    """The three Redis keys of the sessions under ``prefix``."""
    name = prefix + "{sessions}"
    return [name, name + ":last", name + ":started"]


def dumps(record: SessionRecord) -> str:
    """A session as the hash keeps it."""
    return json.dumps(list(record[1:]), separators=(",", ":"))


def loads(key: str, raw: bytes | str | None) -> SessionRecord | None:
    """A session from the hash (``None`` or ``""``: none)."""
    if not raw:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    sid, uid, anon, account, started, last, explicit = json.loads(text)
    return SessionRecord(key, sid, uid, anon, account, float(started), float(last), explicit)


def cas_args(key: str, raw: str, kept: SessionRecord | None) -> list[str]:
    """The ARGV of :data:`CAS` replacing ``raw`` with ``kept`` (``None``: deleting it)."""
    if kept is None:
        return [key, raw, "", "0", "0", "0"]
    explicit = "1" if kept.explicit else "0"
    return [key, raw, dumps(kept), repr(kept.last), repr(kept.started), explicit]


def text(raw: bytes | str | None) -> str:
    """A reply as a string ("" for none)."""
    if not raw:
        return ""
    return raw.decode() if isinstance(raw, bytes) else raw


#: A session is written by every worker a user's requests reach, often at once (a page's
#: parallel requests): more tries, each after the second lost one preceded by a random
#: pause of up to 0.25 ms, doubling to 8 ms (at most about 50 ms in all), before its event
#: goes without a session id. Two writers in lockstep on one user part ways.
_SESSION_ATTEMPTS = 12


def _step_aside(attempt: int) -> None:
    time.sleep(secrets.randbelow(1 + min(8_000, 250 << (attempt - 2))) / 1_000_000)


class RedisSessions:
    """The open sessions of a :class:`~uptake.RedisStore` (a base class of it)."""

    prefix: str
    cache_size: int
    conflicts: int
    _cache_lock: threading.Lock
    _session_cache: dict[str, str]
    _client: Any
    _check_available: Callable[[], None]
    _call: Callable[..., Any]

    def session_update(self, key: str, change: SessionChange[T]) -> T:
        """Call ``change(record or None)`` on the open session of ``key``, atomically.

        Optimistic, as :meth:`update`: a change is one script that writes only if the
        session still holds what this process last saw of it (one round trip when no
        other process changed it since); an event that changes nothing is one read.

        Raises:
            StoreUnavailable: Redis failed, was too slow, or is being given a rest.
        """
        self._check_available()
        names = keys(self.prefix)
        with self._cache_lock:
            raw = self._session_cache.get(key)
        fresh = raw is None
        try:
            for attempt in range(_SESSION_ATTEMPTS):
                if attempt >= 2 and fresh:  # lost to another writer twice: step aside a
                    _step_aside(attempt)  # random moment, so two in lockstep part ways
                if raw is None:
                    raw = text(self._call(lambda: self._client.hget(names[0], key)))
                current = loads(key, raw)
                kept, result = change(current)
                if kept is current and not fresh:  # decided on a cached copy: read it
                    raw, fresh = None, True
                    continue
                if kept is not current:
                    args = cas_args(key, raw, kept)
                    reply = self._call(lambda a=args: self._client.eval(CAS, 3, *names, *a))
                    if reply[0] != 1:
                        self.conflicts += 1
                        raw, fresh = text(reply[1]), True
                        continue
                    raw = args[2]
                self._remember_session(key, raw)
                return result
        except BaseException:
            self._remember_session(key, None)
            raise
        raise StoreUnavailable(f"{self!r}: the session of {key} kept changing")

    def _remember_session(self, key: str, raw: str | None) -> None:
        """Keep (or with None forget) what this process last saw of a user's session."""
        with self._cache_lock:
            cache = self._session_cache
            cache.pop(key, None)
            if raw is not None and self.cache_size:
                cache[key] = raw
                if len(cache) > self.cache_size:
                    del cache[next(iter(cache))]

    def session_get(self, key: str) -> SessionRecord | None:
        """The open session of ``key``, or None.

        Raises:
            StoreUnavailable: Redis failed, was too slow, or is being given a rest.
        """
        self._check_available()
        name = keys(self.prefix)[0]
        return loads(key, self._call(lambda: self._client.hget(name, key)))

    def session_take(
        self, idle_before: float, started_before: float, limit: int
    ) -> list[SessionRecord]:
        """Delete and return (at most ``limit``) sessions over, each to one caller only.

        Raises:
            StoreUnavailable: Redis failed, was too slow, or is being given a rest.
        """
        self._check_available()
        names = keys(self.prefix)
        args = [repr(idle_before), repr(started_before), limit]
        taken = self._call(lambda: self._client.eval(TAKE, 3, *names, *args))
        pairs = zip(taken[::2], taken[1::2], strict=True)
        found = [loads(text(key), raw) for key, raw in pairs]
        return [record for record in found if record is not None]
