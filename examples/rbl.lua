-- An inbound policy built on DNS, as a mail exchanger facing the internet
-- would run it:
--   * a client listed on a DNS block list is refused instead of the banner;
--   * a client whose address has no reverse name that points back to it
--     (forward-confirmed reverse DNS) may not send unless it authenticated;
--   * a sender domain that does not exist is refused.
-- A DNS failure never refuses mail: the check that failed is skipped. Give
-- policyd an --eval-timeout (and the edges a --policy-timeout) that leaves
-- room for DNS, e.g. 1 s and 2 s.
local kumo = require 'kumo'

-- The lists to consult: a commercial feed, or zones a local rbldnsd serves.
-- (Public resolvers are refused by some lists; use your own resolver.)
local RBL_ZONES = { 'zen.spamhaus.org' }
-- What a list answers for a listed address; other answers (Spamhaus's
-- 127.255.255.x error codes, for instance) do not mean "listed".
local function listed(answer) return answer:match('^127%.0%.0%.%d+$') ~= nil end

local function peer_ip(conn_meta)
  return conn_meta:get_meta('received_from'):match('^%[?(.-)%]?:%d+$')
end

-- The client's verified name, 'unverified' (a reverse name that does not
-- point back), 'unknown' (no reverse name), or nil when DNS failed.
local function client_name(ip)
  local ok, names = pcall(kumo.dns.lookup_ptr, ip)
  if not ok then return nil end
  if #names == 0 then return 'unknown' end
  for _, name in ipairs(names) do
    local found, addresses = pcall(kumo.dns.lookup_addr, name)
    if found then
      for _, address in ipairs(addresses) do
        if address == ip then return name end
      end
    end
  end
  return 'unverified'
end

kumo.on('smtp_server_connection_accepted', function(conn_meta)
  local ip = peer_ip(conn_meta)
  for _, zone in ipairs(RBL_ZONES) do
    local ok, answer, reason = pcall(kumo.dns.rbl_lookup, ip, zone)
    if ok and answer and listed(answer) then
      kumo.disconnect(554, ('5.7.1 Service unavailable; client [%s] blocked using %s%s')
        :format(ip, zone, reason and ('; ' .. reason) or ''))
    end
  end
  local name = client_name(ip)
  if name then conn_meta:set_meta('x_client_name', name) end
end)

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  local name = conn_meta:get_meta('x_client_name')
  if (name == 'unknown' or name == 'unverified') and not conn_meta:get_meta('authn_id') then
    kumo.reject(450, ('4.7.25 Client host rejected: cannot find your hostname, [%s]')
      :format(peer_ip(conn_meta)))
  end
  if sender.domain ~= '' then
    local ok, err = pcall(kumo.dns.lookup_mx, sender.domain)
    if not ok and err:find('NXDOMAIN$') then
      kumo.reject(550, ('5.1.8 <%s>: Sender address rejected: Domain not found')
        :format(tostring(sender)))
    end
  end
end)
