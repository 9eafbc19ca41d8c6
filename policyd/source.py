"""Where a policy lives: its directory, entry file, modules and test files.

A policy is a directory with an entry file `init.lua`, or a single `.lua` file
whose own directory is the policy directory. Modules and data files are read
only from inside that directory; KumoMTA's own directories
(/opt/kumomta/etc/policy, /opt/kumomta/share, where its policy-extras live)
name it too, so a KumoMTA policy and the modules copied beside it load
unchanged. Test cases live in `tests/*.toml` of a policy directory, or in
`NAME.tests.toml` beside a single-file policy `NAME.lua`.

A Snapshot holds the bytes one revision was loaded from, so the same revision
can be loaded again (into more runtimes) even while the files change on disk.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ENTRY = "init.lua"
DATA_SUFFIXES = (".toml", ".json", ".yaml", ".yml", ".pem", ".key")  # .pem, .key: signing keys
WATCHED_SUFFIXES = (".lua", *DATA_SUFFIXES)
KUMO_DIRS = ("/opt/kumomta/etc/policy/", "/opt/kumomta/share/")
# package.path as a policy starts with it: KumoMTA's, whose directories are ours.
PACKAGE_PATH = ";".join(f"{d}?.lua;{d}?/init.lua" for d in (*KUMO_DIRS[::-1], "./"))


class PolicyError(Exception):
    """A policy that cannot be loaded; the message names file and line."""


def policy_relpath(path: str) -> str:
    """`path` as a policy wrote it, relative to the policy directory."""
    for prefix in (*KUMO_DIRS, "./"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise PolicyError(
            f"{path or repr(path)}: not a file of the policy directory (paths are relative to "
            f"it; {' and '.join(KUMO_DIRS)} name it too)"
        )
    return pure.as_posix()


def module_candidates(name: str, package_path: str = PACKAGE_PATH) -> tuple[str, ...]:
    """The files a `require` name (dotted, as in Lua) may refer to, by the
    templates of package.path that lie in the policy directory."""
    parts = name.split(".")
    if not all(p and p not in (".", "..") and "/" not in p and "\\" not in p for p in parts):
        raise PolicyError(f"require '{name}': not a module name")
    base = "/".join(parts)
    out: dict[str, None] = {}
    for template in package_path.split(";"):
        try:
            out[policy_relpath(template.replace("?", base))] = None
        except PolicyError:
            continue  # a directory outside the policy's
    return tuple(out)


@dataclass(frozen=True)
class PolicySource:
    root: Path
    entry: str  # path of the entry file relative to root

    @classmethod
    def at(cls, path: str | Path, must_exist: bool = True) -> PolicySource:
        """The policy at `path`; with must_exist False, one that may appear there later."""
        path = Path(path)
        if not must_exist and not path.is_file() and not (path / ENTRY).is_file():
            if path.suffix == ".lua":
                return cls(path.resolve().parent, path.name)
            return cls(path.resolve(), ENTRY)
        if path.is_dir():
            if not (path / ENTRY).is_file():
                raise PolicyError(f"{path}: policy directory has no {ENTRY}")
            return cls(path.resolve(), ENTRY)
        if path.is_file():
            return cls(path.resolve().parent, path.name)
        raise PolicyError(f"{path}: no such policy file or directory")

    def __str__(self) -> str:
        return str(self.root / self.entry)

    def _inside(self, relpath: str) -> Path:
        target = (self.root / relpath).resolve()
        if not target.is_relative_to(self.root):
            raise PolicyError(f"{relpath}: outside the policy directory")
        return target

    def read(self, relpath: str) -> bytes:
        """Reads a file of the policy, refusing anything outside its directory."""
        try:
            return self._inside(relpath).read_bytes()
        except OSError as e:
            raise PolicyError(f"{relpath}: {e.strerror}") from None

    def module_path(self, name: str, package_path: str = PACKAGE_PATH) -> str:
        candidates = module_candidates(name, package_path)
        for candidate in candidates:
            if self._inside(candidate).is_file():
                return candidate
        raise PolicyError(
            f"require '{name}': no {' or '.join(candidates) or 'file'} in the policy directory"
        )

    def data_files(self) -> list[str]:
        """Every data file of the policy directory: a revision holds them all, as a
        handler may read one (through kumo.memoize, say) long after loading."""
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.suffix in DATA_SUFFIXES and p.is_file()
        )

    def test_files(self) -> list[str]:
        if self.entry == ENTRY:
            return sorted(
                p.relative_to(self.root).as_posix() for p in self.root.glob("tests/*.toml")
            )
        beside = Path(self.entry).with_suffix(".tests.toml").as_posix()
        return [beside] if (self.root / beside).is_file() else []

    def _watched(self) -> Iterator[Path]:
        """Every file a revision may read: modules, data files, test cases."""
        return (p for p in self.root.rglob("*") if p.suffix in WATCHED_SUFFIXES)

    def signature(self) -> frozenset[tuple[str, int, int]]:
        """A cheap fingerprint (name, mtime, size) of every file a reload would read."""
        out = set()
        for path in self._watched():
            try:
                st = path.stat()
            except OSError:
                continue
            out.add((str(path), st.st_mtime_ns, st.st_size))
        return frozenset(out)


@dataclass(frozen=True)
class Snapshot:
    """The files of one revision, read once from a PolicySource."""

    source: PolicySource
    files: Mapping[str, bytes]

    @property
    def entry(self) -> str:
        return self.source.entry

    def __str__(self) -> str:
        return str(self.source)

    def data_files(self) -> list[str]:
        return sorted(f for f in self.files if f.endswith(DATA_SUFFIXES))

    def read(self, relpath: str) -> bytes:
        try:
            return self.files[relpath]
        except KeyError:
            raise PolicyError(f"{relpath}: not part of this revision") from None

    def module_path(self, name: str, package_path: str = PACKAGE_PATH) -> str:
        for candidate in module_candidates(name, package_path):
            if candidate in self.files:
                return candidate
        raise PolicyError(f"require '{name}': not part of this revision")
