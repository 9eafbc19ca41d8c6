-- kumo.digest: ALGO(...) for sha1, sha224, sha256, sha384, sha512, sha512_256,
-- sha3_256, sha3_384, sha3_512 and crc32 digests its arguments (strings as
-- bytes, other values as their JSON text); hmac_ALGO(KEY, MSG) for sha1,
-- sha224, sha256, sha384, sha512 (KEY: {key_data = '...'} or a key file of
-- the policy directory). Each returns KumoMTA's BinaryResult: fields bytes,
-- hex, base32, base32_nopad, base32hex, base32hex_nopad, base64, base64_nopad,
-- base64url, base64url_nopad; tostring() gives hex. policyd/extensions/digest.py.
local kumo, host, support = ...

local format, type, tostring, error, select, setmetatable =
  string.format, type, tostring, error, select, setmetatable
local binary = support.binary

local Result = {
  __tostring = function(self) return self.hex end,
  __metatable = {
    __memoize = function(self) return 'digest', self.hex end,
  },
}

local function result(fields)
  return setmetatable(fields, Result)
end

local digest = {}

local function define(name)
  local fn = 'kumo.digest.' .. name
  digest[name] = function(...)
    local n, parts = select('#', ...), { ... }
    for i = 1, n do
      if type(parts[i]) == 'string' then parts[i] = binary(parts[i]) end
    end
    local fields, err = host.digest(name, parts, n)
    if err ~= nil then error(format('%s: %s', fn, err), 2) end
    return result(fields)
  end
end

for _, name in ipairs({ 'sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'sha512_256',
                        'sha3_256', 'sha3_384', 'sha3_512', 'crc32' }) do
  define(name)
end

-- A KeySource as the host takes it: 'data', the key's bytes, or 'path', a file.
local function key_source(fn, key)
  if type(key) == 'string' then return 'path', key end
  if type(key) == 'table' and type(key.key_data) == 'string' then
    return 'data', binary(key.key_data)
  end
  if type(key) == 'table' and (key.vault_path ~= nil or key.vault_mount ~= nil) then
    error(format('%s: vault key sources are not supported here', fn), 3)
  end
  error(format("bad argument #1 to %s (KeySource expected: {key_data = '...'} or a key file's path)",
    fn), 3)
end

support.key_source = key_source  -- for kumo.dkim's signers

for _, name in ipairs({ 'sha1', 'sha224', 'sha256', 'sha384', 'sha512' }) do
  local fn, sign = 'kumo.digest.hmac_' .. name, host['hmac_' .. name]
  digest['hmac_' .. name] = function(key, msg)
    if type(msg) == 'number' then msg = tostring(msg) end
    if type(msg) ~= 'string' then
      error(format('bad argument #2 to %s (string expected, got %s)', fn, type(msg)), 2)
    end
    local kind, secret = key_source(fn, key)
    local fields, err = sign(kind, secret, binary(msg))
    if err ~= nil then error(format('%s: %s', fn, err), 2) end
    return result(fields)
  end
end

kumo.digest = digest

-- A memoized digest comes back from its hex text.
local hex_decode
support.rebuilders.digest = function(hex)
  hex_decode = hex_decode or kumo.encode.hex_decode
  local fields = host.rebuild(binary(hex_decode(hex)))
  return result(fields)
end
