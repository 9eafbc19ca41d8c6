-- The envelope addresses and the message object of data-phase events:
-- plain Lua over the event's arguments; address headers (msg:from_header and
-- friends) are parsed by the host (policyd/extensions/message.py).
-- support.address(text) and support.new_message(args, conn_meta) are what
-- kumo.lua's event arguments use.
local kumo, host, support = ...

local format, sub, find, match, gsub, lower, byte =
  string.format, string.sub, string.find, string.match, string.gsub, string.lower, string.byte
local concat, insert = table.concat, table.insert
local utf8_len = utf8.len
local new_meta, binary = support.new_meta, support.binary

-- Envelope addresses ---------------------------------------------------------

local Address = { __metatable = false }
Address.__index = Address
Address.__tostring = function(a) return a.email end

local function address(text)
  local user, domain = match(text, '^(.*)@([^@]*)$')
  if not user then user, domain = text, '' end
  return setmetatable({ user = user, domain = domain, email = text }, Address)
end

-- The message object -------------------------------------

local Message = { __metatable = false }
Message.__index = Message

local HEADER_NAME = '^[!-9;-~]+$'

-- Splits the header section into fields (each with its line endings and
-- continuation lines) and the rest (the blank line and the body). The edge
-- applies header changes by the same rules (policy/v1/headers.py).
local function split_headers(data)
  local fields, pos, len = {}, 1, #data
  while pos <= len do
    local eol = find(data, '\n', pos, true) or len
    local line = sub(data, pos, eol)
    if line == '\r\n' or line == '\n' then break end
    local first = byte(line, 1)
    if (first == 32 or first == 9) and #fields > 0 then
      fields[#fields].raw = fields[#fields].raw .. line
    else
      fields[#fields + 1] = { name = match(line, '^([^:]*):'), raw = line }
    end
    pos = eol + 1
  end
  return fields, sub(data, pos)
end

-- A field's value unfolded, its RFC 2047 encoded words decoded to UTF-8 (by
-- the host, only when there are any); a value that does not decode is
-- returned raw, as KumoMTA does.
local function field_value(field)
  local value = match(field.raw, '^[^:]*:(.*)$')
  value = gsub(gsub(value, '\r?\n([ \t])', '%1'), '\r?\n$', '')
  value = gsub(value, '^[ \t]+', '')
  if find(value, '=?', 1, true) and utf8_len(value) then return host.decoded(value) end
  return value
end

local function same_name(a, b)
  return a ~= nil and lower(a) == lower(b)
end

local function new_message(args, conn)
  args.recipients = args.recipients or {}
  return setmetatable({ args = args, meta = new_meta('msg', nil, args.msg_meta, conn),
                        changes = {} }, Message)
end

function Message:fields()
  if not self._fields then
    self._fields, self._rest = split_headers(self.args.data)
  end
  return self._fields
end

function Message:id() return self.args.message_id end
function Message:sender() return address(self.args.sender) end

function Message:recipient_list()
  local out = {}
  for i, r in ipairs(self.args.recipients) do out[i] = address(r) end
  return out
end

function Message:recipient()
  local list = self:recipient_list()
  if #list == 1 then return list[1] end
  return list
end

-- msg:set_sender(ADDRESS) and msg:set_recipient(ADDRESS or a list of them):
-- an EnvelopeAddress or its text. The verdict carries the new envelope; the
-- edge checks it again before an upstream sees it.
local function envelope_address(method, given, null_ok)
  local value = support.address_text(given)
  if value == nil then
    error(format('msg:%s: expected an address (a string or an EnvelopeAddress), got %s',
      method, type(given)), 3)
  end
  if value == '' and null_ok then return value end
  if not utf8_len(value) or find(value, '[%c%s<>]') or not match(value, '^[^@].*@[^@]+$') then
    error(format('msg:%s: %q is not an envelope address (local@domain)', method, value), 3)
  end
  return value
end

local function set_envelope(self, key, value)
  self.args[key] = value
  self.envelope = self.envelope or {}
  self.envelope[key] = value
end

function Message:set_sender(value)
  set_envelope(self, 'sender', envelope_address('set_sender', value, true))
end

function Message:set_recipient(value)
  local list = {}
  if type(value) == 'table' and rawget(value, 'email') == nil then
    for i, v in ipairs(value) do list[i] = envelope_address('set_recipient', v) end
    if #list == 0 then error('msg:set_recipient: the list of recipients is empty', 2) end
  else
    list[1] = envelope_address('set_recipient', value)
  end
  set_envelope(self, 'recipients', list)
end

function Message:get_meta(name) return self.meta:get_meta(name) end
function Message:set_meta(name, value) return self.meta:set_meta(name, value) end

function Message:get_data()
  if not self._fields then return self.args.data end
  local parts = {}
  for i, f in ipairs(self._fields) do parts[i] = f.raw end
  parts[#parts + 1] = self._rest
  return concat(parts)
end

function Message:get_first_named_header_value(name)
  for _, f in ipairs(self:fields()) do
    if same_name(f.name, name) then return field_value(f) end
  end
  return nil
end

function Message:get_all_named_header_values(name)
  local out = {}
  for _, f in ipairs(self:fields()) do
    if same_name(f.name, name) then out[#out + 1] = field_value(f) end
  end
  return out
end

function Message:get_all_headers()
  local out = {}
  for _, f in ipairs(self:fields()) do
    if f.name then out[#out + 1] = { f.name, field_value(f) } end
  end
  return out
end

local function check_header(method, name, value)
  if type(name) ~= 'string' or not match(name, HEADER_NAME) then
    error(format('msg:%s: invalid header name %s', method, tostring(name)), 3)
  end
  if value ~= nil then
    if type(value) ~= 'string' and type(value) ~= 'number' then
      error(format('msg:%s(%q): value must be a string', method, name), 3)
    end
    value = tostring(value)
    if not utf8_len(value) then
      error(format('msg:%s(%q): value must be valid UTF-8', method, name), 3)
    end
    if find(value, '[\r\n]') then
      error(format('msg:%s(%q): value must not contain CR or LF', method, name), 3)
    end
  end
  return value
end

-- The value a new field gets: as given, or with ENCODE folded and RFC 2047
-- encoded by the host (folds are CRLF and a space: still one field).
local function new_value(method, name, value, encode)
  value = check_header(method, name, value)
  if encode ~= nil and type(encode) ~= 'boolean' then
    error(format('msg:%s(%q): encode must be a boolean', method, name), 3)
  end
  if encode then return host.encoded(name, value) end
  return value
end

-- A new field, checked by new_value or built by the host, at the top
-- ('prepend') or the end ('append'), and recorded for the edge.
local function add_field(self, op, name, value)
  local fields, field = self:fields(), { name = name, raw = name .. ': ' .. value .. '\r\n' }
  if op == 'prepend' then insert(fields, 1, field) else fields[#fields + 1] = field end
  self.changes[#self.changes + 1] = { op, name, value }
end

function Message:prepend_header(name, value, encode)
  add_field(self, 'prepend', name, new_value('prepend_header', name, value, encode))
end

function Message:append_header(name, value, encode)
  add_field(self, 'append', name, new_value('append_header', name, value, encode))
end

-- msg:dkim_verify(opt_resolver): an AuthenticationResult for each DKIM
-- signature, verified by the host (policyd/mailauth/dkim.py) with keys from
-- the daemon's resolver; a resolver name is accepted, the daemon's answers.
local function verified(self, method, resolver)
  if resolver ~= nil and type(resolver) ~= 'string' then
    error(format('msg:%s: the resolver name must be a string, got %s', method, type(resolver)), 3)
  end
  return (support.call_host(gsub(method, '_', '.'), false, binary(self:get_data())))
end

function Message:dkim_verify(resolver) return (verified(self, 'dkim_verify', resolver)) end

-- msg:arc_verify(opt_resolver): the ARC chain's AuthenticationResult (none,
-- pass, fail), validated by the host (policyd/mailauth/arc.py).
function Message:arc_verify(resolver) return (verified(self, 'arc_verify', resolver)) end

-- msg:arc_seal(signer, server_id, results, opt_resolver): the chain verified
-- first (a broken one is left as it is, as KumoMTA does), then this hop's ARC
-- set, sealed over results and the chain's status, prepended.
function Message:arc_seal(signer, serv_id, results, resolver)
  if type(signer) ~= 'table' or type(signer.arc_seal_data) ~= 'function' then
    error('msg:arc_seal: expected a kumo.dkim signer', 2)
  end
  if type(results) ~= 'table' then
    error(format('msg:arc_seal: results must be a list, got %s', type(results)), 2)
  end
  local chain = self:arc_verify(resolver)
  if chain.result == 'fail' then return end
  local all = {}
  for i, r in ipairs(results) do all[i] = r end
  all[#all + 1] = chain
  local set = signer:arc_seal_data(binary(self:get_data()), serv_id, all)
  for i = #set, 1, -1 do add_field(self, 'prepend', set[i][1], set[i][2]) end
end

-- msg:dkim_sign(signer): a DKIM-Signature prepended, made by a kumo.dkim
-- signer over the message as it stands (ext/dkim.lua).
function Message:dkim_sign(signer)
  if type(signer) ~= 'table' or type(signer.sign_data) ~= 'function' then
    error('msg:dkim_sign: expected a kumo.dkim signer', 2)
  end
  add_field(self, 'prepend', 'DKIM-Signature', signer:sign_data(binary(self:get_data())))
end

-- msg:add_authentication_results(server_id, results): an Authentication-Results
-- field prepended, built and folded by the host (policyd/mailauth/results.py),
-- so no value can start a field of its own.
function Message:add_authentication_results(serv_id, results)
  if type(results) ~= 'table' then
    error(format('msg:add_authentication_results: results must be a list, got %s',
      type(results)), 2)
  end
  local value, err = host.auth_results(serv_id, results)
  if value == nil then error('msg:add_authentication_results: ' .. err, 2) end
  add_field(self, 'prepend', 'Authentication-Results', value)
end

-- Drops the fields for which drop(field) is true, recording one removal per
-- name (the edge removes by name too: policy/v1/headers.py).
local function drop_fields(self, drop)
  local kept, removed = {}, {}
  for _, f in ipairs(self:fields()) do
    if drop(f) then
      local key = lower(f.name)
      if not removed[key] then
        removed[key] = true
        self.changes[#self.changes + 1] = { 'remove', f.name, '' }
      end
    else
      kept[#kept + 1] = f
    end
  end
  self._fields = kept
end

function Message:remove_all_named_headers(name)
  check_header('remove_all_named_headers', name)
  drop_fields(self, function(f) return same_name(f.name, name) end)
end

function Message:set_data(data)
  if type(data) ~= 'string' then
    error(format('msg:set_data: data must be a string, got %s', type(data)), 2)
  end
  self.args.data, self._fields, self._rest = data, nil, nil
  self.replaced_data = true  -- the verdict carries the whole message
end

-- msg:check_fix_conformance(CHECKS, FIXES, OPT_SETTINGS): the host finds the
-- issues and fixes them (policyd/conformance.py); a fixed message replaces the
-- data as set_data does. A message without a Message-ID gets <id@sender-domain>.
function Message:check_fix_conformance(check, fix, settings)
  if type(check) ~= 'string' or type(fix) ~= 'string' then
    error('msg:check_fix_conformance: CHECKS and FIXES must be strings of flags joined by |', 2)
  end
  if settings ~= nil and type(settings) ~= 'table' then
    error(format('msg:check_fix_conformance: OPT_SETTINGS must be a table, got %s',
      type(settings)), 2)
  end
  local domain = self:sender().domain
  local id = self:id() .. '@' .. (domain ~= '' and domain or 'localhost')
  local data, problem, err = host.check_fix(binary(self:get_data()), check, fix, settings, id)
  if err ~= nil then error('msg:check_fix_conformance: ' .. err, 2) end
  if data ~= nil then self:set_data(data) end
  return problem
end

local function is_x(name) return name ~= nil and lower(sub(name, 1, 2)) == 'x-' end

-- The names given (a list of strings), as a set of lower-case names; nil when
-- none was given.
local function name_set(method, names)
  if names == nil then return nil end
  if type(names) ~= 'table' then
    error(format('msg:%s: names must be a list of header names, got %s', method, type(names)), 3)
  end
  local set = {}
  for _, name in ipairs(names) do
    check_header(method, name)
    set[lower(name)] = true
  end
  return set
end

local function wanted(set, name)
  if set then return name ~= nil and set[lower(name)] == true end
  return is_x(name)
end

function Message:import_x_headers(names)
  local set = name_set('import_x_headers', names)
  for _, f in ipairs(self:fields()) do
    if wanted(set, f.name) then
      self:set_meta((gsub(lower(f.name), '-', '_')), field_value(f))
    end
  end
end

function Message:remove_x_headers(names)
  local set = name_set('remove_x_headers', names)
  drop_fields(self, function(f) return wanted(set, f.name) end)
end

-- msg:import_headers(SPECS): each spec names a header or a prefix ('X-*'),
-- which instance to capture (first, last, all), how the meta key is derived
-- from the header's name (or a fixed target) and whether to remove what
-- matched; the first spec matching a header wins.
local MODES = { first = true, last = true, all = true }
local function camel(name)
  return (gsub(lower(name), '%-(%a?)', string.upper))
end
local TRANSFORMS = {
  snake_case = function(name) return (gsub(lower(name), '-', '_')) end,
  kebab_case = lower,
  camel_case = camel,
  pascal_case = function(name)
    local c = camel(name)
    return sub(c, 1, 1):upper() .. sub(c, 2)
  end,
}

local function compile_spec(i, spec)
  local function bad(text, ...)
    error(format('msg:import_headers: spec %d: ' .. text, i, ...), 4)
  end
  if type(spec) ~= 'table' then bad('expected a table, got %s', type(spec)) end
  local name = spec.name
  if type(name) ~= 'string' or name == '' then bad('name must be a non-empty string') end
  local prefix = match(name, '^([^*]+)%*$')
  if not prefix and find(name, '*', 1, true) then
    bad('only a single trailing * is supported in pattern %q (not a bare *)', name)
  end
  local mode, transform = spec.match or 'last', spec.transform or 'snake_case'
  if not MODES[mode] then bad('match must be first, last or all, not %s', tostring(mode)) end
  if not TRANSFORMS[transform] then
    bad('transform must be snake_case, kebab_case, camel_case or pascal_case, not %s',
      tostring(transform))
  end
  if spec.target ~= nil and (prefix or type(spec.target) ~= 'string') then
    bad('target must be a string, and cannot be used with a wildcard pattern')
  end
  if spec.remove ~= nil and type(spec.remove) ~= 'boolean' then bad('remove must be a boolean') end
  local literal = lower(prefix or name)
  return {
    mode = mode, remove = spec.remove == true, captured = {}, order = {},
    matches = function(field)
      if prefix then return lower(sub(field, 1, #literal)) == literal end
      return lower(field) == literal
    end,
    key = function(field) return spec.target or TRANSFORMS[transform](field) end,
  }
end

local function capture(spec, key, value)
  local seen = spec.captured[key]
  if seen == nil then spec.order[#spec.order + 1] = key end
  if spec.mode == 'all' then
    seen = seen or {}
    seen[#seen + 1] = value
    spec.captured[key] = seen
  elseif spec.mode == 'last' or seen == nil then
    spec.captured[key] = value
  end
end

function Message:import_headers(specs)
  if type(specs) ~= 'table' then
    error(format('msg:import_headers: expected a list of specs, got %s', type(specs)), 2)
  end
  local compiled = {}
  for i, spec in ipairs(specs) do compiled[i] = compile_spec(i, spec) end
  drop_fields(self, function(f)
    if not f.name then return false end
    for _, spec in ipairs(compiled) do
      if spec.matches(f.name) then
        capture(spec, spec.key(f.name), field_value(f))
        return spec.remove
      end
    end
    return false
  end)
  for _, spec in ipairs(compiled) do
    for _, key in ipairs(spec.order) do self:set_meta(key, spec.captured[key]) end
  end
end

-- Address headers ------------------------------------------------------------

local Entry = { __metatable = false, __tostring = function(e) return e.json end }
Entry.__index = Entry

local SINGLE = { name = true, email = true, user = true, domain = true }
local AddressHeader = { __metatable = false }
AddressHeader.__tostring = function(h) return h.json end
AddressHeader.__index = function(h, key)
  if not SINGLE[key] then return nil end
  local list = rawget(h, 'list')
  if #list ~= 1 then
    error(format('addressheader.%s: the header holds %d addresses, not a single one; use .list',
      key, #list), 2)
  end
  return list[1][key]
end

function Message:get_address_header(name)
  check_header('get_address_header', name)
  local value = self:get_first_named_header_value(name)
  if value == nil then return nil end
  if not utf8_len(value) then
    error(format('msg:get_address_header(%q): the header is not valid UTF-8', name), 2)
  end
  local parsed, err = host.addresses(value)
  if err ~= nil then error(format('msg:get_address_header(%q): %s', name, err), 2) end
  local list = {}
  for i, entry in ipairs(parsed.list) do list[i] = setmetatable(entry, Entry) end
  return setmetatable({ list = list, json = parsed.json }, AddressHeader)
end

function Message:from_header() return self:get_address_header('From') end
function Message:to_header() return self:get_address_header('To') end

support.address, support.new_message = address, new_message
