-- kumo.encode: NAME_encode(bytes) -> text and NAME_decode(text) -> bytes for
-- base32, base32_nopad, base32hex, base32hex_nopad, base64, base64_nopad,
-- base64url, base64url_nopad and hex (policyd/extensions/encode.py), and
-- charset_decode(CHARSET, bytes) -> UTF-8 text,
-- charset_encode(CHARSET, utf8_text, ignore_errors = true) -> bytes.
-- Bytes may be anything; they cross to the host as support.binary.
local kumo, host, support = ...

local format, type, tostring, error = string.format, type, tostring, error
local utf8_len = utf8.len
local binary = support.binary

local encode = {}

for _, name in ipairs({ 'base32', 'base32_nopad', 'base32hex', 'base32hex_nopad', 'base64',
                        'base64_nopad', 'base64url', 'base64url_nopad', 'hex' }) do
  local encoder, decoder = host[name .. '_encode'], host[name .. '_decode']
  local encode_fn, decode_fn = 'kumo.encode.' .. name .. '_encode', 'kumo.encode.' .. name .. '_decode'
  encode[name .. '_encode'] = function(s)
    if type(s) ~= 'string' then
      error(format('%s: parameter must be a string, got %s', encode_fn, type(s)), 2)
    end
    return encoder(binary(s))
  end
  encode[name .. '_decode'] = function(s)
    if type(s) == 'number' then s = tostring(s) end
    if type(s) ~= 'string' then
      error(format('bad argument #1 to %s (string expected, got %s)', decode_fn, type(s)), 2)
    end
    local out, err = decoder(binary(s))
    if err ~= nil then error(format('%s: %s', decode_fn, err), 2) end
    return out
  end
end

local function charset_args(fn, charset, s)
  if type(charset) ~= 'string' then
    error(format('bad argument #1 to %s (charset name expected, got %s)', fn, type(charset)), 3)
  end
  if type(s) == 'number' then s = tostring(s) end
  if type(s) ~= 'string' then
    error(format('bad argument #2 to %s (string expected, got %s)', fn, type(s)), 3)
  end
  return s
end

function encode.charset_decode(charset, s)
  s = charset_args('kumo.encode.charset_decode', charset, s)
  local out, err = host.charset_decode(charset, binary(s))
  if err ~= nil then error('kumo.encode.charset_decode: ' .. err, 2) end
  return out
end

function encode.charset_encode(charset, s, ignore_errors)
  s = charset_args('kumo.encode.charset_encode', charset, s)
  if not utf8_len(s) then error('kumo.encode.charset_encode: the input is not valid UTF-8', 2) end
  local out, err = host.charset_encode(charset, s, ignore_errors ~= false)
  if err ~= nil then error('kumo.encode.charset_encode: ' .. err, 2) end
  return out
end

kumo.encode = encode
