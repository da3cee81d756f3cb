"""A clean copy of a Flower App directory for ``flwr run``: the same FAB, built in ms.

``flwr run <dir>`` builds the app's FAB on every run by listing *every* file under
``<dir>`` (``flwr.cli.utils.collect_files``: ``os.walk`` plus a ``resolve()`` per file) and
only then dropping what ``.gitignore`` and its include rules exclude. Run from a checkout,
that walks the virtualenvs too: 89,931 files and 4.4 s a run here with ``.venv`` and
``.venv-litellm``, more once ``make test`` has made ``.venv-vllm``; every step of the
autopilot (a look, a deploy, a training round) is one run, so the demo spent minutes
walking ``.venv``. (The same tree without them: 578 files, 0.04 s, a byte-identical FAB.)

:func:`staged_app` copies the files Flower could pack into a directory of their own,
without entering directories that the app's ``.gitignore`` ignores (Flower would drop every
file in them; nothing is pruned when the ``.gitignore`` re-includes anything with ``!``) or
``__pycache__``/``.flwr``, which its built-in rules exclude. Flower then builds from the copy
with its own rules, unchanged. A copy is reused while no file's path, size or mtime has
changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

_ALWAYS_PRUNED = frozenset({"__pycache__", ".flwr", ".git"})
_KEEP_STAGES = 2
_STALE_S = 600.0


def _listing(root: Path) -> list[tuple[str, int, int]]:
    """(relative POSIX path, size, mtime_ns) of every regular file Flower could pack."""
    from flwr.cli.utils import build_pathspec, load_gitignore_patterns

    patterns = load_gitignore_patterns(root / ".gitignore")
    spec = None if any(p.startswith("!") for p in patterns) else build_pathspec(patterns)
    found: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath).relative_to(root)
        kept = []
        for name in sorted(dirnames):
            rel = (base / name).as_posix()
            if name in _ALWAYS_PRUNED or (spec is not None and spec.match_file(rel + "/")):
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue  # Flower skips symlinks too
            st = path.stat()
            found.append(((base / name).as_posix(), st.st_size, st.st_mtime_ns))
    found.sort()
    return found


def staged_app(app_dir: Path, stage_root: Path) -> Path:
    """A directory holding the files of ``app_dir`` that ``flwr run`` could pack (see the
    module docstring); made under ``stage_root`` or reused from there."""
    root = app_dir.expanduser().resolve()
    if not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{root}: no pyproject.toml, not a Flower App")
    listing = _listing(root)
    digest = hashlib.sha256(repr((str(root), listing)).encode()).hexdigest()[:20]
    stage = stage_root / f"app-{digest}"
    if stage.is_dir():
        return stage
    stage_root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=stage_root))
    try:
        for rel, _, _ in listing:
            target = building / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, target)
        try:
            building.rename(stage)
        except OSError:
            if not stage.is_dir():  # another process made the same stage first: use it
                raise
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    # Older copies go once they are both superseded and a while old (a run started from one
    # has packed it long before).
    stages = sorted((p for p in stage_root.glob("app-*") if p.is_dir() and p != stage),
                    key=lambda p: p.stat().st_mtime)
    cutoff = time.time() - _STALE_S
    for old in stages[:max(0, len(stages) - (_KEEP_STAGES - 1))]:
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    return stage
