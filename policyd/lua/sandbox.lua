-- The global environment policies run in, built once per Lua state before any
-- policy code runs. This file sees the full standard library; a policy sees
-- only what is copied into `env` below: no io, no os beyond time and clock,
-- no debug, no bytecode, no Python, and `require` only inside the policy
-- directory.
local host = ...

local env = {}
for _, name in ipairs {
  'assert', 'error', 'getmetatable', 'ipairs', 'next', 'pairs', 'pcall',
  'rawequal', 'rawget', 'rawlen', 'rawset', 'select', 'setmetatable',
  'tonumber', 'tostring', 'type', 'xpcall', '_VERSION',
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
env.coroutine = copy(coroutine)
env.os = { time = os.time, clock = os.clock }
env._G = env

-- String methods resolve to the sandbox's string table (no string.dump), and
-- the shared string metatable cannot be read or replaced.
local string_mt = getmetatable('')
string_mt.__index = env.string
string_mt.__metatable = false

local concat, select, tostring = table.concat, select, tostring

-- Strings crossing to the host must be UTF-8: invalid bytes become U+FFFD.
local function utf8_safe(s)
  local parts, pos = {}, 1
  while true do
    local ok, bad = utf8.len(s, pos)
    if ok then
      parts[#parts + 1] = s:sub(pos)
      return table.concat(parts)
    end
    parts[#parts + 1] = s:sub(pos, bad - 1) .. '\u{FFFD}'
    pos = bad + 1
  end
end

function env.print(...)
  local parts = {}
  for i = 1, select('#', ...) do parts[i] = tostring((select(i, ...))) end
  host.print(utf8_safe(concat(parts, '\t')))
end

-- Text chunks only, compiled into the sandbox unless given another table.
local raw_load = load
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

-- require: the kumo module, or a module file inside the policy directory.
-- Modules are read while the policy loads, so the revision covers them all.
local loaded = {}
local loading_done = false

function env.require(name)
  if type(name) ~= 'string' then
    error('bad argument #1 to require (string expected)', 2)
  end
  local cached = loaded[name]
  if cached ~= nil then return cached end
  if loading_done then
    error(("require '%s': modules can only be loaded while the policy loads"):format(name), 2)
  end
  local source, chunkname = host.read_module(name)
  if source == nil then error(chunkname, 2) end
  local chunk, err = compile(source, chunkname)
  if not chunk then error(err, 0) end
  local result = chunk(name)
  if result == nil then result = true end
  loaded[name] = result
  return result
end

local sandbox = {}

function sandbox.provide(name, module)
  loaded[name] = module
  env[name] = module
end

function sandbox.finish_loading()
  loading_done = true
end

sandbox.env = env
sandbox.utf8_safe = utf8_safe
sandbox.compile = compile
return sandbox
