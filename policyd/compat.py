"""What of KumoMTA's API a policy refers to that this service does not do:
a static scan of its files (`policyctl check`), before anything runs.

It finds `kumo.NAME` (dotted), `msg:NAME(`, `conn_meta:NAME(` and
`kumo.on('EVENT'` in the Lua source outside comments, and asks the loaded
policy's own kumo module whether each exists; KumoMTA's configuration
functions accepted and ignored here are reported as such.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from policyd.extensions.config import IGNORED

_COMMENT = re.compile(rb"--\[(=*)\[.*?\]\1\]|--[^\n]*", re.S)
_PATTERNS = (
    ("event", re.compile(rb"""kumo\s*\.\s*on\s*\(\s*['"]([A-Za-z0-9_]+)['"]""")),
    ("kumo", re.compile(rb"\bkumo\s*\.\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")),
    ("msg", re.compile(rb"\bmsg\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")),
    ("conn_meta", re.compile(rb"\bconn_meta\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")),
)


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    kind: str  # event, kumo, msg, conn_meta
    name: str
    status: str  # "not supported", or "accepted and ignored"

    def __str__(self) -> str:
        shown = {"kumo": f"kumo.{self.name}", "event": f"event '{self.name}'"}.get(
            self.kind, f"{self.kind}:{self.name}"
        )
        return f"{self.file}:{self.line}: {shown}: {self.status}"


def _without_comments(source: bytes) -> bytes:
    """The source with comments blanked, newlines kept (so line numbers hold)."""
    return _COMMENT.sub(lambda m: b"\n" * m.group(0).count(b"\n"), source)


def _references(source: bytes) -> Iterator[tuple[int, str, str]]:
    text = _without_comments(source)
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            line = text.count(b"\n", 0, match.start()) + 1
            yield line, kind, match.group(1).decode()


def scan(files: Mapping[str, bytes], provides: Callable[[str, str], bool]) -> list[Finding]:
    """Every reference in the Lua files to a name this service lacks or ignores."""
    found: list[Finding] = []
    for file in sorted(f for f in files if f.endswith(".lua")):
        for line, kind, name in sorted(_references(files[file])):
            if kind == "kumo" and name == "on":
                continue
            if kind == "kumo" and name in IGNORED:
                found.append(Finding(file, line, kind, name, "accepted and ignored"))
            elif not provides(kind, name):
                found.append(Finding(file, line, kind, name, "not supported"))
    return found
