"""The name lexicon: how much a word is a first name, a surname, an English word.

Loaded once per process from ``data/name_lexicon.tsv.gz`` (built by
``name_lexicon_build.py`` from nomquamgender, mimesis, the US census via probablepeople and
pyspellchecker; nothing is downloaded). Tokens are ASCII-folded (``Björn`` -> ``bjorn``,
``Şükrü`` -> ``sukru``), as nomquamgender stores them.

>>> lex = lexicon()
>>> lex.first("Chioma") > lex.english("Chioma")
True
"""

from __future__ import annotations

import gzip
import threading
import unicodedata
from pathlib import Path

DATA_FILE = Path(__file__).with_name("data") / "name_lexicon.tsv.gz"
#: Packed values are stored as characters ``chr(OFFSET + value)`` (see the builder).
OFFSET = 256
_SPECIAL = str.maketrans({
    "ß": "ss", "ł": "l", "Ł": "l", "ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "đ": "d",
    "Đ": "d", "ı": "i", "ə": "e", "Ə": "e", "þ": "th", "Þ": "th", "ð": "d", "œ": "oe",
    "Œ": "oe", "ħ": "h", "’": "'",
})
_LOCK = threading.Lock()
_LOADED: NameLexicon | None = None


def fold(token: str) -> str:
    """Lower case, accents and ligatures removed (the lexicon's key)."""
    if token.isascii():
        return token.lower()
    token = token.translate(_SPECIAL)
    return "".join(c for c in unicodedata.normalize("NFKD", token)
                   if not unicodedata.combining(c)).lower()


class NameLexicon:
    """Token -> (first-name weight, surname flag, English weight); weights are
    ``round(log2(1 + count))`` of their source's count."""

    __slots__ = ("_entries", "source")

    def __init__(self, entries: dict[str, int], source: str) -> None:
        self._entries = entries  # OFFSET + (first | surname << 5 | english << 6)
        self.source = source

    def __len__(self) -> int:
        return len(self._entries)

    def packed(self, token: str) -> int:
        return self._entries.get(fold(token), OFFSET) - OFFSET

    def first(self, token: str) -> int:
        return self.packed(token) & 31

    def surname(self, token: str) -> bool:
        return bool(self.packed(token) >> 5 & 1)

    def english(self, token: str) -> int:
        return self.packed(token) >> 6

    @classmethod
    def load(cls, path: Path = DATA_FILE) -> NameLexicon:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            header, tokens, packed = fh.read().split("\n")
        entries = dict(zip(tokens.split("\t"), map(ord, packed), strict=True))
        return cls(entries, header.lstrip("# "))


def lexicon() -> NameLexicon:
    """The process-wide lexicon (loaded on first use, ~0.1 s)."""
    global _LOADED
    with _LOCK:
        if _LOADED is None:
            _LOADED = NameLexicon.load()
        return _LOADED
