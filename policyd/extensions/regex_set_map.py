"""kumo.regex_set_map.new: which of a set of patterns matches a subject.

KumoMTA answers with a Rust RegexSet, and when several patterns match it
takes the one first in its hash table's order, which varies. Here the
patterns are tried in the order of their text (code point order) and the
first that matches anywhere in the subject answers, so the answer is the
same on every run. Each pattern is an RE2 search (policyd/extensions/regex.py),
which is linear in the subject; a set costs one search per pattern tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policyd.extensions import Context, HostFunctions, to_python
from policyd.extensions.regex import Compiled, compile_pattern

MAX_TOTAL = 4 * 1024 * 1024  # bytes of pattern text in one set


@dataclass(frozen=True)
class RegexSet:
    """The compiled patterns in the order they are tried, each with the
    position of its value in the list the policy gave."""

    rules: tuple[tuple[Compiled, int], ...]

    def lookup(self, subject: str) -> int | None:
        data = subject.encode("utf-8")
        for compiled, index in self.rules:
            if compiled.search(data) is not None:
                return index
        return None


def build(patterns: list[str]) -> RegexSet:
    """The set of `patterns`; ValueError naming the pattern that is refused."""
    if sum(len(p.encode("utf-8")) for p in patterns) > MAX_TOTAL:
        raise ValueError(f"the patterns are longer than {MAX_TOTAL} bytes in all")
    rules = []
    for index, pattern in sorted(enumerate(patterns, 1), key=lambda item: item[1]):
        try:
            rules.append((compile_pattern(pattern), index))
        except ValueError as e:
            shown = pattern if len(pattern) <= 200 else pattern[:200] + "..."
            raise ValueError(f"compiling rules: {e}, in the pattern {shown!r}") from None
    return RegexSet(tuple(rules))


def functions(context: Context) -> HostFunctions:
    def make(patterns: Any) -> tuple[RegexSet | None, str | None]:
        try:
            return build(to_python(patterns) or []), None
        except ValueError as e:
            return None, str(e)

    def lookup(regex_set: RegexSet, subject: str) -> int | None:
        return regex_set.lookup(subject)

    return {"make": make, "lookup": lookup}
