-- The `kumo` module policies are written against (a subset of KumoMTA's
-- inbound API), and the evaluation entry points the host calls: `start` runs
-- an event's handler in a new coroutine, `resume` continues one that waits
-- for a host call. Everything a handler touches (conn_meta, addresses, the
-- message) is plain Lua, so no Python object is ever handed to policy code.
local sandbox, limits, host = ...

local json_decode, warn = host.json_decode, host.warn
local utf8_safe = sandbox.utf8_safe

-- Trusted code never uses method calls on strings: policies can change the
-- string table that string methods resolve to.
local format, sub, find, match, gsub, lower, byte =
  string.format, string.sub, string.find, string.match, string.gsub, string.lower, string.byte
local concat, insert, sort = table.concat, table.insert, table.sort
local utf8_len, math_type, tointeger, huge = utf8.len, math.type, math.tointeger, math.huge
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local getinfo, traceback = debug.getinfo, debug.traceback

local kumo = {}
local handlers = {}   -- event -> function
local origin = {}     -- event -> "file:line" of its registration
local warned = {}
local IMPLEMENTED = {}  -- event -> true: the host's events, each with its Lua side below

local MODES = { ForceDisconnect = true, FollowWith421 = true, If421 = true }

-- Events of the daemon itself rather than of an edge: run as the policy loads
-- (pre_init, any number of handlers, then init) or from within an edge
-- event's evaluation (get_listener_domain, by ext/listener.lua).
local INTERNAL = { pre_init = 'many', init = 'one', get_listener_domain = 'one' }
local pre_init = {}
local in_init = false

-- Handler registration ----------------------------------------------------

