-- kumo.uuid: new_v1(), new_v4(), new_v6(), new_v7() and parse(text) return
-- KumoMTA's Uuid object: fields hyphenated, simple, braced, urn and bytes;
-- tostring() gives the hyphenated form. policyd/extensions/uuid.py.
local kumo, host, support = ...

local format, sub, type, error, setmetatable =
  string.format, string.sub, type, error, setmetatable

local Uuid = {
  __tostring = function(self) return self.hyphenated end,
  __metatable = {
    __memoize = function(self) return 'uuid', self.hyphenated end,
  },
}

local function parse(text, level)
  if type(text) ~= 'string' then
    error(format('bad argument #1 to kumo.uuid.parse (string expected, got %s)', type(text)), level)
  end
  local fields, err = host.parse(text)
  if err ~= nil then
    error(format('kumo.uuid.parse(%q): %s', #text > 100 and sub(text, 1, 100) .. '...' or text, err),
      level)
  end
  return setmetatable(fields, Uuid)
end

local uuid = {
  parse = function(text)
    local u = parse(text, 3)
    return u
  end,
}
for _, version in ipairs({ 'v1', 'v4', 'v6', 'v7' }) do
  local make = host['new_' .. version]
  uuid['new_' .. version] = function() return setmetatable(make(), Uuid) end
end
kumo.uuid = uuid

support.rebuilders.uuid = function(text) return parse(text, 2) end
