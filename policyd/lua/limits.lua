-- Limits on policy code, and the bridge to the host's asynchronous calls.
--
-- Every evaluation (and the policy's load) runs in a coroutine with a
-- context: an instruction budget, a wall-clock deadline and, for evaluations
-- run inline on the daemon's event loop, a smaller slice after which the
-- evaluation is abandoned and run again on an overflow runtime. A count hook
-- charges the context every STEP instructions. Coroutines the policy creates
-- inherit the context (see sandbox.lua), so a loop inside pcall or inside a
-- coroutine is charged all the same. Once a limit is hit the hook raises at
-- every instruction, so no pcall can keep the evaluation alive, and the
-- evaluation fails whatever the handler does afterwards.
local host = ...

local now = host.now
local sethook, getinfo = debug.sethook, debug.getinfo
local running, yield = coroutine.running, coroutine.yield
local error, setmetatable = error, setmetatable
-- Trusted code never uses method calls on strings: policies can change the
-- string table that string methods resolve to.
local format, byte, sub = string.format, string.byte, string.sub

local STEP = 10000

-- The marker a context's `exceeded` holds when only the inline slice ran out.
local SLICE = 'inline slice exhausted'

local contexts = setmetatable({}, { __mode = 'k' })  -- thread -> context

-- The policy location (file:line) nearest to stack `level`: the first frame
-- of policy code (chunk names starting with '@'), skipping trusted frames.
local function where(level)
  level = level + 1
  while true do
    local info = getinfo(level, 'Sl')
    if info == nil then return '?' end
    if byte(info.source, 1) == 64 and info.currentline > 0 then  -- '@'
      return sub(info.source, 2) .. ':' .. info.currentline
    end
    level = level + 1
  end
end

local hook

local function exceed(ctx, message)
  ctx.exceeded = message
  if message ~= SLICE then ctx.message = where(3) .. ': ' .. message end
end

-- Line coverage, when enabled (policyctl test): source -> {line = true}.
local coverage = nil
local MASK = ''

hook = function(event, line)
  if event == 'line' then
    local source = getinfo(2, 'S').source
    local lines = coverage[source]
    if lines == nil then lines = {}; coverage[source] = lines end
    lines[line] = true
    return
  end
  local co = running()
  local ctx = contexts[co]
  if ctx == nil then return end
  if ctx.exceeded == nil then
    local used = ctx.used + STEP
    ctx.used = used
    if used > ctx.budget then
      exceed(ctx, format('evaluation exceeded its limit of %d instructions', ctx.budget))
    elseif ctx.slice ~= nil and used > ctx.slice and not ctx.dirty then
      exceed(ctx, SLICE)
    elseif now() > ctx.deadline then
      exceed(ctx, format('evaluation exceeded its time limit of %g s', ctx.limit))
    else
      return
    end
  end
  sethook(co, hook, MASK, 1)
  error(ctx.message or ctx.exceeded, 0)
end

local limits = { SLICE = SLICE, where = where }

-- A new context: `seconds` of wall clock from now (of a time `limit`, for the
-- message), `budget` instructions, and for inline evaluations a `slice`.
function limits.context(seconds, limit, budget, slice, loading)
  return { used = 0, limit = limit, deadline = now() + seconds, budget = budget,
           slice = slice, dirty = false, loading = loading }
end

function limits.attach(co, ctx)
  contexts[co] = ctx
  sethook(co, hook, MASK, STEP)
  return co
end

-- Records every policy line run from now on (slower: for test runs only).
function limits.enable_coverage()
  coverage = {}
  MASK = 'l'
end

function limits.coverage()
  return coverage
end

function limits.context_of(co)
  return contexts[co]
end

-- The error message of a context that hit a limit, with the policy location.
function limits.failure(ctx)
  return ctx.message or ctx.exceeded
end

-- Seconds left before the running evaluation's deadline (nil outside one).
function limits.remaining()
  local ctx = contexts[running()]
  if ctx == nil then return nil end
  return ctx.deadline - now()
end

-- Calls an asynchronous host function from a handler: the evaluation's
-- coroutine yields to the host, which resumes it with (ok, results...).
-- Calls with side effects make the evaluation "dirty": it can no longer be
-- abandoned and re-run elsewhere, so it runs to its full budget where it is.
local BRIDGE = {}
limits.BRIDGE = BRIDGE

function limits.call_host(name, side_effects, ...)
  local ctx = contexts[running()]
  if ctx == nil or ctx.loading then
    error(name .. ' can only be used inside a handler', 3)
  end
  if side_effects then ctx.dirty = true end
  local ok, a, b, c, d = yield(BRIDGE, name, where(3), ...)
  if not ok then error(a, 3) end
  return a, b, c, d
end

return limits
