-- kumo.log_debug/log_info/log_warn/log_error(...): like print, the values
-- joined by one space (tostring for all but strings), into the daemon's log
-- at that level with the policy line that called; invalid UTF-8 bytes are
-- written as \xHH. Never raises.
local kumo, host, support = ...

local select, tostring, type = select, tostring, type
local concat = table.concat
local format, byte, sub = string.format, string.byte, string.sub
local utf8_len = utf8.len

local function hex_invalid(s)
  local parts, pos = {}, 1
  while true do
    local ok, bad = utf8_len(s, pos)
    if ok then
      parts[#parts + 1] = sub(s, pos)
      return concat(parts)
    end
    parts[#parts + 1] = sub(s, pos, bad - 1) .. format('\\x%02X', byte(s, bad))
    pos = bad + 1
  end
end

function kumo.set_diagnostic_log_filter(filter)
  if type(filter) ~= 'string' then
    error('bad argument #1 to kumo.set_diagnostic_log_filter (string expected)', 2)
  end
  local err = host.set_filter(filter)
  if err then error('kumo.set_diagnostic_log_filter: ' .. err, 2) end
end

for _, level in ipairs({ 'debug', 'info', 'warn', 'error' }) do
  kumo['log_' .. level] = function(...)
    if not host.enabled(level) then return end
    local parts = {}
    for i = 1, select('#', ...) do
      local v = select(i, ...)
      local ok, text = true, v
      if type(v) ~= 'string' then ok, text = pcall(tostring, v) end
      parts[i] = ok and type(text) == 'string' and hex_invalid(text) or '?'
    end
    host.write(level, support.where(2), concat(parts, ' '))
  end
end
