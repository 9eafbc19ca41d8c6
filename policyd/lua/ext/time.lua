-- kumo.time: KumoMTA's Time and TimeDelta objects (policyd/extensions/time.py).
--   now(), from_unix_timestamp(n), with_ymd_hms(y, m, d, H, M, S),
--   parse_rfc3339(text), parse_rfc2822(text)          -> Time
--   parse_duration(seconds or '5 minutes')            -> TimeDelta
--   sleep(seconds)                                    waits (handlers only)
--   start_timer(label)                                -> timer; timer:done() the
--                                                        seconds since (once)
-- Time: fields year, month, day, hour, minute, second, unix_timestamp,
--   unix_timestamp_millis, rfc2822, rfc3339, elapsed (a TimeDelta);
--   t:format(strftime); tostring; ==; t + delta, t - delta, t - t2.
-- TimeDelta: fields seconds, nanoseconds, microseconds, milliseconds, human;
--   tostring (human); ==; d1 + d2, d1 - d2.
-- Each object holds two integers, seconds and nanoseconds in [0, 10^9).
local kumo, host, support = ...

local format, type, tostring, error, setmetatable, getmetatable, rawget =
  string.format, type, tostring, error, setmetatable, getmetatable, rawget
local tointeger = math.tointeger

local SECS, NANOS, FIELDS = {}, {}, {}  -- private keys

local Time, TimeDelta = {}, {}

local function make(class, s, n)
  return setmetatable({ [SECS] = s, [NANOS] = n }, class)
end

-- The object of what a host function returned (seconds, nanoseconds, or nil,
-- nil, message), or an error at `level` above build's caller.
local function build(class, fn, level, s, n, err)
  if s == nil then error(format('%s: %s', fn, err), level + 1) end
  return make(class, s, n)
end

local function fields(self, host_fn)
  local f = rawget(self, FIELDS)
  if f == nil then
    f = host_fn(self[SECS], self[NANOS])
    self[FIELDS] = f
  end
  return f
end

local function is(class, value)
  return type(value) == 'table' and getmetatable(value) == class.__metatable
end

-- Time ----------------------------------------------------------------------

local time_methods = {}

function time_methods:format(fmt)
  if not is(Time, self) then error('kumo.time: call it as a method, t:format(fmt)', 2) end
  if type(fmt) ~= 'string' then
    error(format('bad argument #1 to Time:format (string expected, got %s)', type(fmt)), 2)
  end
  return host.format(self[SECS], self[NANOS], fmt)
end

function Time.__index(self, key)
  local method = time_methods[key]
  if method then return method end
  if key == 'elapsed' then
    local s, n = host.now()
    local delta = build(TimeDelta, 'Time.elapsed', 2, host.difference(s, n, self[SECS], self[NANOS]))
    return delta
  end
  return fields(self, host.time_fields)[key]
end

Time.__tostring = function(self) return fields(self, host.time_fields).text end
Time.__eq = function(a, b)
  return getmetatable(a) == getmetatable(b) and a[SECS] == b[SECS] and a[NANOS] == b[NANOS]
end

function Time.__add(a, b)
  if not (is(Time, a) and is(TimeDelta, b)) then
    error('kumo.time: only a TimeDelta can be added to a Time', 2)
  end
  local t = build(Time, 'Time + TimeDelta', 2, host.time_add(a[SECS], a[NANOS], b[SECS], b[NANOS], 1))
  return t
end

function Time.__sub(a, b)
  if not is(Time, a) then error('kumo.time: a Time can only be subtracted from a Time', 2) end
  if is(Time, b) then
    local d = build(TimeDelta, 'Time - Time', 2, host.difference(a[SECS], a[NANOS], b[SECS], b[NANOS]))
    return d
  end
  if not is(TimeDelta, b) then
    error('kumo.time: only a Time or a TimeDelta can be subtracted from a Time', 2)
  end
  local t = build(Time, 'Time - TimeDelta', 2, host.time_add(a[SECS], a[NANOS], b[SECS], b[NANOS], -1))
  return t
end

Time.__metatable = {
  __memoize = function(self) return 'time', { self[SECS], self[NANOS] } end,
}

