-- kumo.start_esmtp_listener{...} (while the policy loads, in init),
-- kumo.make_listener_domain{...}, and KumoMTA's relaying rule as a screen
-- before smtp_server_rcpt_to: see policyd/extensions/listener.py.
local kumo, host, support = ...

local format, type, setmetatable, error = string.format, type, setmetatable, error

function kumo.start_esmtp_listener(params)
  if not support.loading() then
    error('kumo.start_esmtp_listener can only be called while the policy loads (in init)', 2)
  end
  local ok, err = host.start(params)
  if not ok then error('kumo.start_esmtp_listener: ' .. err, 2) end
end

local Domain = { __metatable = false }
Domain.__index = Domain

function kumo.make_listener_domain(params)
  local fields, err = host.domain(params)
  if fields == nil then error('kumo.make_listener_domain: ' .. err, 2) end
  return setmetatable(fields, Domain)
end

local function domain_of(address)
  return support.address(address).domain
end

-- get_listener_domain's answer for one domain, checked as make_listener_domain
-- checks its parameters (a handler may return a plain table).
local function lookup(domain, via, conn)
  local handler = support.handler('get_listener_domain')
  if handler == nil then return nil end
  local result = handler(domain, via, conn)
  if result == nil then return nil end
  if type(result) ~= 'table' then
    error(format('get_listener_domain returned a %s for %q; expected kumo.make_listener_domain{...} or nil',
      type(result), domain), 0)
  end
  return kumo.make_listener_domain(result)
end

-- What smtp_server_get_dynamic_parameters returned, checked by the host with
-- its `via` block for this connection's local address applied (nil: none).
function support.dynamic_parameters(result, conn)
  if result == nil then return nil end
  if type(result) ~= 'table' then
    return nil, 'smtp_server_get_dynamic_parameters must return a table of listener '
      .. 'parameters or nil, got ' .. type(result)
  end
  return host.dynamic_parameters(result, conn:get_meta('received_via'))
end

support.screens.smtp_server_rcpt_to = {
  active = function() return host.enforced() or support.handler('get_listener_domain') ~= nil end,
  check = function(args, conn)
    local peer, via = conn:get_meta('received_from'), conn:get_meta('received_via')
    local allowed = host.relay_host(via, peer)
    local from = lookup(domain_of(args.sender or ''), via, conn)
    local to = lookup(domain_of(args.recipient), via, conn)
    if allowed or (from and host.relay_from(from.relay_from, peer)) or (to and to.relay_to) then
      return
    end
    kumo.reject(550, '5.7.1 relaying not permitted for ' .. peer)
  end,
}
