-- kumo.make_throttle(name, spec): throttles counted in the host (in memory,
-- or shared through Redis; see policyd/throttle.py).
local kumo, host, support = ...

local format, setmetatable, type = string.format, setmetatable, type

local Throttle = { __metatable = false }
Throttle.__index = Throttle

function kumo.make_throttle(name, spec)
  if type(name) ~= 'string' or type(spec) ~= 'string' then
    error('kumo.make_throttle(name, spec): name and spec must be strings', 2)
  end
  local limit, period, max_burst, is_local = host.spec(spec)
  if limit == nil then
    error(format("kumo.make_throttle('%s', '%s'): %s", name, spec, period), 2)
  end
  return setmetatable({ name = name, spec = spec, limit = limit, period = period,
                        max_burst = max_burst, is_local = is_local }, Throttle)
end

-- Counts one use. Returns KumoMTA's {throttled, limit, remaining, reset_after,
-- retry_after}, the durations as {secs, nanos}.
function Throttle:throttle()
  return support.call_host('throttle', true, self.name, self.limit, self.period, self.max_burst,
                           self.is_local)
end

-- Waits until a use is allowed (true when it had to wait), as KumoMTA does; a
-- wait that would run past the evaluation's deadline is not started: the
-- command is refused with 451 instead, so the client retries later.
function Throttle:sleep_if_throttled()
  local waited = false
  while true do
    local result = self:throttle()
    local retry = result.retry_after
    if retry == nil then return waited end
    local delay = retry.secs + retry.nanos / 1e9
    local left = support.remaining()
    if left ~= nil and delay >= left then
      kumo.reject(451, format('4.4.5 rate limited, try again in %d seconds', retry.secs))
    end
    kumo.sleep(delay)
    waited = true
  end
end

-- The spec in words: its burst and overall rates (KumoMTA's text).
function Throttle:explain()
  return host.explain(self.limit, self.period, self.max_burst, self.is_local)
end
