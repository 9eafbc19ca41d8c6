-- kumo.string: KumoMTA's string functions (policyd/extensions/string.py has
-- Rust's meaning of each). Patterns are plain text; numbers are taken as their
-- text; strings must be UTF-8 except for starts_with, ends_with and wrap,
-- which work on bytes.
--   split(s, pat), splitn(s, limit, pat)      array of the pieces (at most limit)
--   rsplit(s, pat), rsplitn(s, limit, pat)    the same, listed from the end
--   split_whitespace(s)                       words between Unicode White_Space
--   split_ascii_whitespace(s)                 words between ASCII whitespace
--   replace(s, from, to), replacen(s, from, to, count)
--   trim(s), trim_start(s), trim_end(s)       Unicode White_Space removed
--   starts_with(s, prefix), ends_with(s, suffix)
--   wrap(s, soft = 75, hard = 900)            lines broken with CR LF TAB
local kumo, host, support = ...

local format, sub, type, tostring, error = string.format, string.sub, type, tostring, error
local utf8_len, tointeger, unpack = utf8.len, math.tointeger, table.unpack
local binary = support.binary

-- Argument checks: each raises at `level` above itself (3: the policy line
-- that called the kumo.string function which called the check).
local function bytes(fn, i, value, level)
  if type(value) == 'number' then value = tostring(value) end
  if type(value) ~= 'string' then
    error(format('bad argument #%d to %s (string expected, got %s)', i, fn, type(value)), level)
  end
  return value
end

local function text(fn, i, value, level)
  value = bytes(fn, i, value, level + 1)
  if not utf8_len(value) then error(format('%s: argument #%d is not valid UTF-8', fn, i), level) end
  return value
end

local function count(fn, i, value, level, default)
  if value == nil and default then return default end
  local n = tointeger(value)
  if n == nil or n < 0 then
    error(format('bad argument #%d to %s (non-negative integer expected, got %s)', i, fn,
      tostring(value)), level)
  end
  return n
end

-- The host function `name` with its arguments checked by `kinds` (text or
-- count, one per argument).
local function define(name, kinds)
  local fn, host_fn = 'kumo.string.' .. name, host[name]
  return function(...)
    local args = { ... }
    for i, kind in ipairs(kinds) do args[i] = kind(fn, i, args[i], 3) end
    local result, err = host_fn(unpack(args, 1, #kinds))
    if err ~= nil then error(format('%s: %s', fn, err), 2) end
    return result
  end
end

local string_ = {
  split = define('split', { text, text }),
  splitn = define('splitn', { text, count, text }),
  rsplit = define('rsplit', { text, text }),
  rsplitn = define('rsplitn', { text, count, text }),
  split_whitespace = define('split_whitespace', { text }),
  split_ascii_whitespace = define('split_ascii_whitespace', { text }),
  trim = define('trim', { text }),
  trim_start = define('trim_start', { text }),
  trim_end = define('trim_end', { text }),
  replacen = define('replacen', { text, text, text, count }),
}

local host_replacen = host.replacen
function string_.replace(s, from, to)
  local fn = 'kumo.string.replace'
  s, from, to = text(fn, 1, s, 3), text(fn, 2, from, 3), text(fn, 3, to, 3)
  local out, err = host_replacen(s, from, to, -1)  -- -1: every match
  if err ~= nil then error(format('%s: %s', fn, err), 2) end
  return out
end

function string_.starts_with(s, prefix)
  local fn = 'kumo.string.starts_with'
  s, prefix = bytes(fn, 1, s, 3), bytes(fn, 2, prefix, 3)
  return sub(s, 1, #prefix) == prefix
end

function string_.ends_with(s, suffix)
  local fn = 'kumo.string.ends_with'
  s, suffix = bytes(fn, 1, s, 3), bytes(fn, 2, suffix, 3)
  return #suffix == 0 or sub(s, -#suffix) == suffix
end

local host_wrap = host.wrap
function string_.wrap(s, soft, hard)
  local fn = 'kumo.string.wrap'
  s = bytes(fn, 1, s, 3)
  soft, hard = count(fn, 2, soft, 3, 75), count(fn, 3, hard, 3, 900)
  local out = host_wrap(binary(s), soft, hard)
  return out
end

kumo.string = string_
