"""PERSON without a model: capitalised runs judged by the name lexicon and their context.

A *run* is a sequence of capitalised words (``Amara Okonkwo-Ibe``, ``O'Mahoney``,
``Wouter de Smit``, ``Vakris J. Kaupas``) on one line. Each word is classed from the
lexicon (:mod:`hermes_fed.privacy.name_lexicon`) as

* ``WORD``: an English word used more as a word than as a name (``Please``, ``Will``,
  ``May``, ``Pipeline``), or a software word (:data:`TECH_WORDS`, rare in the English
  frequency list);
* ``FIRST``: a first name far more than an English word (``Chioma``, ``Grace``, ``Mark``);
* ``NAMEISH``: a weaker name (a surname, a rare first name);
* ``UNKNOWN``: in no list at all (``Pianduangsri``).

A run is cut at its ``WORD`` words; each remaining segment is a person when

1. it follows a title (``Dr.``, ``Frau``, ``Sra.``): the whole following run, whatever its
   words (``Dr. King``);
2. it has two or more words, one of them ``FIRST`` (score 0.85), or none of them ``WORD``
   and at least one ``NAMEISH`` (0.6), or only ``UNKNOWN`` words (0.5);
3. it is one word after a greeting (``Hi Priya``, ``Thanks, Kwame``), and not a ``WORD``;
4. it is ``Surname, First`` (a ``FIRST`` after a comma).

And not a person when a software noun follows (``a Jenkins job``, ``Sinatra routes``,
``the Ruby gem``: :data:`TECH_NOUNS`), unless a title or greeting says otherwise; a single
word (``Bill the customer``, ``Grace period``, ``May 2024``, ``Rust``) needs a cue.
"""

from __future__ import annotations

import itertools
import re
import sys
from typing import Any

from hermes_fed.privacy.name_lexicon import NameLexicon, fold, lexicon
from hermes_fed.privacy.rules import Gate, Rule, RuleRecognizer

# Upper/lower case letters of the Latin script (ASCII, Latin-1, Extended-A/B, IPA for the
# Azerbaijani schwa, Extended Additional for Vietnamese): Python's ``re`` has no \p{Lu}, so
# the classes are spelled out once here.
_LATIN = [*range(0x41, 0x2B0), *range(0x1E00, 0x1F00)]
def words(text: str) -> frozenset[str]:
    """The whitespace-separated words of a data block."""
    return frozenset(text.split())


_UP = "".join(chr(c) for c in _LATIN if chr(c).isupper() and chr(c).isalpha())
_LOW = "".join(chr(c) for c in _LATIN if chr(c).islower() and chr(c).isalpha())
UP = f"[{_UP}]"
LOW = f"[{_LOW}]"
# One name word: Okonkwo-Ibe, O'Mahoney, D'Angelo, McDonald, DeShawn, al-Rashid, Jean-Pierre
NAME_WORD = (
    rf"(?:(?:al|el|ul|bin|abu|ibn|ben|bint)-)?"
    rf"(?:Mc|Mac|De|Di|Da|La|Le|Du|Van|Von|Fitz|[OoDdNL]['’ʼ])?{UP}{LOW}+"
    rf"(?:['’ʼ]{LOW}+)?(?:-(?:Mc|Mac)?{UP}{LOW}+)*"
)
PARTICLES = (
    "de", "da", "do", "dos", "das", "del", "della", "di", "du", "van", "von", "der", "den",
    "ter", "ten", "la", "le", "y", "e", "bin", "binti", "bint", "ibn", "al", "el", "zu", "af",
    "ap", "st.", "mac", "Ó", "Ní", "Nic", "Mhic", "Uí", "Ua", "Mac",
)
_PARTICLE = "(?:" + "|".join(re.escape(p) for p in PARTICLES) + ")"
_INITIAL = rf"{UP}\.(?:[ \t]?{UP}\.)*"
_BEFORE = r"(?<![\w@#$/\\.\-])"
_AFTER = r"(?![\w(\-]|\.\w)"
RUN = re.compile(
    rf"{_BEFORE}(?:{_PARTICLE}[ \t]+)*{NAME_WORD}{_AFTER}"
    rf"(?:[ \t]+(?:(?:{_PARTICLE}|{_INITIAL})[ \t]+)*{NAME_WORD}{_AFTER})*"
)
WORD_IN_RUN = re.compile(rf"{NAME_WORD}")
TITLES = (
    "Mr", "Mrs", "Ms", "Mx", "Miss", "Dr", "Dra", "Prof", "Sir", "Dame", "Lady", "Lord",
    "Herr", "Frau", "Mme", "Mlle", "M", "Sr", "Sra", "Srta", "Sig", "Sig.ra", "Dott",
    "Dott.ssa", "Ing", "Dipl.-Ing", "Dhr", "Mevr", "Rev", "Fr", "Hon", "Capt", "Pani",
    "Pan", "Univ.Prof", "Mag", "Mtro", "Lic", "Eng",
)
_TITLE_BEFORE = re.compile(
    r"(?:^|[\s(\[\"'|,;:])(?:" + "|".join(re.escape(t) for t in TITLES) +
    r")\.?(?:[ \t]+Dr\.?)?[ \t]+$"
)
GREETINGS = ("hi", "hello", "hey", "dear", "thanks", "thank you", "cheers", "bye", "morning",
             "good morning", "good afternoon", "hallo", "hola", "bonjour", "ciao", "olá",
             "welcome", "congrats", "congratulations", "sorry")
