-- kumo.serde: JSON, TOML and YAML (policyd/extensions/serde.py converts, as
-- KumoMTA does: a table with #t > 0 is an array, any other an object; null
-- becomes nil). KumoMTA's deprecated names on kumo itself (json_* and toml_*,
-- no yaml) are the same functions under their own names.
--   FORMAT_parse(text)          the Lua value of the text
--   FORMAT_load(path)           the same for a file of the policy directory
--                               (relative, or under /opt/kumomta/etc/policy/);
--                               the file becomes part of the policy's revision
--   FORMAT_encode(value)        the text of a value
--   json_encode_pretty(value), toml_encode_pretty(value)
local kumo, host, support = ...

local format, type, tostring, error = string.format, type, tostring, error
local utf8_len = utf8.len

local function text(fn, value)
  if type(value) == 'number' then value = tostring(value) end
  if type(value) ~= 'string' then
    error(format('bad argument #1 to %s (string expected, got %s)', fn, type(value)), 3)
  end
  if not utf8_len(value) then error(format('%s: the text is not valid UTF-8', fn), 3) end
  return value
end

local function parser(fn, host_fn)
  return function(s)
    local value, err = host_fn(text(fn, s))
    if err ~= nil then error(format('%s: %s', fn, err), 2) end
    return value
  end
end

local function loader(fn, host_fn)
  return function(path)
    local value, err = host_fn(text(fn, path))
    if err ~= nil then error(format('%s(%q): %s', fn, path, err), 2) end
    return value
  end
end

local function encoder(fn, host_fn)
  return function(value)
    local out, err = host_fn(value)
    if err ~= nil then error(format('%s: %s', fn, err), 2) end
    return out
  end
end

local MAKERS = { parse = parser, load = loader, encode = encoder, encode_pretty = encoder }
local FUNCTIONS = {
  json = { 'parse', 'load', 'encode', 'encode_pretty' },
  toml = { 'parse', 'load', 'encode', 'encode_pretty' },
  yaml = { 'parse', 'load', 'encode' },
}

local serde = {}
for fmt, kinds in pairs(FUNCTIONS) do
  for _, kind in ipairs(kinds) do
    local name = fmt .. '_' .. kind
    serde[name] = MAKERS[kind]('kumo.serde.' .. name, host[name])
    if fmt ~= 'yaml' then kumo[name] = MAKERS[kind]('kumo.' .. name, host[name]) end
  end
end
kumo.serde = serde
