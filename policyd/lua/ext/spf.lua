-- kumo.spf: SPF checks (RFC 7208) through the daemon's resolver
-- (policyd/mailauth/spf.py), returning KumoMTA's shape: the disposition and
-- an AuthenticationResult for msg:add_authentication_results. A resolver name
-- is accepted; the daemon's resolver (--dns-server) answers.
local kumo, _, support = ...

local format, match, type = string.format, string.match, type
local spf = {}
kumo.spf = spf

local function ip_of(peer)
  return match(peer, '^%[(.*)%]:%d+$') or match(peer, '^(.*):%d+$') or peer
end

local function checked(fn, i, value, kind, optional)
  if (value == nil and optional) or type(value) == kind then return end
  error(format('bad argument #%d to kumo.spf.%s (%s expected, got %s)', i, fn, kind,
    type(value)), 3)
end

local function check(meta, domain, sender, helo)
  local peer = meta:get_meta('received_from')
  if type(peer) ~= 'string' then error('kumo.spf: received_from missing from metadata', 3) end
  local disposition, context = support.call_host('spf.check_host', false, domain, ip_of(peer),
    sender or '', helo or '', meta:get_meta('hostname') or '')
  local props = {}
  if sender ~= nil then props['smtp.mailfrom'] = sender end
  if helo ~= nil then props['smtp.helo'] = helo end
  return { disposition = disposition,
           result = { method = 'spf', result = disposition, reason = context, props = props } }
end

-- check_host(domain, conn_meta, opt_sender, opt_resolver): with a sender, the
-- MAIL FROM identity (helo from conn_meta); without, the HELO identity.
function spf.check_host(domain, conn_meta, sender, resolver)
  checked('check_host', 1, domain, 'string')
  checked('check_host', 2, conn_meta, 'table')
  checked('check_host', 3, sender, 'string', true)
  checked('check_host', 4, resolver, 'string', true)
  local helo = domain
  if sender ~= nil then helo = conn_meta:get_meta('ehlo_domain') end
  return check(conn_meta, domain, sender, helo)
end

-- check_msg(msg, opt_resolver): the message's envelope sender (for the null
-- sender, the HELO identity, as RFC 7208 section 2.4 says).
function spf.check_msg(msg, resolver)
  checked('check_msg', 1, msg, 'table')
  checked('check_msg', 2, resolver, 'string', true)
  local sender, helo = msg:sender(), msg:get_meta('ehlo_domain')
  local domain = sender.domain
  if sender.email == '' then domain = helo or '' end
  return check(msg, domain, sender.email, helo)
end
