"""Build ``data/name_lexicon.tsv.gz`` from maintained, permissively licensed PyPI packages.

Run once when the sources change (they are dev dependencies, not runtime ones):

    .venv/bin/python -m hermes_fed.privacy.name_lexicon_build

Sources (see ``data/NOTICE``):

* ``nomquamgender`` (MIT; Van Buskirk, Clauset, Larremore 2023, arXiv:2303.08278): first
  names with their counts, pooled from 36 sources covering every continent, stored
  ASCII-folded. Kept: counts >= 3.
* ``mimesis`` (MIT): first names and surnames of its 35 locales.
* ``probablepeople`` (MIT, DataMade): US census names with the share of first-name use;
  a share below 0.9 marks a surname.
* ``pyspellchecker`` (MIT): English word frequencies (OpenSubtitles); kept: >= 64.

Nothing is read at run time but the output file: a header line, the ASCII-folded tokens
joined by tabs on one line, then one character per token whose code point minus 256 packs
``first | surname << 5 | english << 6`` (``first`` and ``english`` are
``round(log2(1 + count))``, ``surname`` 0/1). Loading it is three C-level calls (split, map,
dict), ~0.1 s for 400k tokens, instead of parsing 400k lines.
"""

from __future__ import annotations

import ast
import gzip
import importlib.metadata
import importlib.util
import json
import math
import re
from collections import defaultdict
from pathlib import Path

from hermes_fed.privacy.name_lexicon import DATA_FILE, OFFSET, fold

_TOKEN = re.compile(r"[a-z][a-z'\-]*[a-z]")
MIN_FIRST_COUNT = 3
MIN_ENGLISH_COUNT = 64


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # located, not imported (some import pandas)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"install {name} first (pip install -e '.[lexicon]')")
    return Path(next(iter(spec.submodule_search_locations)))


def build(out: Path = DATA_FILE) -> dict[str, int]:
    first: dict[str, int] = defaultdict(int)
    surname: set[str] = set()
    english: dict[str, int] = {}

    nqg = json.loads((_package_dir("nomquamgender") / "name_data.json").read_text("utf-8"))
    for key, row in nqg.items():
        if _TOKEN.fullmatch(key) and int(row[1]) >= MIN_FIRST_COUNT:
            first[key] += int(row[1])

    for path in sorted((_package_dir("mimesis") / "datasets").glob("*/person.json")):
        doc = json.loads(path.read_text("utf-8"))
        for field, target in (("names", "first"), ("surnames", "surname")):
            raw = doc.get(field, [])
            values = [v for part in raw.values() for v in part] if isinstance(raw, dict) else raw
            for value in values:
                for token in re.split(r"[\s]+", fold(str(value))):
                    if not _TOKEN.fullmatch(token):
                        continue
                    if target == "first":
                        first[token] = max(first[token], 2 ** 6)  # listed: a known name
                    else:
                        surname.add(token)

    ratios_src = (_package_dir("probablepeople") / "ratios.py").read_text("utf-8")
    ratios = ast.literal_eval(ratios_src.split("=", 1)[1].strip())
    for key, share in ratios.items():
        token = fold(str(key))
        if _TOKEN.fullmatch(token) and float(share) < 0.9:
            surname.add(token)

    with gzip.open(_package_dir("spellchecker") / "resources" / "en.json.gz", "rt",
                   encoding="utf-8") as fh:
        for word, count in json.load(fh).items():
            if _TOKEN.fullmatch(word) and int(count) >= MIN_ENGLISH_COUNT:
                english[word] = int(count)

    # a rare first name that is neither a surname nor a word is classed exactly like an
    # absent token (name_recognizer.word_class): leave it out (a quarter of the entries)
    weak = {t for t, n in first.items() if round(math.log2(1 + n)) < 5}
    tokens = sorted((set(first) - weak) | surname | set(english))
    versions = {p: importlib.metadata.version(p) for p in
                ("nomquamgender", "mimesis", "probablepeople", "pyspellchecker")}
    packed = []
    for t in tokens:
        f = round(math.log2(1 + first.get(t, 0)))
        e = round(math.log2(1 + english.get(t, 0)))
        packed.append(chr(OFFSET + (f | int(t in surname) << 5 | e << 6)))
    header = f"# name lexicon v2; sources: {json.dumps(versions, sort_keys=True)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out, "wb", compresslevel=9, mtime=0) as gz:  # reproducible bytes
        gz.write("\n".join([header, "\t".join(tokens), "".join(packed)]).encode("utf-8"))
    return {"tokens": len(tokens), "first": len(first), "surname": len(surname),
            "english": len(english), "bytes": out.stat().st_size}


if __name__ == "__main__":
    print(json.dumps(build()))
