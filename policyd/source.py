"""Where a policy lives on disk: its directory, its entry file, its modules.

A policy is a directory with an entry file `init.lua`, or a single `.lua` file
whose own directory is the policy directory. Modules are read only from inside
that directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ENTRY = "init.lua"


class PolicyError(Exception):
    """A policy that cannot be loaded; the message names file and line."""


@dataclass(frozen=True)
class PolicySource:
    root: Path
    entry: str  # path of the entry file relative to root

    @classmethod
    def at(cls, path: str | Path) -> PolicySource:
        path = Path(path)
        if path.is_dir():
            if not (path / ENTRY).is_file():
                raise PolicyError(f"{path}: policy directory has no {ENTRY}")
            return cls(path.resolve(), ENTRY)
        if path.is_file():
            return cls(path.resolve().parent, path.name)
        raise PolicyError(f"{path}: no such policy file or directory")

    def read(self, relpath: str) -> bytes:
        """Reads a file of the policy, refusing anything outside its directory."""
        target = (self.root / relpath).resolve()
        if not target.is_relative_to(self.root):
            raise PolicyError(f"{relpath}: outside the policy directory")
        try:
            return target.read_bytes()
        except OSError as e:
            raise PolicyError(f"{relpath}: {e.strerror}") from None

    def module_path(self, name: str) -> str:
        """Maps a `require` name (dotted, as in Lua) to a file in the policy directory."""
        parts = name.split(".")
        if not all(p and p not in (".", "..") and "/" not in p and "\\" not in p for p in parts):
            raise PolicyError(f"require '{name}': not a module name")
        base = "/".join(parts)
        for candidate in (f"{base}.lua", f"{base}/{ENTRY}"):
            target = (self.root / candidate).resolve()
            if target.is_relative_to(self.root) and target.is_file():
                return candidate
        raise PolicyError(
            f"require '{name}': no {base}.lua or {base}/{ENTRY} in the policy directory"
        )
