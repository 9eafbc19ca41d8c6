-- kumo.regex_set_map.new([{pattern = value, ...}]): an immutable map from
-- regular expressions to values. map[subject] is the value of a pattern that
-- matches anywhere in subject, or nil; when several match, the one whose
-- pattern text sorts first answers (KumoMTA's pick among them varies from run
-- to run). Patterns are KumoMTA's syntax run on RE2 (ext/regex.lua); values
-- are stored and returned as copies (support.map_value, ext/domain_map.lua).
-- The host (policyd/extensions/regex_set_map.py) keeps the compiled set.
local kumo, host, support = ...

local format, type, next, error, tostring, setmetatable, pcall =
  string.format, type, next, error, tostring, setmetatable, pcall
local utf8_len = utf8.len

local maps = setmetatable({}, { __mode = 'k' })  -- map -> {set = host set, patterns, values}

local RegexSetMap = {}

function RegexSetMap.__index(self, subject)
  if type(subject) == 'number' then subject = tostring(subject) end
  if type(subject) ~= 'string' then
    error(format('kumo.regex_set_map: the subject must be a string, got %s', type(subject)), 2)
  end
  if not utf8_len(subject) then error('kumo.regex_set_map: the subject is not valid UTF-8', 2) end
  local state = maps[self]
  local index = host.lookup(state.set, subject)
  if index == nil then return nil end
  return support.map_value.fresh(state.values[index])
end

function RegexSetMap.__newindex()
  error('kumo.regex_set_map: a regex set map cannot be changed once made', 2)
end

-- The map as data: the {pattern = value} table it was made from.
RegexSetMap.__metatable = {
  __memoize = function(self)
    local state, out = maps[self], {}
    for i = 1, #state.patterns do out[state.patterns[i]] = support.map_value.fresh(state.values[i]) end
    return 'regex_set_map', out
  end,
}

local function new(mapping, level)
  local fn = 'kumo.regex_set_map.new'
  if mapping ~= nil and type(mapping) ~= 'table' then
    error(format('bad argument #1 to %s (table expected, got %s)', fn, type(mapping)), level)
  end
  local patterns, values, n = {}, {}, 0
  for pattern, value in next, mapping or {} do
    if type(pattern) == 'number' then pattern = tostring(pattern) end
    if type(pattern) ~= 'string' or not utf8_len(pattern) then
      error(format('%s: the keys must be patterns (UTF-8 strings), got %s', fn, type(pattern)), level)
    end
    local ok, stored = pcall(support.map_value.store, value, fn)
    if not ok then error(stored, level) end
    n = n + 1
    patterns[n], values[n] = pattern, stored
  end
  local set, err = host.make(patterns)
  if set == nil then error(fn .. ': ' .. err, level) end
  local self = setmetatable({}, RegexSetMap)
  maps[self] = { set = set, patterns = patterns, values = values }
  return self
end

kumo.regex_set_map = {
  new = function(mapping)
    local map = new(mapping, 3)  -- not a tail call: level 3 is the policy's line
    return map
  end,
}

support.rebuilders.regex_set_map = function(mapping) return new(mapping, 2) end
