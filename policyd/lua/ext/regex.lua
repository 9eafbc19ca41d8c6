-- kumo.regex.compile(pattern) and kumo.regex.escape(text): KumoMTA's regular
-- expressions, run on RE2 by the host (policyd/extensions/regex.py), so every
-- search takes linear time; patterns that need backtracking (look-around,
-- backreferences) are refused when compiled.
--
-- A compiled regex is an empty Lua table: the host's object for it is kept in
-- a private table with weak keys, so policies never reach it and it goes when
-- the regex does. Methods, as KumoMTA documents them:
--   re:is_match(s)           true if the regex matches anywhere in s
--   re:find(s)               the first match as a string, or nil
--   re:find_all(s)           array of the successive non-overlapping matches
--   re:captures(s)           nil, or the first match's groups: [0] the whole
--                            match, [n] group n, [name] named groups (groups
--                            that took no part are absent)
--   re:replace(s, rep)       the first match replaced ($1, $name, ${name}, $$)
--   re:replace_all(s, rep)   every match replaced
--   re:replacen(s, n, rep)   the first n matches replaced (0: all)
--   re:split(s)              array of the pieces between matches
-- Strings must be UTF-8, as in KumoMTA.
local kumo, host, support = ...

local format, sub, match = string.format, string.sub, string.match
local type, setmetatable, error, tostring = type, setmetatable, error, tostring
local utf8_len, tointeger = utf8.len, math.tointeger

local compiled = setmetatable({}, { __mode = 'k' })  -- regex -> the host's object
local patterns = setmetatable({}, { __mode = 'k' })  -- regex -> its pattern

-- The string argument #i of fn (numbers as KumoMTA converts them), or an
-- error at `level` above the caller.
local function text(fn, i, value, level)
  level = (level or 2) + 1
  if type(value) == 'number' then value = tostring(value) end
  if type(value) ~= 'string' then
    error(format('bad argument #%d to %s (string expected, got %s)', i, fn, type(value)), level)
  end
  if not utf8_len(value) then error(format('%s: argument #%d is not valid UTF-8', fn, i), level) end
  return value
end

local function object(fn, self, level)
  local re = compiled[self]
  if re == nil then
    error(format('%s: call it as a method, re:%s(...)', fn, match(fn, '[%w_]+$')), (level or 2) + 1)
  end
  return re
end

local Regex = {}
local methods = {}
Regex.__index = methods
Regex.__metatable = {
  __memoize = function(self) return 'regex', patterns[self] end,
}

local function define(name, host_fn)
  local fn = 'regex:' .. name
  methods[name] = function(self, haystack)
    local re = object(fn, self)
    return host_fn(re, text(fn, 1, haystack))
  end
end

define('is_match', host.is_match)
define('find', host.find)
define('captures', host.captures)

-- Methods that iterate over matches: the host stops them at the evaluation's
-- deadline (a long subject can hold very many matches).
local function iterating(name, host_fn)
  local fn = 'regex:' .. name
  methods[name] = function(self, haystack)
    local re = object(fn, self)
    local out, err = host_fn(re, text(fn, 1, haystack), support.remaining())
    if out == nil then error(fn .. ': ' .. err, 2) end
    return out
  end
end

iterating('find_all', host.find_all)
iterating('split', host.split)

-- (the replacement is argument #2 of replace and replace_all, #3 of replacen)
local function replacen(fn, self, haystack, limit, replacement, arg)
  local re = object(fn, self, 3)
  haystack, replacement = text(fn, 1, haystack, 3), text(fn, arg, replacement, 3)
  local out, err = host.replacen(re, haystack, limit, replacement, support.remaining())
  if out == nil then error(fn .. ': ' .. err, 3) end
  return out
end

function methods:replace(haystack, replacement)
  local out = replacen('regex:replace', self, haystack, 1, replacement, 2)
  return out
end

function methods:replace_all(haystack, replacement)
  local out = replacen('regex:replace_all', self, haystack, 0, replacement, 2)
  return out
end

function methods:replacen(haystack, limit, replacement)
  local n = tointeger(limit)
  if n == nil or n < 0 then
    error(format('bad argument #2 to regex:replacen (non-negative integer expected, got %s)',
      tostring(limit)), 2)
  end
  local out = replacen('regex:replacen', self, haystack, n, replacement, 3)
  return out
end

local function compile(pattern, level)
  pattern = text('kumo.regex.compile', 1, pattern, level)
  local re, err = host.compile(pattern)
  if re == nil then
    local shown = #pattern > 200 and (sub(pattern, 1, 200) .. '...') or pattern
    error(format('kumo.regex.compile(%q): %s', shown, err), level)
  end
  local self = setmetatable({}, Regex)
  compiled[self], patterns[self] = re, pattern
  return self
end

kumo.regex = {
  compile = function(pattern)
    local re = compile(pattern, 3)  -- not a tail call: level 3 is the policy's line
    return re
  end,
  escape = function(s) return host.escape(text('kumo.regex.escape', 1, s)) end,
}

support.rebuilders.regex = function(pattern) return compile(pattern, 2) end
