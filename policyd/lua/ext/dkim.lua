-- kumo.dkim.rsa_sha256_signer{...} and ed25519_signer{...}: signers with
-- KumoMTA's parameters, checked (and their key loaded) when made; msg:dkim_sign
-- (ext/message.lua) asks one to sign: policyd/extensions/dkim.py.
local kumo, host, support = ...

local format, setmetatable, type = string.format, setmetatable, type
local dkim = {}
kumo.dkim = dkim

local Signer = { __metatable = false }
Signer.__index = Signer

local function make(kind, fn)
  return function(params)
    if type(params) ~= 'table' then
      error(format('bad argument #1 to kumo.dkim.%s (table expected, got %s)', fn, type(params)), 2)
    end
    local source, value = support.key_source('kumo.dkim.' .. fn, params.key)
    local ok, err = host.check(kind, params, source, value)
    if not ok then error(format('kumo.dkim.%s: %s', fn, err), 2) end
    return setmetatable({ kind = kind, params = params, source = source, value = value }, Signer)
  end
end

dkim.rsa_sha256_signer = make('rsa', 'rsa_sha256_signer')
dkim.ed25519_signer = make('ed25519', 'ed25519_signer')

-- The DKIM-Signature value for a message (binary() data), folded by the host.
function Signer:sign_data(data)
  local value, err = host.sign(self.kind, self.params, self.source, self.value, data)
  if value == nil then error('msg:dkim_sign: ' .. err, 3) end
  return value
end

-- The ARC set sealing this hop, as {name, value} pairs (ext/message.lua's
-- msg:arc_seal prepends them).
function Signer:arc_seal_data(data, serv_id, results)
  local pairs_, err = host.arc_seal(self.kind, self.params, self.source, self.value, data,
    serv_id, results)
  if pairs_ == nil then error('msg:arc_seal: ' .. err, 3) end
  return pairs_
end

function dkim.set_signing_threads() end  -- KumoMTA's thread pool setting: nothing to set here

