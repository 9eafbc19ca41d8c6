-- Mail authentication at reception, in KumoMTA's API: SPF at MAIL FROM
-- (softly: only a hard fail is refused), then DKIM and DMARC once the message
-- is in, an Authentication-Results header for what was found, and the From
-- domain's DMARC policy enforced. Test cases: auth.tests.toml
-- (policyctl test examples/auth.lua), with DNS answers of their own.
local kumo = require 'kumo'

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  if sender.email == '' then return end  -- bounces: checked by DMARC at data
  local spf = kumo.spf.check_host(sender.domain, conn_meta, sender.email)
  if spf.disposition == 'fail' then
    kumo.reject(550, '5.7.23 SPF check failed: ' .. spf.result.reason)
  elseif spf.disposition == 'temperror' then
    kumo.reject(451, '4.7.24 SPF check could not be completed, try again later')
  end
end)

kumo.on('smtp_server_message_received', function(msg)
  local dkim = msg:dkim_verify()
  local spf = kumo.spf.check_msg(msg)
  local dmarc = kumo.dmarc.check_msg(msg, dkim, nil, spf.result, false)

  local results = { spf.result }
  for _, result in ipairs(dkim) do table.insert(results, result) end
  table.insert(results, dmarc.result)
  msg:add_authentication_results(msg:get_meta('hostname'), results)

  if dmarc.disposition == 'Reject' then
    kumo.reject(550, string.format('5.7.1 rejected by the DMARC policy of %s',
      dmarc.result.props['header.from']))
  elseif dmarc.disposition == 'Quarantine' then
    msg:prepend_header('X-Quarantine', 'DMARC policy of ' .. dmarc.result.props['header.from'])
  elseif dmarc.disposition == 'TempError' then
    kumo.reject(451, '4.7.5 DMARC policy could not be looked up, try again later')
  end
end)
