"""Who may do what: the rights of authenticated users and of anonymous clients, for Basic and token auth.

Without an ACL file every authenticated user may pull, push and delete everywhere and list the catalog, and
anonymous clients may pull when ``anonymous_pull`` is set. An ACL file narrows that; each line is::

    USER  REPOSITORY-GLOB  ACTIONS        # e.g.  alice  team/*  pull,push

where USER is a user name, ``*`` (any authenticated user) or ``anonymous``, the glob uses ``fnmatch`` rules
(``*`` also crosses ``/``) and ACTIONS is a comma list of pull, push, delete or ``*``. A user's rights are the
union of the lines that name them. The catalog (``registry:catalog:*``) is open to every authenticated user.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from regtool.errors import UsageError

__all__ = ["ANONYMOUS", "AccessPolicy", "Rule"]

ANONYMOUS = "anonymous"
_ACTIONS = frozenset({"pull", "push", "delete"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One ACL line: ``user`` (a name, ``*`` or ``anonymous``) may do ``actions`` on repositories matching."""

    user: str
    pattern: str
    actions: frozenset[str]

    def applies(self, user: str | None, name: str) -> bool:
        if user is None:
            who = self.user == ANONYMOUS
        else:
            who = self.user in {"*", user}
        return who and fnmatch.fnmatchcase(name, self.pattern)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The rights of users (None = anonymous); see the module docstring."""

    rules: tuple[Rule, ...] = (Rule("*", "*", _ACTIONS),)
    anonymous_pull: bool = False

    @classmethod
    def load(cls, path: Path, *, anonymous_pull: bool = False) -> AccessPolicy:
        """Read an ACL file; UsageError naming the file and line when a line does not parse."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read ACL file {path}: {exc.strerror or exc}") from None
        rules: list[Rule] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 3:
                raise UsageError(f"ACL file {path}, line {number}: expected USER REPOSITORY-GLOB ACTIONS")
            actions = frozenset(a.strip() for a in fields[2].split(",") if a.strip())
            if "*" in actions:
                actions = _ACTIONS
            unknown = actions - _ACTIONS
            if unknown or not actions:
                raise UsageError(f"ACL file {path}, line {number}: actions must be pull, push, delete or *")
            rules.append(Rule(fields[0], fields[1], actions))
        return cls(tuple(rules), anonymous_pull)

    def allowed(self, user: str | None, type: str, name: str, actions: frozenset[str]) -> frozenset[str]:
        """The subset of ``actions`` on resource ``type:name`` that ``user`` may have."""
        if type == "registry" and name == "catalog":
            return actions & {"*"} if user is not None else frozenset()
        if type != "repository":
            return frozenset()
        granted: set[str] = set()
        if user is None and self.anonymous_pull:
            granted.add("pull")
        for rule in self.rules:
            if rule.applies(user, name):
                granted |= rule.actions
        return actions & frozenset(granted)
