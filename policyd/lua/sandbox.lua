-- The global environment policies run in, built once per Lua state before any
-- policy code runs. This file sees the full standard library; a policy sees
-- only what is copied into `env` below: no io, no os beyond time and clock,
-- no debug, no bytecode, no __gc, no Python, and `require` only inside the
-- policy directory. Coroutines a policy creates stay under the limits of the
-- evaluation that created them (limits.lua).
local host, limits = ...

local raw_load, raw_setmetatable, rawget, type, error = load, setmetatable, rawget, type, error
local concat, select, tostring, pack, unpack = table.concat, select, tostring, table.pack, table.unpack
local utf8_len, sub = utf8.len, string.sub
local co_create, co_resume, co_yield, co_status, co_running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.running

local env = {}
for _, name in ipairs {
  'assert', 'error', 'getmetatable', 'ipairs', 'next', 'pairs', 'pcall',
  'rawequal', 'rawget', 'rawlen', 'rawset', 'select', 'tonumber', 'tostring',
  'type', 'xpcall', '_VERSION',
} do
  env[name] = _G[name]
end

local function copy(lib, except)
  local out = {}
  for k, v in pairs(lib) do
    if not (except and except[k]) then out[k] = v end
  end
  return out
end

env.string = copy(string, { dump = true })
env.table = copy(table)
env.math = copy(math)
env.utf8 = copy(utf8)
env.os = { time = os.time, clock = os.clock }
env._G = env

-- String methods resolve to the sandbox's string table (no string.dump), and
-- the shared string metatable cannot be read or replaced.
local string_mt = getmetatable('')
string_mt.__index = env.string
string_mt.__metatable = false

-- Finalizers run with hooks off, where no limit could stop them.
function env.setmetatable(t, mt)
  if type(t) ~= 'table' then
    error("bad argument #1 to 'setmetatable' (table expected, got " .. type(t) .. ')', 2)
  end
  if type(mt) == 'table' and rawget(mt, '__gc') ~= nil then
    error('setmetatable: __gc metamethods are not allowed in policies', 2)
  end
  return raw_setmetatable(t, mt)
end

-- Coroutines: a new one is charged to the evaluation that made it, and a host
-- call made inside it is passed up to the evaluation's own coroutine and its
-- answer passed back down.
local BRIDGE = limits.BRIDGE

local function create(f)
  local co = co_create(f)
  local ctx = limits.context_of(co_running())
  if ctx ~= nil then limits.attach(co, ctx) end
  return co
end

local function forward(co, ok, first, ...)
  if ok and first == BRIDGE and co_status(co) == 'suspended' then
    return forward(co, co_resume(co, co_yield(first, ...)))
  end
  return ok, first, ...
end

local function resume(co, ...)
  return forward(co, co_resume(co, ...))
end

local function unwrap(ok, ...)
  if not ok then error((...), 0) end
  return ...
end

env.coroutine = copy(coroutine)
env.coroutine.create = create
env.coroutine.resume = resume
function env.coroutine.wrap(f)
  local co = create(f)
  return function(...) return unwrap(resume(co, ...)) end
end

-- Strings crossing to the host must be UTF-8: invalid bytes become U+FFFD.
local function utf8_safe(s)
  local parts, pos = {}, 1
  while true do
    local ok, bad = utf8_len(s, pos)
    if ok then
      parts[#parts + 1] = sub(s, pos)
      return concat(parts)
    end
    parts[#parts + 1] = sub(s, pos, bad - 1) .. '\u{FFFD}'
    pos = bad + 1
  end
end

function env.print(...)
  local parts = {}
  for i = 1, select('#', ...) do parts[i] = tostring((select(i, ...))) end
  host.print(utf8_safe(concat(parts, '\t')))
end

-- Text chunks only, compiled into the sandbox unless given another table.
function env.load(chunk, name, _, chunk_env)
  if type(chunk) ~= 'string' and type(chunk) ~= 'function' then
    error('bad argument #1 to load (string or function expected)', 2)
  end
  return raw_load(chunk, name, 't', chunk_env or env)
end

-- Compiles a policy file's source into the sandbox. Returns the chunk, or nil
-- and the compiler's message ("file:line: ...").
local function compile(source, chunkname)
  local chunk, err = raw_load(source, '@' .. chunkname, 't', env)
  return chunk, err
end

-- require: the kumo module, or a module file inside the policy directory,
-- found by package.path as in Lua (KumoMTA's directories name the policy
-- directory; see policyd/source.py). Modules are read while the policy
-- loads, so the revision covers them all.
local loaded = {}
local loading_done = false
local package = { loaded = loaded, preload = {}, path = host.package_path, cpath = '',
                  config = '/\n;\n?\n!\n-\n' }
env.package = package

function env.require(name)
  if type(name) ~= 'string' then
    error('bad argument #1 to require (string expected)', 2)
  end
  local cached = package.loaded[name]
  if cached ~= nil then return cached end
  local chunk, chunkname = package.preload[name], ':preload:'
  if chunk == nil then
    if loading_done then
      error("require '" .. name .. "': modules can only be loaded while the policy loads", 2)
    end
    local path = package.path
    if type(path) ~= 'string' then error("require '" .. name .. "': package.path must be a string", 2) end
    local source
    source, chunkname = host.read_module(name, path)
    if source == nil then error(chunkname, 2) end
    local err
    chunk, err = compile(source, chunkname)
    if not chunk then error(err, 0) end
  end
  local result = chunk(name, chunkname)
  if result == nil then result = package.loaded[name] end
  if result == nil then result = true end
  package.loaded[name] = result
  return result, chunkname
end

local sandbox = { compile = compile, utf8_safe = utf8_safe }

-- True until the policy has loaded (kumo.on and friends only work then).
function sandbox.loading() return not loading_done end

function sandbox.provide(name, module)
  package.loaded[name] = module
  env[name] = module
end

-- Runs a policy file's top level under load limits. Returns nil, or the error.
function sandbox.run_loading(chunk, seconds, budget)
  local ctx = limits.context(seconds, seconds, budget, nil, true)
  local co = limits.attach(co_create(chunk), ctx)
  local result = pack(co_resume(co))
  if ctx.exceeded then return limits.failure(ctx) end
  if not result[1] then return tostring(result[2]) end
  if co_status(co) ~= 'dead' then return 'the policy yielded while loading' end
  return nil
end

function sandbox.finish_loading()
  loading_done = true
end

return sandbox
