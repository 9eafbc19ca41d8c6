-- kumo.memoize(fn, {name, ttl, capacity, ...}): fn's results cached by its
-- arguments in the daemon process (policyd/extensions/memoize.py), shared by
-- every Lua state and revision of the process. Values cross as a tagged tree
-- (below), so tables come back as fresh copies and objects with __memoize
-- (maps, regexes, ...) are rebuilt by support.rebuilders.
local kumo, host, support = ...

local format, type, pairs, select, getmetatable, pcall, error, tostring =
  string.format, type, pairs, select, getmetatable, pcall, error, tostring
local binary = support.binary

-- A Lua value as a tree the host can keep: a string as binary(s), a number or
-- boolean as itself, a table as {'t', {{key, value}, ...}}, an object as
-- {'o', kind, data}, nil as {'n'}, and a key of several arguments as
-- {'a', {argument, ...}}.
local function encode(value, depth)
  local t = type(value)
  if t == 'string' then return binary(value) end
  if t == 'number' or t == 'boolean' then return value end
  if value == nil then return { 'n' } end
  if t ~= 'table' then error(format('a %s value cannot be memoized', t), 0) end
  if depth > 32 then error('the value is nested too deeply (or cyclic) to be memoized', 0) end
  local mt = getmetatable(value)
  local to_data = type(mt) == 'table' and mt.__memoize
  if to_data then
    local kind, data = to_data(value)
    return { 'o', kind, encode(data, depth + 1) }
  end
  local entries = {}
  for k, v in pairs(value) do entries[#entries + 1] = { encode(k, depth + 1), encode(v, depth + 1) } end
  return { 't', entries }
end

local function decode(tree)
  if type(tree) ~= 'table' then return tree end
  local tag = tree[1]
  if tag == 'n' then return nil end
  if tag == 'o' then
    local rebuild = support.rebuilders[tree[2]]
    if not rebuild then error('kumo.memoize: no way to rebuild a ' .. tostring(tree[2]), 0) end
    return rebuild(decode(tree[3]))
  end
  local out = {}
  for _, entry in pairs(tree[2]) do out[decode(entry[1])] = decode(entry[2]) end
  return out
end

-- The arguments as KumoMTA keys them: none as null, one as itself, several as a list.
local function key_of(...)
  local n = select('#', ...)
  if n == 1 then return encode((...), 0) end
  local list = {}
  for i = 1, n do list[i] = encode((select(i, ...)), 0) end
  return { 'a', list }
end

-- Results as KumoMTA returns them: none as nil, one as itself, several as a list.
local function result_of(n, ...)
  if n == 0 then return { 'n' } end
  if n == 1 then return encode((...), 0) end
  local entries = {}
  for i = 1, n do entries[i] = { i, encode((select(i, ...)), 0) } end
  return { 't', entries }
end

function kumo.memoize(fn, params)
  if type(fn) ~= 'function' then
    error('bad argument #1 to kumo.memoize (function expected)', 2)
  end
  local cache, err = host.define(params)
  if cache == nil then error('kumo.memoize: ' .. err, 2) end
  local name = params.name
  return function(...)
    local ok, key = pcall(key_of, ...)
    if not ok then error(format('kumo.memoize %s: %s', name, key), 2) end
    local found, value, failure = host.get(cache, key)
    if found then
      if failure then error(failure, 2) end
      return decode(value)
    end
    local results = table.pack(pcall(fn, ...))
    if not results[1] then
      local e = results[2]
      -- Verdicts (kumo.reject) and limits are not failures of the function.
      if type(e) ~= 'string' or support.exceeded() then error(e, 0) end
      host.fail(cache, key, support.utf8_safe(e))
      error(e, 0)
    end
    local stored
    ok, stored = pcall(result_of, results.n - 1, table.unpack(results, 2, results.n))
    if not ok then error(format('kumo.memoize %s: %s', name, stored), 2) end
    host.put(cache, key, stored)
    return decode(stored)
  end
end
