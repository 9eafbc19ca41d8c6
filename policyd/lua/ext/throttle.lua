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

-- Counts one use. Returns {throttled, limit, remaining, reset_after, retry_after}.
function Throttle:throttle()
  return support.call_host('throttle', true, self.name, self.limit, self.period, self.max_burst,
                           self.is_local)
end
