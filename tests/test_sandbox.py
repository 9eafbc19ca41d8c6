"""Sandbox escapes, each attempted by a policy running in the real daemon.

Each attempt runs inside pcall; the policy reports "blocked: <error>" or what
it got, through kumo.reject's text, which the test reads from the verdict.
"""

from __future__ import annotations

import grpc
import pytest

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc

ATTEMPTS = {
    "io.open": "return io.open('/etc/passwd'):read('a')",
    "io via _G": "return _G.io.lines('/etc/passwd')()",
    "os.execute": "return os.execute('cat /etc/passwd')",
    "os.getenv": "return os.getenv('HOME')",
    "os.remove": "return os.remove('/tmp/x')",
    "os.date": "return os.date()",
    "dofile": "return dofile('/etc/passwd')",
    "loadfile": "return loadfile('/etc/passwd')()",
    "require io": "return require('io').open('/etc/passwd'):read('a')",
    "require os": "return require('os').execute('id')",
    "require path": "return require('/etc/passwd')",
    "require dotdot": "return require('..secret')",
    "require dots": "return require('x.._..secret')",
    "package.loadlib": "return package.loadlib('libc.so.6', 'system')",
    "package.loaded": "return package.loaded.io.open('/etc/passwd'):read('a')",
    "debug.getregistry": "return debug.getregistry()",
    "debug.getupvalue": "return debug.getupvalue(kumo.on, 1)",
    "python": "return python.eval('open(\"/etc/passwd\").read()')",
    "python builtins": "return python.builtins.open('/etc/passwd').read()",
    "load io": "return load('return io')().open('/etc/passwd'):read('a')",
    "load bytecode": "return assert(load('\\27Lua\\x54\\0\\25\\147\\r\\n\\26\\n'))()",
    "load bytecode reader": (
        "local done = false\n"
        "return assert(load(function() if done then return nil end done = true "
        "return '\\27Lua\\x54\\0' end))()"
    ),
    "string.dump": "return string.dump(function() end)",
    "string method dump": "return ('').dump(print)",
    "string metatable": "return getmetatable('').__index.dump",
    "replace string metatable": "return setmetatable('', {})",
    "conn_meta metatable": "return getmetatable(conn_meta).__index",
    "address metatable": "return getmetatable(sender).__index",
    "__gc finalizer": "return setmetatable({}, {__gc = function() while true do end end})",
    "collectgarbage": "return collectgarbage('count')",
    "rawget _ENV": "return assert(rawget(_ENV, 'io') or rawget(_G, 'os').execute, 'absent')",
    "coroutine.running debug": "return debug.traceback(coroutine.running())",
}

POLICY = r"""
local ATTEMPTS = %s

-- Every value a policy can reach from its globals and the objects it is handed.
local function reach(value, seen, found)
  if seen[value] then return end
  seen[value] = true
  local t = type(value)
  if t == 'userdata' or t == 'thread' then found[#found + 1] = t end
  if t == 'table' then
    for k, v in pairs(value) do reach(k, seen, found); reach(v, seen, found) end
    local mt = getmetatable(value)
    if mt then reach(mt, seen, found) end
  end
  return found
end

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  local name = sender.user
  if name == 'reach' then
    local found = reach({_G, conn_meta, sender, kumo, string, coroutine}, {}, {})
    kumo.reject(550, 'reached ' .. #found .. ' host objects')
  end
  local env = setmetatable({sender = sender, conn_meta = conn_meta}, {__index = _G})
  local chunk = assert(load(ATTEMPTS[name], name, 't', env))
  local ok, result = pcall(chunk)
  if ok then
    kumo.reject(550, 'ESCAPED: ' .. tostring(result))
  end
  kumo.reject(550, 'blocked: ' .. tostring(result))
end)
"""


def lua_table(attempts: dict[str, str]) -> str:
    def quote(s: str) -> str:
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

    return "{" + ", ".join(f"[{quote(k)}] = {quote(v)}" for k, v in attempts.items()) + "}"


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    from tests.procs import start_daemon

    workdir = tmp_path_factory.mktemp("sandbox")
    (workdir / "secret.lua").write_text("return io")
    policy_dir = workdir / "policy"
    policy_dir.mkdir()
    (policy_dir / "init.lua").write_text(POLICY % lua_table(ATTEMPTS))
    daemon, address = start_daemon(policy_dir, workdir)
    channel = grpc.insecure_channel(address)
    yield pb_grpc.PolicyServiceStub(channel)
    channel.close()
    daemon.stop()


def attempt(stub, name: str) -> pb.Verdict:
    return stub.Evaluate(
        pb.EvaluateRequest(
            event="smtp_server_mail_from", mail_from=pb.MailFromArgs(sender=f"{name}@x")
        ),
        timeout=10,
    )


# Why some attempts fail, where the reason matters.
REASONS = {
    "load bytecode": "attempt to load a binary chunk",
    "load bytecode reader": "attempt to load a binary chunk",
    "string metatable": "attempt to index a boolean value",
    "conn_meta metatable": "attempt to index a boolean value",
    "replace string metatable": "bad argument #1 to 'setmetatable' (table expected, got string)",
    "__gc finalizer": "__gc metamethods are not allowed",
    "python": "global 'python'",
}


@pytest.mark.parametrize("name", ATTEMPTS)
def test_escape_attempt_is_blocked(sandboxed, name: str) -> None:
    verdict = attempt(sandboxed, name)
    assert verdict.action == pb.ACTION_REJECT, verdict
    assert verdict.text.startswith("blocked: "), verdict.text
    assert REASONS.get(name, "") in verdict.text


def test_no_host_object_is_reachable(sandboxed) -> None:
    verdict = attempt(sandboxed, "reach")
    assert verdict.text == "reached 0 host objects"
