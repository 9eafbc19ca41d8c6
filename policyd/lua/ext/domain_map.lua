-- kumo.domain_map.new([{key = value, ...}]): a map from domain names to
-- values where a key '*.example.com' answers for names below example.com
-- (not example.com itself), with KumoMTA's exact rules:
--   * keys are split on '.' and kept as a tree from the last label; a lookup
--     walks down the labels of the name it is given, and where a label has no
--     node of its own the '*' node beside it answers (or nothing does), so a
--     wildcard answers for any depth below it: '*.example.com' for
--     'a.b.example.com' too;
--   * a name whose own node exists answers with that node's value, even when
--     it has none: with keys 'a.b.example.com' and '*.example.com', a lookup of
--     'b.example.com' finds the node 'b' (made for the longer key) and gives
--     nil, and so does 'x.b.example.com' (no '*' beside 'x');
--   * keys and lookups compare labels exactly: case matters, as in KumoMTA.
-- map[name] looks up, map[key] = value adds or replaces (nil keeps the key
-- with no value). Values are stored as copies and every lookup returns a fresh
-- copy, as KumoMTA keeps them; maps, regexes and other memoizable objects are
-- stored as they are.
--
-- support.map_value (store, fresh) is that value handling for the other map
-- kinds (ext/cidr.lua, ext/regex_set_map.lua), which use it at run time.
local kumo, _, support = ...

local format, find, sub = string.format, string.find, string.sub
local type, next, error, tostring, setmetatable, getmetatable =
  type, next, error, tostring, setmetatable, getmetatable
local math_type = math.type

local NIL = {}  -- a stored nil: the key is kept, with no value

local function memoizable(value)
  local mt = getmetatable(value)
  return type(mt) == 'table' and mt.__memoize ~= nil
end

-- A value as a map keeps it: plain data copied (tables without their
-- metatables), memoizable objects as they are; errors name `fn`.
local function copy_in(value, fn, depth)
  local t = type(value)
  if t == 'string' or t == 'number' or t == 'boolean' then return value end
  if t ~= 'table' then error(format('%s: a %s value cannot be stored in a map', fn, t), 0) end
  if memoizable(value) then return value end
  if depth > 32 then error(fn .. ': the value is nested too deeply (or cyclic)', 0) end
  local out = {}
  for k, v in next, value do
    if type(k) ~= 'string' and math_type(k) ~= 'integer' then
      error(format('%s: the table key %s cannot be stored in a map (strings and integers only)',
        fn, tostring(k)), 0)
    end
    out[k] = copy_in(v, fn, depth + 1)
  end
  return out
end

local function copy_out(value)
  if type(value) ~= 'table' or getmetatable(value) ~= nil then return value end
  local out = {}
  for k, v in next, value do out[k] = copy_out(v) end
  return out
end

support.map_value = {
  store = function(value, fn)
    if value == nil then return NIL end
    return copy_in(value, fn, 0)
  end,
  fresh = function(stored)
    if stored == NIL then return nil end
    return copy_out(stored)
  end,
}
local store, fresh = support.map_value.store, support.map_value.fresh

-- The key of a map as KumoMTA reads it (a string; a number as its text).
local function key_text(fn, key, level)
  if type(key) == 'number' then return tostring(key) end
  if type(key) ~= 'string' then
    error(format('%s: the key must be a string, got %s', fn, type(key)), level + 1)
  end
  return key
end

local function labels(name)
  local out, pos = {}, 1
  while true do
    local dot = find(name, '.', pos, true)
    if not dot then
      out[#out + 1] = sub(name, pos)
      return out
    end
    out[#out + 1] = sub(name, pos, dot - 1)
    pos = dot + 1
  end
end

local maps = setmetatable({}, { __mode = 'k' })  -- map -> {tree = {}, entries = {}}

-- Tree nodes: {v = stored value or nil (no value), c = children by label}.
local function insert(state, key, stored)
  local parts, level = labels(key), state.tree
  for i = #parts, 1, -1 do
    local node = level[parts[i]]
    if not node then
      node = {}
      level[parts[i]] = node
    end
    if i == 1 then
      node.v = stored
    else
      node.c = node.c or {}
      level = node.c
    end
  end
  state.entries[key] = stored
end

local function lookup(state, name)
  local parts, level = labels(name), state.tree
  for i = #parts, 1, -1 do
    local node = level and level[parts[i]]
    if not node then
      local wild = level and level['*']
      return wild and wild.v
    end
    if i == 1 then return node.v end
    level = node.c
  end
end

local DomainMap = {}

function DomainMap.__index(self, name)
  local stored = lookup(maps[self], key_text('kumo.domain_map', name, 2))
  if stored == nil then return nil end
  return fresh(stored)
end

function DomainMap.__newindex(self, key, value)
  key = key_text('kumo.domain_map', key, 2)
  local ok, stored = pcall(store, value, 'kumo.domain_map')
  if not ok then error(stored, 2) end
  insert(maps[self], key, stored)
end

-- The map as data: {{key, value}, ...} ({key} for a key kept with no value).
DomainMap.__metatable = {
  __memoize = function(self)
    local out = {}
    for key, stored in next, maps[self].entries do out[#out + 1] = { key, fresh(stored) } end
    return 'domain_map', out
  end,
}

local function new_map()
  local self = setmetatable({}, DomainMap)
  maps[self] = { tree = {}, entries = {} }
  return self
end

kumo.domain_map = {}

function kumo.domain_map.new(mapping)
  if mapping ~= nil and type(mapping) ~= 'table' then
    error(format('bad argument #1 to kumo.domain_map.new (table expected, got %s)', type(mapping)), 2)
  end
  local self = new_map()
  for key, value in next, mapping or {} do
    key = key_text('kumo.domain_map.new', key, 2)
    local ok, stored = pcall(store, value, 'kumo.domain_map.new')
    if not ok then error(stored, 2) end
    insert(maps[self], key, stored)
  end
  return self
end

support.rebuilders.domain_map = function(entries)
  local self = new_map()
  for _, entry in next, entries do insert(maps[self], entry[1], store(entry[2])) end
  return self
end
