-- kumo.cidr.make_map([{key = value, ...}]): a map from IP addresses to values,
-- keyed by addresses and CIDR blocks ('10.0.0.0/24', '::1', 'any'); keys and
-- lookups may also be '[ip]', '[ip]:port' or 'ip:port' (conn_meta's
-- received_from), as in KumoMTA.
--   map[ip]          the value of the last-set key whose block holds ip (so a
--                    block set after a narrower one covers it, as KumoMTA's
--                    tree does); nil when none does or ip is no address
--   map[key] = v     sets a block (nil included: the block then answers nil)
-- The table given to make_map is applied broadest blocks first, so each
-- address gets its most specific key. The host (policyd/extensions/cidr.py)
-- keeps the keys; values stay here, stored and returned as copies
-- (support.map_value, ext/domain_map.lua).
local kumo, host, support = ...

local format, type, next, error, tostring, setmetatable, pcall =
  string.format, type, next, error, tostring, setmetatable, pcall
local utf8_len = utf8.len

local maps = setmetatable({}, { __mode = 'k' })  -- map -> {keys = host table, values = {}}

local function key_text(fn, key, level)
  if type(key) == 'number' then return tostring(key) end
  if type(key) ~= 'string' then
    error(format('%s: the key must be a string, got %s', fn, type(key)), level + 1)
  end
  return key
end

local function stored(fn, value, level)
  local ok, result = pcall(support.map_value.store, value, fn)
  if not ok then error(result, level + 1) end
  return result
end

local CidrMap = {}

function CidrMap.__index(self, ip)
  ip = key_text('kumo.cidr map', ip, 2)
  if not utf8_len(ip) then return nil end
  local state = maps[self]
  local slot = host.lookup(state.keys, ip)
  if slot == nil then return nil end
  return support.map_value.fresh(state.values[slot])
end

local function set(state, fn, key, value, level)
  key = key_text(fn, key, level + 1)
  if not utf8_len(key) then error(fn .. ': the key is not valid UTF-8', level + 1) end
  local slot, err = host.insert(state.keys, key)
  if slot == nil then error(fn .. ': ' .. err, level + 1) end
  state.values[slot] = stored(fn, value, level + 1)
end

function CidrMap.__newindex(self, key, value)
  set(maps[self], 'kumo.cidr map', key, value, 2)
end

-- The map as data: {{key, value}, ...} in the order the keys were set.
CidrMap.__metatable = {
  __memoize = function(self)
    local state, out = maps[self], {}
    for i, entry in next, host.entries(state.keys) do
      out[i] = { entry[1], support.map_value.fresh(state.values[entry[2]]) }
    end
    return 'cidr_map', out
  end,
}

local function wrap(keys)
  local self = setmetatable({}, CidrMap)
  maps[self] = { keys = keys, values = {} }
  return self
end

kumo.cidr = {}

function kumo.cidr.make_map(mapping)
  local fn = 'kumo.cidr.make_map'
  if mapping ~= nil and type(mapping) ~= 'table' then
    error(format('bad argument #1 to %s (table expected, got %s)', fn, type(mapping)), 2)
  end
  local keys, values, n = {}, {}, 0
  for key, value in next, mapping or {} do
    key = key_text(fn, key, 2)
    if not utf8_len(key) then error(fn .. ': a key is not valid UTF-8', 2) end
    n = n + 1
    keys[n], values[n] = key, stored(fn, value, 2)
  end
  local table_, order = host.make(keys)
  if table_ == nil then error(fn .. ': ' .. order, 2) end
  local self = wrap(table_)
  local state = maps[self]
  for i = 1, #order do state.values[order[i][2]] = values[order[i][1]] end
  return self
end

support.rebuilders.cidr_map = function(entries)
  local self = wrap((host.make({})))
  for i = 1, #entries do set(maps[self], 'kumo.cidr map', entries[i][1], entries[i][2], 1) end
  return self
end
