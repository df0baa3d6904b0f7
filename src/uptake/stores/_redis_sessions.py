"""Open sessions in Redis: one hash of every user's session, and two sorted sets to sweep.

``{prefix}{sessions}`` maps a user's key to their open session (a JSON list);
``...:last`` orders automatic sessions by their latest event and ``...:started`` all of
them by their start, so a sweep finds the idle ones without a scan. The three keys share
the ``{sessions}`` hash tag, so on a Redis Cluster they sit in one slot and each script
below is atomic there too. A change is optimistic: the script writes only if the
session still holds what the change started from, and otherwise hands back what it
holds now.
"""

from __future__ import annotations

import json

from .._sessionstate import SessionRecord

__all__ = ["CAS", "TAKE", "cas_args", "dumps", "keys", "loads", "text"]

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