-- TimeDelta -------------------------------------------------------------------

function TimeDelta.__index(self, key)
  local f = fields(self, host.delta_fields)
  if key == 'human' and f.human == nil then
    error('kumo.time: a negative TimeDelta has no human form', 2)
  end
  return f[key]
end

TimeDelta.__tostring = function(self) return TimeDelta.__index(self, 'human') end
TimeDelta.__eq = Time.__eq

local function delta_op(sign, what)
  return function(a, b)
    if not (is(TimeDelta, a) and is(TimeDelta, b)) then
      error(format('kumo.time: TimeDelta %s needs two TimeDeltas', what), 2)
    end
    local d = build(TimeDelta, 'TimeDelta ' .. what, 2,
      host.delta_add(a[SECS], a[NANOS], b[SECS], b[NANOS], sign))
    return d
  end
end
TimeDelta.__add, TimeDelta.__sub = delta_op(1, '+'), delta_op(-1, '-')

TimeDelta.__metatable = {
  __memoize = function(self) return 'time_delta', { self[SECS], self[NANOS] } end,
}

-- Constructors ------------------------------------------------------------------

local time = {}

function time.now()
  local s, n = host.now()
  return make(Time, s, n)
end

function time.from_unix_timestamp(seconds)
  if type(seconds) ~= 'number' then
    error('kumo.time.from_unix_timestamp: timestamp must be either an integer or floating point '
      .. 'number of seconds', 2)
  end
  local t = build(Time, 'kumo.time.from_unix_timestamp', 2, host.from_unix_timestamp(seconds))
  return t
end

function time.with_ymd_hms(...)
  local parts = { ... }
  for i = 1, 6 do
    local n = tointeger(parts[i])
    if n == nil or (i > 1 and n < 0) then
      error(format('bad argument #%d to kumo.time.with_ymd_hms (%s expected, got %s)', i,
        i == 1 and 'integer' or 'non-negative integer', tostring(parts[i])), 2)
    end
    parts[i] = n
  end
  local t = build(Time, 'kumo.time.with_ymd_hms', 2, host.with_ymd_hms(table.unpack(parts, 1, 6)))
  return t
end

for _, name in ipairs({ 'parse_rfc3339', 'parse_rfc2822' }) do
  local fn, parse = 'kumo.time.' .. name, host[name]
  time[name] = function(text)
    if type(text) ~= 'string' then
      error(format('bad argument #1 to %s (string expected, got %s)', fn, type(text)), 2)
    end
    local s, n, err = parse(text)
    local t = build(Time, fn, 2, s, n, err and format('%q: %s', text, err))
    return t
  end
end

function time.parse_duration(value)
  local t = type(value)
  if t ~= 'number' and t ~= 'string' then
    error('kumo.time.parse_duration: invalid duration value (a number of seconds or a text '
      .. "like '5 minutes')", 2)
  end
  local d = build(TimeDelta, 'kumo.time.parse_duration', 2, host.parse_duration(value))
  return d
end

function time.sleep(seconds)
  if type(seconds) ~= 'number' or seconds < 0 or seconds ~= seconds then
    error('bad argument #1 to kumo.time.sleep (non-negative number of seconds expected)', 2)
  end
  if support.loading() then
    error('kumo.time.sleep can only be called from a handler, not while the policy loads', 2)
  end
  support.call_host('sleep', false, seconds)
end

local Timer = { __index = {} }
Timer.__metatable = false

function Timer.__index:done()
  local started = self.started
  if started == nil then return nil end
  self.started = nil
  return host.monotonic() - started
end
Timer.__close = Timer.__index.done

function time.start_timer(label)
  if type(label) ~= 'string' then
    error(format('bad argument #1 to kumo.time.start_timer (string expected, got %s)', type(label)), 2)
  end
  return setmetatable({ label = label, started = host.monotonic() }, Timer)
end

kumo.time = time

support.rebuilders.time = function(pair) return make(Time, pair[1], pair[2]) end
support.rebuilders.time_delta = function(pair) return make(TimeDelta, pair[1], pair[2]) end
