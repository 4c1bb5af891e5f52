"""The Lua scripts behind run accounting, each run atomically by Redis.

Each names its KEYS and ARGV; ``core.runs`` registers and calls them.
"""

from __future__ import annotations

from typing import Final

# Record one batch's final result, once.
# KEYS[1] batch-results hash, KEYS[2] run hash, KEYS[3] failed-rows list,
# KEYS[4] batch payload, KEYS[5] batch state, KEYS[6] the job's gathered errors
# ARGV[1] batch number, ARGV[2] result JSON, ARGV[3] batch status,
# ARGV[4] imported, ARGV[5] failed, ARGV[6] payload TTL (0 = delete now),
# ARGV[7..] failed-row JSON records
# Returns 1 if recorded, 0 if this batch had a result already.
RECORD_BATCH: Final = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'imported', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'failed', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'batches_done', 1)
redis.call('HINCRBY', KEYS[2], 'batches_' .. ARGV[3], 1)
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], 'updated_at', t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
for i = 7, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
redis.call('DEL', KEYS[6])
if tonumber(ARGV[6]) == 0 then
  redis.call('DEL', KEYS[4], KEYS[5])
else
  redis.call('EXPIRE', KEYS[4], ARGV[6])
  redis.call('EXPIRE', KEYS[5], ARGV[6])
end
return 1
"""


# Take a batch's result back out of the run's counts, for a resume.
# KEYS[1] batch-results hash, KEYS[2] run hash, KEYS[3] batch state, KEYS[4] batch payload
# ARGV[1] batch number. Returns 1 if the batch had a result, else 0.
REOPEN_BATCH: Final = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local result = cjson.decode(raw)
-- 0 - n, not -n: Lua's -0 prints as "-0", which HINCRBY refuses as "not an
-- integer" (a batch Klaviyo failed whole has imported = 0).
redis.call('HINCRBY', KEYS[2], 'imported', 0 - result.imported)
redis.call('HINCRBY', KEYS[2], 'failed', 0 - result.failed)
redis.call('HINCRBY', KEYS[2], 'batches_done', -1)
redis.call('HINCRBY', KEYS[2], 'batches_' .. result.status, -1)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('PERSIST', KEYS[4])
return 1
"""


# Record one removal chunk's result, once.
# KEYS[1] removal-results hash, KEYS[2] run hash, KEYS[3] the chunk's email list
# ARGV[1] chunk number, ARGV[2] result JSON, ARGV[3] removed, ARGV[4] failed
# Returns 1 if recorded, 0 if this chunk had a result already. Sets the run's
# updated_at, which the watchdog reads as progress.
RECORD_REMOVAL: Final = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'removed', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'removal_failed', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'removal_chunks_done', 1)
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], 'updated_at', t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
redis.call('DEL', KEYS[3])
return 1
"""


# A run that read its segment starts uploading, unless it was ended meanwhile
# (the watchdog fails a pending run whose producer made no progress for the
# stall time, and frees its lock: a second run may hold it now).
# KEYS[1] run hash, KEYS[2] active-runs set
# ARGV[1] run id, ARGV[2..] field, value, field, value, ...
# Returns 1 if the run is running now, 0 if it was no longer pending.
MARK_RUNNING: Final = """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


# Append one page of a batch job's errors, once, and say where the next page is.
# KEYS[1] the batch's gathered-errors list, KEYS[2] batch state, KEYS[3] batch results
# ARGV[1] batch number, ARGV[2] the page fetched ("" for the first), ARGV[3] the
# next page ("" after the last), ARGV[4] TTL of the list, ARGV[5..] error JSON
# Returns 1 if appended, 0 if another delivery got there first (the page was
# appended already, or the batch has its result and the list is gone).
APPEND_JOB_ERRORS: Final = """
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
if redis.call('HGET', KEYS[2], 'errors_done') then return 0 end
local at = redis.call('HGET', KEYS[2], 'errors_next') or ''
if at ~= ARGV[2] then return 0 end
for i = 5, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
if #ARGV >= 5 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
if ARGV[3] == '' then
  redis.call('HSET', KEYS[2], 'errors_done', 1)
  redis.call('HDEL', KEYS[2], 'errors_next')
else
  redis.call('HSET', KEYS[2], 'errors_next', ARGV[3])
end
return 1
"""


# Release an export's run lock if this run holds it.
# KEYS[1] lock key; ARGV[1] run id. Returns 1 if released.
RELEASE_LOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
