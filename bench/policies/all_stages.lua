-- Handlers at all five stages, each doing a little work.
local BLOCKED = { ['blocked.example'] = true }
local LOCAL = { ['example.com'] = true, ['example.net'] = true }

kumo.on('smtp_server_connection_accepted', function(conn_meta)
  conn_meta:set_meta('x_connected', true)
end)

kumo.on('smtp_server_ehlo', function(domain, conn_meta)
  if domain == '' then kumo.reject(501, '5.5.4 empty greeting') end
end)

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  if BLOCKED[sender.domain] then kumo.reject(550, '5.7.1 sender domain blocked') end
end)

kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
  if not LOCAL[recipient.domain] then kumo.reject(550, '5.7.1 relaying denied') end
end)

kumo.on('smtp_server_data', function(msg, conn_meta)
  msg:prepend_header('X-Policy', 'checked')
end)
