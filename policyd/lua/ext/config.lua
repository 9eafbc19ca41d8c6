-- KumoMTA's configuration functions that mean nothing at reception here:
-- each accepts any arguments, does nothing and warns once (see
-- policyd/extensions/config.py). The make_* ones return an empty table so
-- the policy can go on to return it from its (ignored) event handler.
local kumo, host, support = ...

local find, sub = string.find, string.sub

for _, name in ipairs(host.names) do
  local dot = find(name, '.', 1, true)
  local module, fn = kumo, name
  if dot then
    module = kumo[sub(name, 1, dot - 1)]
    fn = sub(name, dot + 1)
  end
  module[fn] = function()
    host.warn(name, support.where(2))
    if sub(fn, 1, 5) == 'make_' then return {} end
  end
end