_GREETING_BEFORE = re.compile(
    r"(?:^|[\n.!?:;>|\"'(]|^\s*)\s*(?i:" + "|".join(re.escape(g) for g in GREETINGS) +
    r")[,!]?[ \t]+$"
)
#: Software words that the English frequency list (subtitles) hardly knows.
TECH_WORDS = words("""
api apis app apps sdk cli gui ui ux sql nosql json yaml toml xml html css http https
grpc rest graphql oauth jwt auth admin config configs configuration metrics logs logging
tracing retries retry timeout timeouts deploy deploys deployment deployments rollout
rollback repo repos repository commit commits branch branches merge rebase pull push
diff patch release releases changelog build builds pipeline pipelines job jobs runner
runners workflow workflows action actions cluster clusters node nodes pod pods container
containers image images registry docker kubernetes helm terraform compiler compilers
interpreter runtime framework frameworks library libraries package packages module
modules plugin plugins extension extensions gem gems crate crates npm pip wheel wheels
notebook notebooks kernel kernels dashboard dashboards alert alerts monitor monitoring
webhook webhooks endpoint endpoints server servers client clients proxy gateway router
routes route handler handlers middleware queue queues topic topics consumer consumers
producer producers worker workers broker brokers scheduler cron daemon service services
microservice microservices database databases schema schemas migration migrations index
indexes cache caches bucket buckets storage backup backups snapshot snapshots instance
instances region regions zone zones tenant tenants token tokens secret secrets
credential credentials key keys certificate certificates tls ssl ssh vpn dns cdn load
balancer firewall linter linters formatter tests test testing spec specs suite suites
fixture fixtures mock mocks coverage benchmark benchmarks profiler debugger debug stack
trace traces exception exceptions error errors warning warnings bug bugs issue issues
ticket tickets sprint backlog epic story stories model models dataset datasets training
inference embedding embeddings prompt prompts agent agents tool tools llm gpu cpu ram
ssd os linux unix macos windows android ios browser chrome firefox safari edge cloud
serverless lambda function functions script scripts shell bash zsh terminal console
editor ide vim emacs vscode plugin recipe recipes manifest manifests playbook playbooks
template templates theme themes widget widgets component components hook hooks store
state props types type interface interfaces class classes struct structs enum enums
trait traits macro macros lint format parser parsers lexer tokenizer encoder decoder
serializer adapter adapters driver drivers connector connectors integration integrations
sync async thread threads process processes pool pools socket sockets stream streams
event events message messages notification notifications email emails sms push pager
oncall incident incidents outage postmortem runbook runbooks playbook sla slo sli uptime
latency throughput pro plus premium enterprise cloud team teams studio code watch gold
run actions notes apple google microsoft amazon tesla ubuntu debian fedora centos alpine
github gitlab bitbucket slack zoom notion figma stripe twilio shopify salesforce oracle
ibm intel nvidia samsung sony adobe atlassian azure vercel netlify cloudflare datadog
postgres postgresql mysql mongodb sqlite redis rabbitmq nginx openai anthropic
huggingface
""")
#: A following word that makes the name a thing (``a Jenkins job``, ``Sinatra routes``).
TECH_NOUNS = TECH_WORDS | words("""
gem gems routes route period tests specs runner job jobs pipeline pipelines cluster
compiler types recipes manifests workers consumers notebooks dashboards alerts skills
shortcuts themes packages coroutines case syntax language lang project version versions
upgrade upgrades migration migrations rewrite step steps task tasks integration sdk api
""")
_WORD, _FIRST, _NAMEISH, _UNKNOWN, _SOFT = 0, 1, 2, 3, 4
_TITLE_KEYS = frozenset(fold(t) for t in TITLES)
# English function words and greetings never stand in a name, whatever the lexicon says
_STOP_KEYS = frozenset(w for g in GREETINGS for w in g.split()) | words("""
a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how i if in
into is it its itself just me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their
theirs them themselves then there these they this those through to too under until up
very was we were what when where which while who whom why will with would you your yours
yourself yourselves please thanks ok okay yes also via per re fwd fyi asap
""")
#: A whole value that is written like a person's name ("Okafor, Chidi", "Dr. Ana de Sá").
NAME_VALUE = re.compile(
    rf"(?:(?:{'|'.join(re.escape(t) for t in TITLES)})\.?[ \t]+)?(?:{_PARTICLE}[ \t]+)*"
    rf"{NAME_WORD}"
    rf"(?:(?:[ \t]+|,[ \t]*)(?:{_PARTICLE}[ \t]+)*(?:{_INITIAL}[ \t]+)?{NAME_WORD}){{0,5}}"
)
#: Keys of ``key=value`` log fields and headers of table columns that hold people.
PERSON_FIELDS = words("""
name fullname firstname lastname surname givenname familyname user username customer
customername contact contactname assignee assignedto owner author reporter recipient
recipientname sender sendername requester requestedby approver approvedby signer
signedby manager employee employeename patient patientname member attendee attendees
participant participants guest passenger driver reviewer reviewers createdby updatedby
person people agent toname fromname cc
""")
_LOG_FIELD = re.compile(
    r"(?<![\w.])([A-Za-z_]{2,24})[=:](?:\"([^\"\n]{1,80})\"|'([^'\n]{1,80})'"
    rf"|({NAME_WORD}))"
)
_TABLE_SEPARATOR = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")


