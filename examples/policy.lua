-- An example inbound policy. It is written against KumoMTA's `kumo` API, so
-- the same handlers run on a KumoMTA SMTP listener.
--
-- Replies, as a client sees them (HOST is the edge's --hostname):
--   kumo.reject(550, 'text')                          550 text           (stays open)
--   kumo.disconnect(421, 'text')                      421 text, close
--   kumo.disconnect(554, 'text')                      554 text, close    (ForceDisconnect)
--   kumo.disconnect(550, 'text', 'FollowWith421')     550 text
--                                                     421 HOST disconnecting due to previous error, close
--   kumo.disconnect(451, 'text', 'If421')             451 text           (stays open)
local kumo = require 'kumo'

local LOCAL_DOMAINS = { ['example.com'] = true, ['example.net'] = true }
local BLOCKED_SENDER_DOMAINS = { ['spam.example'] = true }
local MAX_RECIPIENTS = 50
-- Per sender, across every edge and daemon sharing the Redis (in memory without one).
local SENDER_RATE = '20/min'

-- Metadata set here travels with the session to every later event, whichever
-- daemon replica evaluates it.
kumo.on('smtp_server_connection_accepted', function(conn_meta)
  conn_meta:set_meta('x_connected_at', os.time())
end)

kumo.on('smtp_server_ehlo', function(domain, conn_meta)
  if domain:lower() == conn_meta:get_meta('hostname'):lower() then
    kumo.disconnect(550, '5.7.1 you are not me', 'FollowWith421')
  end
end)

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  if BLOCKED_SENDER_DOMAINS[sender.domain] then
    kumo.reject(550, '5.7.1 mail from ' .. sender.domain .. ' is not accepted here')
  end
  if sender.user == 'greylist-me' then
    kumo.disconnect(451, '4.7.1 try again later', 'If421')
  end
  if sender.user == 'abuse' then
    kumo.disconnect(421, '4.7.0 ' .. conn_meta:get_meta('hostname') .. ' closing connection')
  end
  local rate = kumo.make_throttle('sender-' .. tostring(sender), SENDER_RATE):throttle()
  if rate.throttled then
    kumo.reject(451, ('4.7.1 too much mail from %s, try again in %d s')
      :format(tostring(sender), rate.retry_after.secs))
  end
  conn_meta:set_meta('x_recipients', 0)
end)

kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
  if recipient.user == 'spamtrap' then
    kumo.disconnect(554, '5.7.1 go away')
  end
  if not LOCAL_DOMAINS[recipient.domain] then
    kumo.reject(550, '5.7.1 relaying to ' .. recipient.domain .. ' is not allowed')
  end
  local count = conn_meta:get_meta('x_recipients') + 1
  if count > MAX_RECIPIENTS then
    kumo.reject(452, '4.5.3 too many recipients')
  end
  conn_meta:set_meta('x_recipients', count)
end)

kumo.on('smtp_server_data', function(msg, conn_meta)
  if not msg:get_first_named_header_value('Subject') then
    kumo.reject(554, '5.6.0 a Subject header is required\nsee https://example.com/policy')
  end
  msg:remove_all_named_headers('X-Internal')
  msg:prepend_header('X-Policy-Checked', conn_meta:get_meta('hostname') .. ' for '
    .. conn_meta:get_meta('received_from'))
end)
