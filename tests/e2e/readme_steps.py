"""The README's "Deploy for real" section as steps a test can run, read from the README.

The section is a sequence of fenced blocks, each naming its party on its first line:

* ```` ```bash ```` — ``# on the coordinator's machine``, ``# on acme's machine`` or
  ``# on each tenant's machine``: one shell session of that party (or of every tenant),
  run in the party's directory, one command per line. ``NAME=$(...)`` and ``export
  NAME=...`` set a variable of that session; a line ending in ``&`` starts a daemon.
* ```` ```toml ```` / ```` ```python ```` — ``# acme/node.toml``: a file of that party.
* ```` ```text ```` — ``party:path -> party:path[, party:path]``: public files that travel
  between machines (the only link between the parties' directories).

Reading the commands from the README (rather than copying them into the test) means the
README cannot drift from what the test proves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SECTION = "## Deploy for real"
_FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
_SHELL_PARTY = re.compile(r"# on (?:the |each )?([\w-]+)'s machine\s*$")
_FILE_PARTY = re.compile(r"# ([\w-]+)/(\S+)\s*$")
_TRANSFER = re.compile(r"([\w-]+):(\S+)")
EACH_TENANT = "tenant"


@dataclass(frozen=True)
class Step:
    """One block of the section."""

    kind: str  # "shell" | "file" | "transfer"
    party: str = ""  # a party, or EACH_TENANT
    lines: tuple[str, ...] = ()  # shell: commands (continuations joined)
    path: str = ""  # file: path inside the party's directory
    text: str = ""  # file: contents
    copies: tuple[tuple[str, str, str, str], ...] = field(default=())  # (src party, src, dst party, dst)


def section(readme: str) -> str:
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    return readme[start:end if end >= 0 else len(readme)]


def _commands(body: str) -> tuple[str, ...]:
    out: list[str] = []
    pending = ""
    for raw in body.splitlines():
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if line and not line.startswith("#"):
            out.append(line)
    return tuple(out)


def parse_steps(readme: str) -> list[Step]:
    """The section's blocks in order (see the module docstring)."""
    steps: list[Step] = []
    for lang, body in _FENCE.findall(section(readme)):
        first, _, rest = body.partition("\n")
        if lang == "bash":
            found = _SHELL_PARTY.match(first)
            if not found:
                raise ValueError(f"a bash block must start with '# on <party>'s machine', got "
                                 f"{first!r}")
            steps.append(Step("shell", party=found.group(1), lines=_commands(rest)))
        elif lang in ("toml", "python"):
            found = _FILE_PARTY.match(first)
            if not found:
                raise ValueError(f"a {lang} block must start with '# <party>/<path>', got "
                                 f"{first!r}")
            steps.append(Step("file", party=found.group(1), path=found.group(2), text=body))
        elif lang == "text":
            copies = []
            for line in body.strip().splitlines():
                source, _, targets = line.partition("->")
                src = _TRANSFER.fullmatch(source.strip())
                if not src:
                    raise ValueError(f"a transfer line is 'party:path -> party:path', got {line!r}")
                for target in targets.split(","):
                    dst = _TRANSFER.fullmatch(target.strip())
                    if not dst:
                        raise ValueError(f"bad transfer target {target!r} in {line!r}")
                    copies.append((src.group(1), src.group(2), dst.group(1), dst.group(2)))
            steps.append(Step("transfer", copies=tuple(copies)))
        else:
            raise ValueError(f"unexpected ```{lang} block in {SECTION!r}")
    return steps


def tenants(steps: list[Step]) -> list[str]:
    """The tenants: the parties that have a ``node.toml``."""
    return [s.party for s in steps if s.kind == "file" and s.path == "node.toml"]


def substitute(text: str, replacements: dict[str, str]) -> str:
    """``text`` with whole-token replacements (ports, a schema name)."""
    for old, new in replacements.items():
        text = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w])", new, text)
    return text


def readme_text(root: Path) -> str:
    return (root / "README.md").read_text(encoding="utf-8")