class PersonNameRecognizer(RuleRecognizer):
    """PERSON spans from capitalised runs, the name lexicon and context (module docstring)."""

    def __init__(self, lex: NameLexicon | None = None) -> None:
        super().__init__("PersonNameRecognizer", Gate(regex=rf"{UP}{LOW}"), [])
        self.supported_entities = ["PERSON"]
        self.lexicon = lex if lex is not None else lexicon()
        self._rule = Rule("name-run", "PERSON", RUN, 0.85)

    def word_class(self, word: str) -> int:
        return word_class(word, self.lexicon)

    # --- detection ----------------------------------------------------------------------
    def find(self, text: str, folded: str | None = None) -> list[Any]:
        if self.gate is not None and not self.gate.open(text, folded or ""):
            return []
        out: list[Any] = []
        segments: list[tuple[int, int, list[int]]] = []  # (start, end, classes)
        for run in RUN.finditer(text):
            before = text[max(0, run.start() - 24):run.start()]
            words = [(m.start() + run.start(), m.end() + run.start(), m.group(0))
                     for m in WORD_IN_RUN.finditer(run.group(0))]
            start = run.start()  # with any leading particle ("van Dam")
            titled = next((i for i, (_, _, w) in enumerate(words[:-1]) if w in _TITLE_SET),
                          None)
            if titled is not None:
                # "Dear Herr Warmer", "Mr Smith": the words after the title are the name
                self._add(out, words[titled + 1][0], words[-1][1], 0.85)
                words = words[:titled]
            elif words and _TITLE_BEFORE.search(before):
                # after a title every word of the run is the name (``Dr. King``)
                if not all(w in _TITLE_SET for _, _, w in words):
                    self._add(out, start, words[-1][1], 0.85)
                continue
            current: list[tuple[int, int, int]] = []
            classes = [self.word_class(w) for _, _, w in words]
            for k, (s, e, w) in enumerate(words):
                cls = classes[k]
                if cls == _WORD and 0 < k < len(words) - 1 and classes[k - 1] == _FIRST \
                        and classes[k + 1] != _WORD and self.lexicon.first(w) >= 5:
                    cls = _SOFT  # "Olga Ants Soosaar": a name-ish word between two names
                if cls == _WORD:  # a hard word cuts the run; a soft one may stay
                    if current:
                        segments.append(_segment(current))
                    current = []
                else:
                    current.append((s, e, cls))
            if current:
                segments.append(_segment(current))
        self._fields(text, out)
        if "|" in text and "\n" in text:
            self._table(text, out)
        previous_end = -10
        for k, (start, end, classes) in enumerate(segments):
            score = self._judge(text, start, end, classes)
            if score is None and len(classes) == 1 and k + 1 < len(segments):
                score = self._reversed(text, segments[k + 1], start, end, classes)
                if score is not None:
                    end = segments[k + 1][1]
            if score is not None and start > previous_end:
                self._add(out, start, end, score)
                previous_end = end
        # the field, table and run passes may find the same span: keep one (the best)
        best: dict[tuple[int, int], Any] = {}
        for r in out:
            if (r.start, r.end) not in best or r.score > best[(r.start, r.end)].score:
                best[(r.start, r.end)] = r
        return list(best.values())

    def _judge(self, text: str, start: int, end: int, classes: list[int]) -> float | None:
        before = text[max(0, start - 24):start]
        if _TITLE_BEFORE.search(before):
            return 0.85
        greeted = _GREETING_BEFORE.search(before) is not None
        if not greeted and _tech_noun_after(text, end):
            return None
        if _SOFT in classes:
            names = [c for c in classes if c != _SOFT]
            if len(classes) >= 2 and names and (_FIRST in names or _has_soft_first(
                    text, start, end)):
                return 0.7
            return 0.7 if greeted and names == [_FIRST] and len(classes) == 1 else None
        if len(classes) >= 2:
            if _FIRST in classes:
                return 0.85
            if _NAMEISH in classes:
                return 0.6
            return 0.5 if not _article_before(before) else None
        return 0.7 if greeted else None

    def _reversed(self, text: str, nxt: tuple[int, int, list[int]], start: int, end: int,
                  classes: list[int]) -> float | None:
        """``Okafor, Chidi``: one name word, a comma, a single first name."""
        n_start, n_end, n_classes = nxt
        if text[end:n_start] != ", " or n_classes != [_FIRST]:
            return None
        # a field of its own (a log value, a table cell, a quoted string), not a list in prose
        if not (_FIELD_START.search(text, 0, start) and _FIELD_END.match(text, n_end)):
            return None
        if _tech_noun_after(text, n_end):
            return None
        return 0.7

    def looks_like_name(self, value: str) -> bool:
        return looks_like_name(value, self.lexicon)

    def _fields(self, text: str, out: list[Any]) -> None:
        """``user="Ana Lima"``, ``name='Okafor, Chidi'``, ``assignee=Kwame`` in log lines."""
        if "=" not in text and ":" not in text:
            return
        for m in _LOG_FIELD.finditer(text):
            key = m.group(1).replace("_", "").lower()
            if key not in PERSON_FIELDS:
                continue
            group = next(g for g in (2, 3, 4) if m.group(g) is not None)
            value = m.group(group)
            stripped = value.strip()
            if stripped and self.looks_like_name(stripped):
                start = m.start(group) + value.index(stripped)
                self._add(out, start, start + len(stripped), 0.8)

    def _table(self, text: str, out: list[Any]) -> None:
        """Cells of markdown-table columns whose header names people (``| Assignee |``)."""
        lines = text.split("\n")
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + 1)
        columns: set[int] = set()
        for i, line in enumerate(lines):
            if "|" not in line:
                columns = set()
                continue
            cells = _cells(line)
            if i + 1 < len(lines) and _TABLE_SEPARATOR.match(lines[i + 1]):
                columns = {k for k, (_, _, cell) in enumerate(cells)
                           if re.sub(r"[^a-z]", "", cell.lower()) in PERSON_FIELDS}
                continue
            for k, (s, e, cell) in enumerate(cells):
                if k in columns and cell and self.looks_like_name(cell):
                    self._add(out, offsets[i] + s, offsets[i] + e, 0.8)

    def _add(self, out: list[Any], start: int, end: int, score: float) -> None:
        out.append(self._result(self._rule, start, end, score))


