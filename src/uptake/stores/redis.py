"""RedisStore: rule state in Redis, shared by every process on every host.

Each subject's state is one Redis string, ``<token>,<older tokens>|<json>``, under
``prefix + key``, where the token is random and new at every write (a counter would
repeat after a delete or an expiry and let a stale copy through), and the tokens of the
latest few writes are kept (to tell later whether a write whose reply was lost landed).
An update is optimistic: the change runs on
this process's cached copy, and one Lua script writes the new values only if every key
still holds the token the change started from (and sets the idle expiry). When nobody
else wrote the subject meanwhile, that is the one round trip; otherwise the script hands
back the current values and the change runs again on them. So a milestone is reached,
and a capped nudge fires, once across all hosts.

Redis being down or slow holds a command for at most ``timeout`` (an update is one
command when cached, two otherwise): the failure is raised at once (the client keeps
the event to apply it once Redis answers again), and for ``retry_interval`` afterwards
the store fails fast without touching the network, then tries again; redis-py
reconnects by itself. An error of one key or command (a WRONGTYPE, a READONLY replica,
a key other writers kept changing) is no outage: it is raised with ``outage`` False.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from .._rulestate import SubjectState
from ..errors import ConfigurationError, StoreUnavailable
from ._redis_sessions import RedisSessions

__all__ = ["RedisStore"]

T = TypeVar("T")

# KEYS: the subjects' keys. ARGV: expiry in ms (0: none), then the expected token of each
# key ("": absent), then the new value of each key (``token|json``). Returns {1} when
# written, or {0, current value of each key (false when absent)} when another writer came
# first. A stored value keeps the tokens of its latest writes, newest first
# (``token,older,...|json``, _KEPT at most, the older ones cut to 8 hex digits): one that
# holds this write's token means this
# very write landed before (a resent command), which is success too; and it lets a writer
# whose reply was lost tell, later, whether its write landed (``RedisStore._landed``).
_CAS = """
local n = #KEYS
local ttl = tonumber(ARGV[1])
local kept = tonumber(ARGV[2 + 2 * n])
local function tokens(value)
  if not value then return '' end
  local bar = string.find(value, '|', 1, true)
  if not bar then return '?' end
  return string.sub(value, 1, bar - 1)
end
local function holds(list, token)
  local short = string.sub(token, 1, 8)
  for t in string.gmatch(list, '[^,]+') do
    if t == token or t == short then return true end
  end
  return false
end
local lists = {}
local done = true
for i = 1, n do
  lists[i] = tokens(redis.call('GET', KEYS[i]))
  local new = ARGV[1 + n + i]
  if not holds(lists[i], string.sub(new, 1, string.find(new, '|', 1, true) - 1)) then
    done = false
  end
end
if done then return {1} end
for i = 1, n do
  local comma = string.find(lists[i], ',', 1, true)
  local current = lists[i]
  if comma then current = string.sub(current, 1, comma - 1) end
  if current ~= ARGV[1 + i] then
    local values = {}
    for j = 1, n do values[j] = redis.call('GET', KEYS[j]) end
    return {0, values}
  end
end
for i = 1, n do
  local value = ARGV[1 + n + i]
  if lists[i] ~= '' and lists[i] ~= '?' then
    local older, m = {}, 0
    for t in string.gmatch(lists[i], '[^,]+') do
      if m + 1 >= kept then break end
      m = m + 1
      older[m] = string.sub(t, 1, 8)
    end
    local bar = string.find(value, '|', 1, true)
    value = string.sub(value, 1, bar - 1) .. ',' .. table.concat(older, ',')
      .. string.sub(value, bar)
  end
  if ttl > 0 then
    redis.call('SET', KEYS[i], value, 'PX', ttl)
  else
    redis.call('SET', KEYS[i], value)
  end