function kumo.on(event, fn)
  if not sandbox.loading() then
    error('kumo.on can only be called while the policy loads, not from a handler', 2)
  end
  if in_init then
    error('kumo.on cannot be called from the init or pre_init event; register handlers at the top level', 2)
  end
  if type(event) ~= 'string' then
    error('bad argument #1 to kumo.on (event name expected)', 2)
  end
  if type(fn) ~= 'function' then
    error(format("bad argument #2 to kumo.on for '%s' (function expected)", event), 2)
  end
  if INTERNAL[event] == 'many' then
    pre_init[#pre_init + 1] = fn
    return
  end
  local single = sub(event, 1, 12) == 'smtp_server_' or INTERNAL[event] == 'one'
  if single and origin[event] then
    error(format("kumo.on: '%s' already has a handler, registered at %s", event, origin[event]), 2)
  end
  if single then origin[event] = limits.where(2) end
  if IMPLEMENTED[event] or INTERNAL[event] then
    handlers[event] = fn
  elseif not warned[event] then
    warned[event] = true
    warn(format("%s: event '%s' is not supported by this service; its handler is ignored",
      limits.where(2), event))
  end
end

-- Rejections: a Lua error carrying a structured verdict ---------------------

local Rejection = { __metatable = false }
local REJECTION = {}  -- private key: only kumo.reject/disconnect can make one

local function raise(action, code, text, mode)
  local n = tointeger(tonumber(code))
  if n == nil or n < 400 or n > 599 then
    error(format('kumo.%s: code must be an integer from 400 to 599, got %s', action, tostring(code)), 3)
  end
  -- As KumoMTA's (code: u16, message: String): the message is a string or a
  -- number, never absent; codes are narrowed to 4xx and 5xx, since a reply of
  -- any other class would tell the client the opposite of a refusal.
  if type(text) == 'number' then
    text = tostring(text)
  elseif type(text) ~= 'string' then
    error(format('kumo.%s: message must be a string, got %s', action, type(text)), 3)
  end
  error(setmetatable({ [REJECTION] = true, action = action, code = n, text = text, mode = mode },
                     Rejection), 0)
end

function kumo.reject(code, message)
  raise('reject', code, message, 'If421')
end

function kumo.disconnect(code, message, mode)
  if mode == nil then
    mode = 'ForceDisconnect'
  elseif not MODES[mode] then
    error(format("kumo.disconnect: mode must be 'ForceDisconnect', 'FollowWith421' or 'If421', got %s",
      type(mode) == 'string' and ("'" .. mode .. "'") or tostring(mode)), 2)
  end
  raise('disconnect', code, message, mode)
end

-- Asynchronous host calls -----------------------------------------------------

function kumo.sleep(seconds)
  if type(seconds) ~= 'number' or seconds < 0 or seconds ~= seconds then
    error('bad argument #1 to kumo.sleep (non-negative number expected)', 2)
  end
  limits.call_host('sleep', false, seconds)
end

-- Throttles (kumo.make_throttle) are in ext/throttle.lua.

function kumo.configure_redis_throttles(params)
  if not sandbox.loading() then
    error('kumo.configure_redis_throttles can only be called while the policy loads', 2)
  end
  local err = host.configure_redis(params)
  if err then error('kumo.configure_redis_throttles: ' .. err, 2) end
end

-- DNS (kumo.dns): looked up asynchronously by the host, cached for the TTL ---

local dns = {}
kumo.dns = dns

local function strings(fn, ...)
  local args = { ... }
  for i = 1, select('#', ...) do
    if type(args[i]) ~= 'string' then
      error(format('bad argument #%d to kumo.dns.%s (string expected, got %s)', i, fn,
                   type(args[i])), 3)
    end
  end
end

-- lookup_addr(name): array of the IPv4 and IPv6 addresses; NXDOMAIN is an error.
-- lookup_mx(domain): {by_pref = {[pref] = {host, ...}}, hosts = {...}, domain_name,
--   site_name, is_mx, is_secure, is_domain_literal}; NXDOMAIN is an error.
-- lookup_txt(name): array of the TXT records' texts; NXDOMAIN is an error.
-- lookup_ptr(ip): array of the names an IP address points to (may be empty).
for _, fn in ipairs({ 'lookup_addr', 'lookup_mx', 'lookup_txt', 'lookup_ptr' }) do
  local host_fn = 'dns.' .. fn
  dns[fn] = function(arg)
    strings(fn, arg)
    return (limits.call_host(host_fn, false, arg))
  end
end

-- The listing's address and its TXT text, or nil, nil when not listed.
-- IP may be 'ip:port' (conn_meta's received_from).
function dns.rbl_lookup(ip, base_domain)
  strings('rbl_lookup', ip, base_domain)
  local answer, txt = limits.call_host('dns.rbl_lookup', false, ip, base_domain)
  return answer, txt
end

local function reversed(fn, ip)
  if type(ip) ~= 'string' then
    error(format('bad argument #1 to kumo.dns.%s (string expected, got %s)', fn, type(ip)), 3)
  end
  local name, suffix = host.reverse_ip(ip)
  if name == nil then error(format('kumo.dns.%s(%q): %s', fn, ip, suffix), 3) end
  return name, suffix
end

function dns.reverse_ip(ip) return (reversed('reverse_ip', ip)) end

function dns.ptr_host(ip)
  local name, suffix = reversed('ptr_host', ip)
  return name .. '.' .. suffix
end

-- JSON encoding of metadata values (checked when set, so an error points at
-- the policy line that stored the bad value) --------------------------------

local ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function escape(c)
  return ESCAPES[c] or format('\\u%04x', byte(c))
end

local function quote(s)
  if not utf8_len(s) then error('metadata strings must be valid UTF-8', 0) end
  return '"' .. gsub(s, '[%c"\\]', escape) .. '"'
end

local function encode(value, depth)
  local t = type(value)
  if value == nil then
    return 'null'
  elseif t == 'boolean' then
    return tostring(value)
  elseif t == 'string' then
    return quote(value)
  elseif t == 'number' then
    if math_type(value) == 'integer' then return format('%d', value) end
    if value ~= value or value == huge or value == -huge then
      error('metadata numbers must be finite', 0)
    end
    local s = format('%.14g', value)
    if tonumber(s) ~= value then s = format('%.17g', value) end
    if not find(s, '[%.eEn]') then s = s .. '.0' end
    return s
  elseif t == 'table' then
    if depth > 32 then error('metadata value is nested too deeply (or cyclic)', 0) end
    local n, count = #value, 0
    for _ in pairs(value) do count = count + 1 end
    local parts = {}
    if count == n and n > 0 then
      for i = 1, n do parts[i] = encode(value[i], depth + 1) end
      return '[' .. concat(parts, ',') .. ']'
    end
    for k, v in pairs(value) do
      if type(k) ~= 'string' then
        error('metadata tables must be arrays or have only string keys', 0)
      end
      parts[#parts + 1] = quote(k) .. ':' .. encode(v, depth + 1)
    end
    sort(parts)
    return '{' .. concat(parts, ',') .. '}'
  end
  error(format('cannot store a %s value in metadata', t), 0)
end

local function encode_meta(kind, name, value)
  if type(name) ~= 'string' then
    error(format('bad argument #1 to %s:set_meta (string expected)', kind), 3)
  end
  local ok, text = pcall(encode, value, 0)
  if not ok then error(format('%s:set_meta(%q): %s', kind, name, text), 3) end
  return text
end

-- Metadata: a layered view. Values set in this evaluation win over values set
-- earlier in the session (JSON texts from the edge, decoded on first read),
-- which win over the predefined keys. -------------------------------------

local Meta = { __metatable = false }
Meta.__index = Meta

local NULL = {}

local function new_meta(kind, fixed, raw, parent)
  return setmetatable({ kind = kind, fixed = fixed, raw = raw, parent = parent,
                        values = {}, changed = nil }, Meta)
end

function Meta:get_meta(name)
  local v = self.values[name]
  if v == nil then
    local text = self.raw and self.raw[name]
    if text ~= nil then
      v = json_decode(text)
      if v == nil then v = NULL end
    elseif self.parent then
      return self.parent:get_meta(name)
    else
      v = self.fixed[name]
      if v == nil then return nil end
    end
    self.values[name] = v
  end
  if v == NULL then return nil end
  return v
end

-- conn_meta:auth_info(): a copy of the session's AuthInfo in KumoMTA's shape
-- (identities, groups, peer_address); empty lists before AUTH.
function Meta:auth_info()
  local auth, out = self.auth and json_decode(self.auth) or {}, { identities = {}, groups = {} }
  for i, ident in ipairs(auth.identities or {}) do
    out.identities[i] = { identity = ident.identity, context = ident.context }
  end
  for i, group in ipairs(auth.groups or {}) do out.groups[i] = group end
  local from = self.fixed and self.fixed.received_from
  out.peer_address = from and (match(from, '^%[(.*)%]:%d+$') or match(from, '^(.*):%d+$'))
  return out
end

function Meta:set_meta(name, value)
  local text = encode_meta(self.kind, name, value)
  self.changed = self.changed or {}
  self.changed[name] = text
  if value == nil then value = NULL end
  self.values[name] = value
end

-- Evaluation ------------------------------------------------------------------

local function on_error(err)
  if type(err) == 'table' and rawget(err, REJECTION) then return err end
  if type(err) ~= 'string' then
    err = format('(error object is a %s value)', type(err))
  end
  return traceback(err, 2)
end

-- An EHLO handler may return an array of strings to replace the extensions.
local function extension_list(value)
  if type(value) ~= 'table' then return nil end
  for i = 1, #value do
    if type(value[i]) ~= 'string' or not utf8_len(value[i]) then
      return nil, format('smtp_server_ehlo handler returned an extension that is not a UTF-8 string: %s',
        tostring(value[i]))
    end
  end
  return value
end

-- What smtp_server_auth_plain returned, when it is KumoMTA's AuthInfo table
-- rather than a boolean: the identities as KumoMTA reconciles them (authn: the
-- SmtpAuthPlainAuthentication one, else the first; authz: the
-- SmtpAuthPlainAuthorization one, else authn).
local CONTEXTS = {
  SmtpAuthPlainAuthorization = true, SmtpAuthPlainAuthentication = true, HttpBasicAuth = true,
  BearerToken = true, ProxyAuthRfc1929 = true, LocalSystem = true, GenericAuth = true,
}

local function auth_info(value)
  if type(value) ~= 'table' then return nil end
  local identities = value.identities
  if type(identities) ~= 'table' or identities[1] == nil then
    return nil, 'smtp_server_auth_plain returned an AuthInfo with an empty identities list, '
      .. 'which is not supported'
  end
  local by_context = {}
  for i, ident in ipairs(identities) do
    if type(ident) ~= 'table' or type(ident.identity) ~= 'string' or not CONTEXTS[ident.context] then
      return nil, format('smtp_server_auth_plain returned an AuthInfo whose identities[%d] is not '
        .. '{ identity = STRING, context = KNOWN_CONTEXT }', i)
    end
    by_context[ident.context] = by_context[ident.context] or ident.identity
  end
  local groups = value.groups or {}
  if type(groups) ~= 'table' then
    return nil, 'smtp_server_auth_plain returned an AuthInfo whose groups is not a list'
  end
  local names = {}
  for i, group in ipairs(groups) do
    if type(group) ~= 'string' then
      return nil, format('smtp_server_auth_plain returned an AuthInfo whose groups[%d] is not a '
        .. 'string', i)
    end
    names[i] = group
  end
  local listed = {}
  for i, ident in ipairs(identities) do
    listed[i] = { identity = ident.identity, context = ident.context }
  end
  local authn = by_context.SmtpAuthPlainAuthentication or identities[1].identity
  return { authn = authn, authz = by_context.SmtpAuthPlainAuthorization or authn,
           identities = listed, groups = names }
end

-- What smtp_server_split_transaction returned, as an array of arrays of
-- address texts (nil: let batch_handling decide). KumoMTA's own example returns
-- batches keyed by domain, so any table of batches is taken, keys in order.
local function address_text(value)
  if type(value) == 'string' then return value end
  if type(value) == 'table' and type(value.email) == 'string' then return value.email end
end

local function batch_list(value)
  if value == nil then return nil end
  local problem = 'smtp_server_split_transaction handler must return nil or a table of '
    .. 'lists of addresses, got '
  if type(value) ~= 'table' then return nil, problem .. type(value) end
  local keys = {}
  for key in pairs(value) do keys[#keys + 1] = key end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == 'number' or type(a) == 'string') then return a < b end
    return type(a) == 'number'
  end)
  local out = {}
  for i, key in ipairs(keys) do
    local batch = value[key]
    if type(batch) ~= 'table' then return nil, problem .. 'a batch that is a ' .. type(batch) end
    local texts = {}
    for j, address in ipairs(batch) do
      texts[j] = address_text(address)
      if not texts[j] or not utf8_len(texts[j]) or find(texts[j], '[%c ]') then
        return nil, problem .. 'an address ' .. tostring(address)
      end
    end
    out[i] = texts
  end
  return out
end

-- The Lua side of each event in the host's event table (policy/events.py):
-- the handler's arguments, made from the event's arguments and conn_meta,
-- after the message object of data-phase events (nil for the others). The
-- host leaves out empty lists, so a list the handler gets defaults to {}.
local support = {}  -- shared with the extensions; filled in at the end

local function message_arguments(args, conn)
  local msg = support.new_message(args, conn)
  return msg, msg, conn
end

local ARGUMENTS = {
  smtp_server_connection_accepted = function(_, conn) return nil, conn end,
  smtp_server_ehlo = function(args, conn)
    if args.helo then return nil, args.domain, conn end
    return nil, args.domain, conn, args.extensions or {}
  end,
  smtp_server_auth_plain = function(args, conn)
    -- As KumoMTA: an empty authorization identity means the authentication one.
    local authz = args.authz
    if authz == nil or authz == '' then authz = args.authc end
    return nil, authz, args.authc, args.password, conn
  end,
  smtp_server_mail_from = function(args, conn) return nil, support.address(args.sender), conn end,
  smtp_server_rcpt_to = function(args, conn) return nil, support.address(args.recipient), conn end,
  smtp_server_data = message_arguments,
  smtp_server_split_transaction = message_arguments,
  smtp_server_message_received = message_arguments,
  smtp_server_get_dynamic_parameters = function(args, conn) return nil, args.listener, conn end,
  smtp_server_rewrite_response = function(args, conn)
    local command = args.command
    if command == '' then command = nil end
    return nil, args.status, args.response, command, conn
  end,
}

for _, event in ipairs(host.events) do
  if not ARGUMENTS[event] then error('kumo.lua has no Lua side for the event ' .. event) end
  IMPLEMENTED[event] = true
end

-- Lua strings reach Python as UTF-8 text, so bytes that may not be UTF-8
-- (message data, digests) cross as `binary(s)`: every byte of 128 or more as
-- the character of that code point, which the host turns back into the same
-- bytes (policyd.extensions.from_binary).
local BINARY = {}
for b = 128, 255 do BINARY[string.char(b)] = utf8.char(b) end
local function binary(s) return (gsub(s, '[\128-\255]', BINARY)) end

-- The body of an evaluation's coroutine: runs the handler and returns what it
-- decided: the string 'continue' when that is all, else a table with named
-- fields (only those that apply are set): action ('continue', 'reject',
-- 'disconnect' or 'error'), code, text, mode, error, meta (conn_meta changes),
-- headers (header changes), extensions (a replaced EHLO list), auth (the AUTH
-- answer), auth_info (the identities of an AuthInfo it returned), batches
-- (smtp_server_split_transaction's recipient lists),
-- msg_meta (message meta changes), response (smtp_server_rewrite_response's
-- status and text), listener (smtp_server_get_dynamic_parameters's checked
-- parameters), data (the whole message, as
-- binary(), when a handler set msg.replaced_data: then headers is nil, as
-- the data has its changes), envelope (what msg:set_sender and
-- msg:set_recipient set: sender, recipients).
local function call(handler, msg, ...)
  local ok, result, second = xpcall(handler, on_error, ...)
  return ok, result, msg, second
end

-- What smtp_server_rewrite_response returned: a new status (an SMTP code) and
-- text (lines separated by "\n"), each nil to keep the reply's own.
local REWRITE = 'smtp_server_rewrite_response'
local function rewritten(status, text)
  if status ~= nil then
    status = math.tointeger(status)
    if status == nil or status < 200 or status > 599 then
      return nil, REWRITE .. ' handler must return an SMTP status from 200 to 599, or nil'
    end
  end
  if text ~= nil then
    if type(text) ~= 'string' or not utf8.len(text) then
      return nil, REWRITE .. ' handler must return the response as a UTF-8 string, or nil'
    end
    text = gsub(text, '\r\n', '\n')
    if find(text, '[\0-\9\11-\31\127]') then
      return nil, REWRITE .. ' handler returned a response with control characters'
    end
  end
  if status == nil and text == nil then return nil end
  return { status = status, text = text }
end

-- An extension's screen for an event runs before its handler (if any) and
-- refuses by kumo.reject, e.g. the relaying check before smtp_server_rcpt_to.
local function screened(screen, handler, args, conn)
  return function(...)
    screen(args, conn)
    if handler then return handler(...) end
  end
end

local function run(event, fixed, raw, args, auth)
  local conn = new_meta('conn_meta', fixed, raw)
  conn.auth = auth
  local handler, screen = handlers[event], support.screens[event]
  if screen and screen.active() then handler = screened(screen.check, handler, args, conn) end
  local ok, result, msg, second = call(handler, ARGUMENTS[event](args, conn))
  local headers = msg and not msg.replaced_data and #msg.changes > 0 and msg.changes or nil
  local msg_meta = msg and msg.meta.changed or nil
  local data = msg and msg.replaced_data and binary(msg:get_data()) or nil
  local envelope = msg and msg.envelope or nil
  if ok then
    local extensions, batches, identities, response, listener, err
    if event == REWRITE then response, err = rewritten(result, second) end
    if event == 'smtp_server_get_dynamic_parameters' then
      listener, err = support.dynamic_parameters(result, conn)
    end
    if event == 'smtp_server_ehlo' then extensions, err = extension_list(result) end
    if event == 'smtp_server_split_transaction' then batches, err = batch_list(result) end
    if event == 'smtp_server_auth_plain' then identities, err = auth_info(result) end
    if err then return { action = 'error', error = err } end
    local granted = result == true or identities ~= nil
    if not (conn.changed or headers or extensions or granted or msg_meta or data
            or batches or envelope or response or listener) then
      return 'continue'  -- the common outcome, as a string: no table to build and read back
    end
    return { action = 'continue', meta = conn.changed, headers = headers,
             extensions = extensions, auth = granted, auth_info = identities,
             msg_meta = msg_meta, data = data, batches = batches, envelope = envelope,
             response = response, listener = listener }
  end
  if type(result) == 'table' and event == REWRITE then
    return { action = 'error', error = REWRITE .. ': kumo.reject and kumo.disconnect do not '
      .. 'apply here; the reply is sent as it was' }
  end
  if type(result) == 'table' then
    return { action = result.action, code = result.code, text = result.text, mode = result.mode,
             meta = conn.changed, headers = headers, msg_meta = msg_meta }
  end
  return { action = 'error', error = tostring(result) }
end

-- An error message as the host reports it: UTF-8, and located at the
-- handler's registration when Lua gave it no location (e.g. out of memory).
local function located(event, message)
  if not find(message, '^[^\n]-:%d+:') then
    message = (origin[event] or '?') .. ': ' .. event .. ' handler: ' .. message
  end
  return utf8_safe(message)
end

-- Reports where an evaluation stands after (re)starting its coroutine:
--   'call', name, where, args...   it waits for a host call
--   'done', outcome                it ended (outcome as `run` returns it, and
--                                  `exceeded` naming a limit it hit)
local function report(co, ctx, event, ok, first, ...)
  if ok and co_status(co) == 'suspended' then
    if first == limits.BRIDGE then return 'call', ... end
    ok, first = false, 'coroutine.yield called outside a coroutine'
  end
  if ctx.exceeded then
    return 'done', { action = 'error', exceeded = ctx.exceeded,
                     error = located(event, limits.failure(ctx)) }
  end
  if not ok then
    return 'done', { action = 'error', error = located(event, tostring(first)) }
  end
  if first == 'continue' then return 'done', first end
  if first.action == 'error' then
    first.error = located(event, first.error)
  elseif first.text then
    first.text = utf8_safe(first.text)
  end
  return 'done', first
end

local evaluation = {}

-- Starts an evaluation of `event` with its handler in a new coroutine, under
-- `seconds` of wall clock (what is left of the evaluation's `limit`) and
-- `budget` instructions (`slice` when inline).
function evaluation.start(event, fixed, raw, args, auth, seconds, limit, budget, slice)
  local ctx = limits.context(seconds, limit, budget, slice)
  local co = limits.attach(co_create(run), ctx)
  return co, ctx, report(co, ctx, event, co_resume(co, event, fixed, raw, args, auth))
end

-- Continues an evaluation with the outcome of its host call.
function evaluation.resume(co, ctx, event, ok, ...)
  return report(co, ctx, event, co_resume(co, ok, ...))
end

-- The edge events the host must ask about: those with a handler or an active screen.
function evaluation.handled_events()
  local out = {}
  for event in pairs(IMPLEMENTED) do
    local screen = support.screens[event]
    if handlers[event] or (screen and screen.active()) then out[#out + 1] = event end
  end
  sort(out)
  return out
end

-- Runs the pre_init handlers in the order registered, then init, each under
-- the load limits. Returns nil, or the first error.
function evaluation.run_init(seconds, budget)
  in_init = true
  local all = { table.unpack(pre_init) }
  all[#all + 1] = handlers.init
  for _, fn in ipairs(all) do
    local err = sandbox.run_loading(fn, seconds, budget)
    if err ~= nil then return err end
  end
  return nil
end

-- For each handler: its file, its lines with code, and those the coverage
-- hook saw run (policyctl test).
function evaluation.coverage()
  local seen = limits.coverage() or {}
  local out = {}
  for event, fn in pairs(handlers) do
    local info = getinfo(fn, 'SL')
    local lines, run = {}, {}
    for line in pairs(info.activelines or {}) do
      lines[#lines + 1] = line
      if seen[info.source] and seen[info.source][line] then run[#run + 1] = line end
    end
    sort(lines)
    sort(run)
    out[#out + 1] = { event = event, source = sub(info.source, 2), first = info.linedefined,
                      last = info.lastlinedefined, lines = lines, run = run }
  end
  return out
end

evaluation.finish_loading = sandbox.finish_loading

-- Whether this service provides a name a policy refers to (policyctl check):
-- kind 'kumo' (a dotted path under kumo), 'msg' or 'conn_meta' (a method),
-- or 'event'.
function evaluation.provides(kind, name)
  if kind == 'event' then return IMPLEMENTED[name] or INTERNAL[name] ~= nil end
  local value
  if kind == 'kumo' then
    value = kumo
    for part in string.gmatch(name, '[^.]+') do
      if type(value) ~= 'table' then return false end
      value = value[part]
    end
  elseif kind == 'msg' then
    value = support.new_message({ data = '', recipients = {} }, new_meta('conn_meta', {}))[name]
  else
    value = new_meta('conn_meta', {})[name]
  end
  return value ~= nil
end

-- What the extensions (lua/ext/*.lua, policyd/extensions) are given beside
-- `kumo`: where(level) names the policy line, call_host(name, side_effects,
-- ...) waits for an asynchronous host function, loading() is true while the
-- policy loads, utf8_safe(s) makes a string fit to cross to the host, and
-- remaining() is the seconds left before the evaluation's deadline,
-- rebuilders[kind](data) makes a memoized object again from the data its
-- metatable's __memoize(self) returned as `kind, data`.

-- new_meta(kind, fixed, raw, parent) makes a metadata object (ext/message.lua
-- makes the message's); ext/message.lua sets support.address(text) and
-- support.new_message(args, conn_meta), which the event arguments use.
evaluation.kumo = kumo
support.where, support.call_host, support.loading = limits.where, limits.call_host, sandbox.loading
support.utf8_safe, support.new_meta, support.rebuilders = utf8_safe, new_meta, {}
-- screens[event] = {active = fn, check = fn(args, conn_meta)}: see `run`;
-- handler(event) is the policy's handler for an event, if any.
support.screens = {}
function support.handler(event) return handlers[event] end
support.binary, support.remaining = binary, limits.remaining
-- address_text(v) is an address's text (a string, or a table's .email), else nil;
-- ext/listener.lua sets dynamic_parameters(result, conn_meta).
support.address_text = address_text
-- exceeded() is the limit the running evaluation hit, if any (its errors are
-- not the policy's own and must not be caught and kept).
function support.exceeded()
  local ctx = limits.context_of(coroutine.running())
  return ctx and ctx.exceeded
end
evaluation.support = support

sandbox.provide('kumo', kumo)

return evaluation