_CLASSES: dict[str, int] = {}


def word_class(word: str, lex: NameLexicon | None = None) -> int:
    """``_WORD``, ``_FIRST``, ``_NAMEISH`` or ``_UNKNOWN`` (module docstring); memoised."""
    cached = _CLASSES.get(word)
    if cached is not None:
        return cached
    key = fold(word.replace("’", "'").replace("ʼ", "'"))
    if key in TECH_WORDS or key in _TITLE_KEYS or key in _STOP_KEYS:
        cls = _WORD
    else:
        lex = lex if lex is not None else lexicon()
        packed = max(lex.packed(p) for p in key.split("-")) if "-" in key else lex.packed(key)
        first, surname, english = packed & 31, bool(packed >> 5 & 1), packed >> 6
        if english >= 9 and first <= english - 1 and not (surname and english <= 12):
            # a word; ``_SOFT`` when it is also a name (Pop, Mercy, Young) and may stand in
            # one beside a real name word ("Felicia Pop")
            cls = _SOFT if (first >= 10 or surname) and english <= 17 else _WORD
        elif first >= 8 and first >= english + 2:
            cls = _FIRST
        elif first >= 5 or surname or english:
            cls = _NAMEISH
        else:
            cls = _UNKNOWN
    if len(_CLASSES) > 50_000:  # bounded: cleared, refilled by the words that recur
        _CLASSES.clear()
    _CLASSES[sys.intern(word)] = cls
    return cls


