-- A typical inbound policy: decisions at MAIL FROM and RCPT TO only.
local BLOCKED = { ['blocked.example'] = true }
local LOCAL = { ['example.com'] = true, ['example.net'] = true }

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  if BLOCKED[sender.domain] then kumo.reject(550, '5.7.1 sender domain blocked') end
end)

kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
  if not LOCAL[recipient.domain] then kumo.reject(550, '5.7.1 relaying denied') end
end)
