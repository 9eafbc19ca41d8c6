-- kumo.dmarc.check_msg(msg, dkim_results, opt_resolver, spf_result, use_reporting,
-- opt_reporting_info): DMARC from the results a policy already has, through the
-- daemon's resolver (policyd/mailauth/dmarc.py); KumoMTA's shape: the
-- disposition and an AuthenticationResult. Reporting is not done here, so
-- use_reporting and its information are accepted and ignored.
local kumo, _, support = ...

local format, type = string.format, type
local dmarc = {}
kumo.dmarc = dmarc

local function output(disposition, result, reason, props)
  return { disposition = disposition,
           result = { method = 'dmarc', result = result, reason = reason, props = props or {} } }
end

function dmarc.check_msg(msg, dkim_results, resolver, spf_result)
  for i, v in ipairs({ { msg, 'table' }, { dkim_results, 'table' }, { spf_result, 'table' } }) do
    if type(v[1]) ~= v[2] then
      error(format('bad argument to kumo.dmarc.check_msg: %s expected, got %s (argument %d)',
        v[2], type(v[1]), ({ 1, 2, 4 })[i]), 2)
    end
  end
  if resolver ~= nil and type(resolver) ~= 'string' then
    error('bad argument #3 to kumo.dmarc.check_msg (resolver name expected)', 2)
  end
  local ok, from = pcall(msg.from_header, msg)
  if not ok or from == nil or #from.list ~= 1 then
    return output('None', 'none', "Only single 'From:' header supported")
  end
  local domain = from.list[1].domain
  if domain == nil or domain == '' then
    return output('None', 'none', "'From:' header missing domain")
  end
  local encode = kumo.serde.json_encode
  local disposition, result, reason, props = support.call_host('dmarc.check', false, domain,
    encode(dkim_results), encode(spf_result))
  return output(disposition, result, reason, props)
end