def looks_like_name(value: str, lex: NameLexicon | None = None) -> bool:
    """A whole value written like a person's name, with at least one word that is not an
    English or software word (``Release Notes`` is not; ``Okafor, Chidi``, ``Kwame`` are)."""
    if len(value) > 80 or NAME_VALUE.fullmatch(value) is None:
        return False
    classes = [word_class(m.group(0), lex) for m in WORD_IN_RUN.finditer(value)]
    names = [c for c in classes if c in (_FIRST, _NAMEISH, _UNKNOWN)]
    return bool(names) and (len(classes) >= 2 or names == [_FIRST])


def _cells(line: str) -> list[tuple[int, int, str]]:
    """(start, end, stripped text) of each cell of a markdown table row."""
    cells = []
    bars = [i for i, c in enumerate(line) if c == "|"]
    edges = ([-1] if line.lstrip()[:1] != "|" else []) + bars
    if line.rstrip()[-1:] != "|":
        edges.append(len(line))
    for a, b in itertools.pairwise(edges):
        raw = line[a + 1:b]
        stripped = raw.strip()
        start = a + 1 + (raw.index(stripped) if stripped else 0)
        cells.append((start, start + len(stripped), stripped))
    return cells


_TITLE_SET = frozenset(TITLES)


def _has_soft_first(text: str, start: int, end: int) -> bool:
    """A soft word of the segment is a common first name too (Mercy, Hope, Will)."""
    lex = lexicon()
    return any(word_class(m.group(0)) == _SOFT and lex.first(m.group(0)) >= 10
               for m in WORD_IN_RUN.finditer(text, start, end))


def _segment(words: list[tuple[int, int, int]]) -> tuple[int, int, list[int]]:
    return words[0][0], words[-1][1], [c for _, _, c in words]


_FIELD_START = re.compile(r"(?:^|[=|:\"'\n\t(\[])[ \t]*\Z")
_FIELD_END = re.compile(r"[ \t]*(?:$|[|\"'\n\t)\];])")
_NEXT_WORD = re.compile(r"[ \t]+([A-Za-z]+)")


def _tech_noun_after(text: str, end: int) -> bool:
    m = _NEXT_WORD.match(text, end)
    return m is not None and m.group(1).lower() in TECH_NOUNS


def _article_before(before: str) -> bool:
    return before.rstrip().lower().endswith((" the", " a", " an")) or before.strip().lower() in {
        "the", "a", "an"}