end
return {1}
"""
#: Tokens of a subject's latest writes kept in its value (the newest first).
_KEPT = 8
_ATTEMPTS = 8
_STRIPES = 32


class RedisStore(RedisSessions):
    """Keeps rule state in Redis, so every host behind a load balancer shares it.

    Needs the ``redis`` extra: ``pip install 'uptake[redis]'``. Thread-safe and fork-safe.

    Args:
        url: ``redis://host:port/db`` (or ``rediss://`` for TLS, ``unix://`` sockets).
        prefix: Put before every key, so several apps can share one Redis.
        ttl: A subject idle this long is forgotten by Redis (default 400 days; ``None``:
            never).
        timeout: Longest time, in seconds, one Redis command may hold the tracking call
            (default 0.05).
        retry_interval: After a failure, seconds during which the store fails fast
            without trying Redis (default 1.0).
        cache_size: Subjects whose latest state this process keeps, so an update is one
            round trip when no other process wrote them since.
        cluster: ``url`` is a node of a Redis Cluster. Each subject is one key, so one hash
            slot; an event's account and user are then updated one after the other (each
            atomically), since their keys sit in different slots.

    Raises:
        ConfigurationError: ``redis`` is not installed, or an argument is out of range.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "uptake:",
        ttl: timedelta | None = timedelta(days=400),
        timeout: float = 0.05,
        retry_interval: float = 1.0,
        cache_size: int = 10_000,
        cluster: bool = False,
    ) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "RedisStore needs the redis package: pip install 'uptake[redis]'"
            ) from exc
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl < timedelta(seconds=1)):
            raise ConfigurationError(
                f"ttl must be a timedelta of 1 s or more, or None, not {ttl!r}"
            )
        for name, value in (("timeout", timeout), ("retry_interval", retry_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive number, not {value!r}")
        if not isinstance(cache_size, int) or isinstance(cache_size, bool) or cache_size < 0:
            raise ConfigurationError(f"cache_size must be an int >= 0, not {cache_size!r}")
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a string, not {prefix!r}")
        if not isinstance(url, str):
            raise ConfigurationError(
                f"url must be a string such as 'redis://host:6379/0', not {url!r}"
            )
        if not isinstance(cluster, bool):
            raise ConfigurationError(f"cluster must be True or False, not {cluster!r}")
        self.url = url
        self.prefix = prefix
        self.ttl = ttl
        self.timeout = float(timeout)
        self.retry_interval = float(retry_interval)
        self.cache_size = cache_size
        #: Updates refused because Redis failed or was being given a rest.
        self.failures = 0
        #: Updates that had to run again because another process wrote the subject first.
        self.conflicts = 0
        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        #: Whether update_many changes several keys in one step (not on a cluster).
        self.atomic_many = not cluster
        self._options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
        }
        # Only these open the fast-failure window (not a WRONGTYPE on one odd key).
        # (CLUSTERDOWN and a primary lost by its replicas are outages of Redis too.)
        self._outage_errors: tuple[type[BaseException], ...] = (
            redis.ConnectionError,
            redis.TimeoutError,
            OSError,
            redis.exceptions.ClusterDownError,
            redis.exceptions.MasterDownError,
        )
        self._client: Any = None
        if not cluster:  # a standalone client connects lazily: build it now
            try:
                self._client = redis.Redis.from_url(
                    url, retry_on_timeout=False, health_check_interval=0, **self._options
                )
            except ValueError as exc:
                raise ConfigurationError(f"bad Redis url {url!r}: {exc}") from exc
        self._ttl_ms = 0 if ttl is None else int(ttl.total_seconds() * 1000)
        self._cache: OrderedDict[str, tuple[str, SubjectState]] = OrderedDict()
        self._cache_lock = threading.Lock()
        #: user key -> the value of their session this process last saw ("": none)
        self._session_cache: dict[str, str] = {}
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._down_until = 0.0
        self._last_error = ""
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------ the Store protocol

    def update(self, key: str, change: Callable[..., T], *args: Any) -> T:
        """Call ``change(state, *args)`` on the state of ``key`` atomically (see the class).

        Raises:
            StoreUnavailable: Redis failed, was too slow, or is being given a rest.
        """
        result: T = self.update_many((key,), _single, change, *args)
        return result

    def update_many(self, keys: Sequence[str], change: Callable[..., T], *args: Any) -> T:
        """Call ``change([state of each key], *args)`` atomically for all the keys.

        One script over all the keys: on Redis Cluster (``cluster=True``) they must share
        a hash slot, and the client gives this store one subject per call.

        Raises:
            StoreUnavailable: Redis failed, was too slow, or is being given a rest.
            RuntimeError: other writers kept winning the race (very unlikely).
        """
        names = [self.prefix + key for key in keys]
        locks = sorted({hash(name) % _STRIPES for name in names})
        for i in locks:
            self._stripes[i].acquire()
        try:
            self._check_available()
            # The cached copies are taken out: the change mutates them, and they go back
            # only once Redis holds what they became.
            known = self._take(names)
            for _ in range(_ATTEMPTS):
                if known is None:
                    known = self._fetch(names)
                tokens = [token for token, _ in known]
                states = [state for _, state in known]
                result = change(states, *args)
                fresh = [secrets.token_hex(8) for _ in names]
                values = [
                    f"{token}|{_dumps(state)}" for token, state in zip(fresh, states, strict=True)
                ]
                try:
                    argv = [self._ttl_ms, *tokens, *values, _KEPT]
                    reply = self._call(self._eval, names, argv)
                except StoreUnavailable as exc:
                    if isinstance(exc.__cause__, self._outage_errors):  # sent, maybe applied
                        exc.landed = functools.partial(self._landed, names, fresh)
                    raise
                if reply[0] == 1:
                    self._remember(names, list(zip(fresh, states, strict=True)))
                    return result
                self.conflicts += 1
                known = [_parse(raw) for raw in reply[1]]
            # Other writers kept winning: an operational failure (a very busy key), not a bug,
            # and not an outage either (waiting would not help this event).
            busy = StoreUnavailable(f"{self!r}: {keys} kept changing for {_ATTEMPTS} attempts")
            busy.outage = False
            raise busy
        finally:
            for i in reversed(locks):
                self._stripes[i].release()

    def get(self, key: str) -> SubjectState | None:
        """A copy of the state of ``key``, or None.

        Raises:
            StoreUnavailable: Redis failed, was too slow, or is being given a rest.
        """
        self._check_available()
        raw = self._call(lambda: self._client.get(self.prefix + key))
        if raw is None:
            return None
        return _parse(raw)[1]

    def delete(self, key: str) -> bool:
        """Forget ``key`` (for every process); True if it was known.

        Raises:
            StoreUnavailable: Redis failed or was too slow.
        """
        name = self.prefix + key
        with self._stripes[hash(name) % _STRIPES]:
            self._forget([name])
            deleted = self._call(lambda: self._client.delete(name))
        return bool(deleted)

    def after_fork_in_child(self) -> None:
        """Use the child's own connections and locks."""
        self._pid = os.getpid()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._cache_lock = threading.Lock()
        if self._client is None:
            return
        pool = getattr(self._client, "connection_pool", None)
        if pool is not None:
            pool.reset()
        else:  # a cluster client: one pool per node
            for node in self._client.get_nodes():
                if node.redis_connection is not None:
                    node.redis_connection.connection_pool.reset()

    def _landed(self, names: list[str], tokens: list[str]) -> bool:
        """Whether a write whose reply was lost did land: the keys keep its tokens.

        Each value keeps the tokens of its latest ``_KEPT`` writes: a write followed by
        more than ``_KEPT - 1`` others (from any process) before this check is taken as
        lost, and applied again.

        Raises:
            StoreUnavailable: Redis still fails.
        """
        self._check_available()
        raws = self._call(lambda: self._client.mget(names))
        held = [_tokens(raw) for raw in raws]
        return any(
            h[:1] == [token] or token[:8] in h[1:] for h, token in zip(held, tokens, strict=True)
        )

    def memory_usage(self, key: str) -> int | None:
        """Bytes Redis uses for one subject's key (``MEMORY USAGE``), or None if absent."""
        usage = self._call(lambda: self._client.memory_usage(self.prefix + key))
        return None if usage is None else int(usage)

    def close(self) -> None:
        """Close the connections."""
        if self._client is not None:
            self._client.close()

    # ------------------------------------------------------------------ internals

    def _check_available(self) -> None:
        if time.monotonic() < self._down_until:
            self.failures += 1
            raise StoreUnavailable(
                f"{self!r} failed {self._last_error}; retrying it within {self.retry_interval}s"
            )

    def _call(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            if self._client is None:
                self._connect()
            return command(*args, **kwargs)
        except self._outage_errors as exc:
            self.failures += 1
            self._down_until = time.monotonic() + self.retry_interval
            self._last_error = f"({type(exc).__name__}: {exc})"
            raise StoreUnavailable(f"{self!r}: {type(exc).__name__}: {exc}") from exc
        except self._redis_errors as exc:  # this key or command, not Redis: no pause
            self.failures += 1
            refused = StoreUnavailable(f"{self!r}: {type(exc).__name__}: {exc}")
            refused.outage = False  # (a WRONGTYPE stays one: the event must not wait)
            raise refused from exc

    def _connect(self) -> None:
        """Build the cluster client (it asks a node for the slots, so only when needed)."""
        from redis.backoff import NoBackoff
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        try:
            # No retries inside redis-py: a resent write after a timeout would be a second
            # attempt the caller does not know of, and the time would exceed ``timeout``.
            self._client = RedisCluster.from_url(
                self.url, retry=Retry(NoBackoff(), 0), **self._options
            )
        except Exception as exc:  # redis-py raises several kinds here
            raise OSError(f"cannot reach the Redis cluster: {exc}") from exc

    def _eval(self, names: list[str], args: list[Any]) -> Any:
        # EVAL, not EVALSHA: the script is small, and a restarted Redis that lost its
        # script cache costs no extra round trips.
        return self._client.eval(_CAS, len(names), *names, *args)

    def _fetch(self, names: list[str]) -> list[tuple[str, SubjectState]]:
        raws = self._call(lambda: self._client.mget(names))
        return [_parse(raw) for raw in raws]

    def _take(self, names: list[str]) -> list[tuple[str, SubjectState]] | None:
        """Remove and return the cached entries of all ``names``, or None if one is missing."""
        if not self.cache_size:
            return None
        with self._cache_lock:
            found = [self._cache.pop(name, None) for name in names]
        if any(entry is None for entry in found):
            return None
        return found  # type: ignore[return-value]

    def _remember(self, names: list[str], entries: list[tuple[str, SubjectState]]) -> None:
        if not self.cache_size:
            return
        with self._cache_lock:
            cache = self._cache
            for name, entry in zip(names, entries, strict=True):
                cache[name] = entry
                cache.move_to_end(name)
            while len(cache) > self.cache_size:
                cache.popitem(last=False)

    def _forget(self, names: list[str]) -> None:
        with self._cache_lock:
            for name in names:
                self._cache.pop(name, None)


def _single(states: list[SubjectState], change: Callable[..., T], *args: Any) -> T:
    return change(states[0], *args)


def _dumps(state: SubjectState) -> str:
    return json.dumps(state.to_json(), separators=(",", ":"))


def _parse(raw: bytes | str | None) -> tuple[str, SubjectState]:
    """A stored value as (its latest token, state); ("", a new state) when absent."""
    if raw is None:
        return "", SubjectState()
    text = raw.decode() if isinstance(raw, bytes) else raw
    tokens, _, body = text.partition("|")
    return tokens.partition(",")[0], SubjectState.from_json(json.loads(body))


def _tokens(raw: bytes | str | None) -> list[str]:
    """The tokens a stored value keeps, newest first (none when absent)."""
    if raw is None:
        return []
    text = raw.decode() if isinstance(raw, bytes) else raw
    return text.partition("|")[0].split(",")
