"""Labelled corpus of person names and street addresses in agent text, from Faker.

The detector finds names with a lexicon built from other sources (nomquamgender,
mimesis, the US census surname list, pyspellchecker's English frequencies; see
``hermes_fed/privacy/name_lexicon.py``), so this corpus takes its names and addresses from
Faker (MIT), whose per-locale lists are curated independently: 60 locales, romanised
where Faker writes them in another script (Faker's own romanisation for Chinese and
Japanese, a Revised Romanisation of Hangul for Korean, ISO 9-style transliteration for
Cyrillic and Greek).

Each document plants values at known places in one of four contexts an agent session
holds: free text (chat turns), JSON tool-call arguments, log lines, markdown tables. Hard
negatives (words that are names but are not people here: "a Jenkins job", "the Ruby gem",
"Grace period", "May 2024"; installed Python distribution names; products; code
identifiers; dates) are planted the same way and must survive redaction.

    from bench.redaction.names_corpus import generate
    docs = generate(1200, seed=7)   # list[NameDoc]
"""

from __future__ import annotations

import calendar
import importlib.metadata
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faker import Faker

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Planted:
    """A planted value: where it is (a JSON path, () for a text document) and its span."""

    entity: str  # PERSON | STREET_ADDRESS, or the hard negative's kind
    path: Path
    start: int
    end: int
    form: str  # how it was written: full, titled, reversed, first-only, ... (negatives: "")


@dataclass(slots=True)
class NameDoc:
    locale: str
    region: str
    context: str  # free_text | json | log | table
    text: str = ""  # free_text, log and table documents
    tool: str = ""  # json documents: the tool name
    arguments: dict[str, Any] = field(default_factory=dict)  # json documents
    gold: list[Planted] = field(default_factory=list)
    negatives: list[Planted] = field(default_factory=list)


# --- where names come from: Faker locales, grouped by region ------------------------------
NAME_LOCALES: dict[str, str] = {
    "en_US": "North America", "en_GB": "British Isles", "en_IE": "British Isles",
    "ga_IE": "British Isles", "en_NZ": "Oceania",
    "de_DE": "Western Europe", "de_AT": "Western Europe", "de_CH": "Western Europe",
    "fr_FR": "Western Europe", "fr_CA": "North America", "nl_NL": "Western Europe",
    "nl_BE": "Western Europe", "it_IT": "Southern Europe", "es_ES": "Southern Europe",
    "pt_PT": "Southern Europe", "el_GR": "Southern Europe", "ro_RO": "Eastern Europe",
    "hu_HU": "Eastern Europe",
    "sv_SE": "Nordic", "no_NO": "Nordic", "da_DK": "Nordic", "fi_FI": "Nordic",
    "is_IS": "Nordic",
    "pl_PL": "Slavic", "cs_CZ": "Slavic", "sk_SK": "Slavic", "hr_HR": "Slavic",
    "sl_SI": "Slavic", "ru_RU": "Slavic", "uk_UA": "Slavic", "bg_BG": "Slavic",
    "lt_LT": "Baltic", "lv_LV": "Baltic", "et_EE": "Baltic",
    "tr_TR": "Turkic", "az_AZ": "Turkic", "uz_UZ": "Turkic",
    "es_MX": "Latin America", "es_AR": "Latin America", "es_CO": "Latin America",
    "es_CL": "Latin America", "pt_BR": "Latin America",
    "yo_NG": "West Africa", "ig_NG": "West Africa", "ha_NG": "West Africa",
    "en_NG": "West Africa", "tw_GH": "West Africa",
    "en_KE": "East Africa", "sw": "East Africa", "zu_ZA": "Southern Africa",
    "fr_DZ": "Arabic (romanised)", "en_PK": "South Asia",
    "en_IN": "South Asia", "en_TH": "Southeast Asia", "vi_VN": "Southeast Asia",
    "id_ID": "Southeast Asia",
    "zh_CN": "East Asia", "zh_TW": "East Asia", "ja_JP": "East Asia", "ko_KR": "East Asia",
}
SURNAME_FIRST = {"zh_CN", "zh_TW", "ko_KR", "hu_HU", "vi_VN"}
ADDRESS_LOCALES: dict[str, str] = {
    "en_US": "US", "en_CA": "CA", "en_GB": "UK", "en_IE": "IE", "en_AU": "AU",
    "de_DE": "DE", "de_AT": "AT", "de_CH": "CH", "fr_FR": "FR", "fr_CH": "CH",
    "es_ES": "ES", "es_MX": "MX", "it_IT": "IT", "nl_NL": "NL", "pt_PT": "PT",
    "pt_BR": "BR", "sv_SE": "SE", "da_DK": "DK", "pl_PL": "PL", "no_NO": "NO",
}
TITLES: dict[str, tuple[str, ...]] = {
    "en": ("Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Mr", "Dr"),
    "de": ("Herr", "Frau", "Dr.", "Prof. Dr."), "fr": ("M.", "Mme", "Dr", "Mlle"),
    "es": ("Sr.", "Sra.", "Dr.", "Dra."), "pt": ("Sr.", "Sra.", "Dr."),
    "it": ("Sig.", "Sig.ra", "Dott.", "Dott.ssa"), "nl": ("Dhr.", "Mevr.", "Dr."),
}

# --- romanisation of what Faker writes in another script ----------------------------------
_CYRILLIC = dict(zip(
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґ",
    ["a", "b", "v", "g", "d", "e", "yo", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p",
     "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya",
     "i", "yi", "ye", "g"], strict=True))
_GREEK = dict(zip(
    "αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώϊϋΐΰ",
    ["a", "v", "g", "d", "e", "z", "i", "th", "i", "k", "l", "m", "n", "x", "o", "p", "r",
     "s", "s", "t", "y", "f", "ch", "ps", "o", "a", "e", "i", "i", "o", "y", "o", "i", "y",
     "i", "y"], strict=True))
_HANGUL_INITIAL = ["g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj",
                   "ch", "k", "t", "p", "h"]
_HANGUL_VOWEL = ["a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe",
                 "yo", "u", "wo", "we", "wi", "yu", "eu", "ui", "i"]
_HANGUL_FINAL = ["", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p",
                 "l", "m", "p", "p", "t", "t", "ng", "t", "t", "k", "t", "p", "t"]
_KOREAN_SURNAMES = {"Gim": "Kim", "I": "Lee", "Bak": "Park", "Choe": "Choi", "Jeong": "Jung",
                    "Gang": "Kang", "Jo": "Cho", "Yun": "Yoon", "Im": "Lim", "Sin": "Shin"}


def _table_translit(text: str, table: dict[str, str]) -> str:
    out = []
    for ch in text:
        low = ch.lower()
        rom = table.get(low)
        if rom is None:
            out.append(ch)
        else:
            out.append(rom.capitalize() if ch != low and rom else rom)
    return "".join(out)


def _hangul(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch) - 0xAC00
        if not 0 <= code < 11172:
            out.append(ch)
            continue
        out.append(_HANGUL_INITIAL[code // 588] + _HANGUL_VOWEL[(code % 588) // 28]
                   + _HANGUL_FINAL[code % 28])
    word = "".join(out).capitalize()
    return word


def romanise(locale: str, text: str) -> str:
    if locale in {"ru_RU", "uk_UA", "bg_BG"}:
        return _table_translit(text, _CYRILLIC)
    if locale == "el_GR":
        return _table_translit(text, _GREEK)
    if locale == "ko_KR":
        return _hangul(text)
    return text


class NameSource:
    """Names of one Faker locale, romanised, in the forms agent text writes them."""

    def __init__(self, locale: str, seed: int) -> None:
        self.locale = locale
        self.faker = Faker(locale)
        self.faker.seed_instance(seed)
        self.lang = locale.split("_")[0]

    def first(self) -> str:
        f = self.faker
        if self.locale in {"zh_CN", "zh_TW", "ja_JP"}:  # zh_TW's are upper case
            return str(f.first_romanized_name()).title()
        return romanise(self.locale, str(f.first_name()))

    def last(self) -> str:
        f = self.faker
        if self.locale in {"zh_CN", "zh_TW", "ja_JP"}:
            return str(f.last_romanized_name()).title()
        last = romanise(self.locale, str(f.last_name()))
        return _KOREAN_SURNAMES.get(last, last) if self.locale == "ko_KR" else last

    def full(self, rng: random.Random) -> tuple[str, str]:
        """A full name and its form label."""
        first, last = self.first(), self.last()
        roll = rng.random()
        if self.locale in SURNAME_FIRST:
            return f"{last} {first}", "surname-first"
        if roll < 0.12:
            return f"{first} {self.first()} {last}", "middle-name"
        if roll < 0.2 and self.lang in {"es", "pt"}:
            return f"{first} {last} {self.last()}", "two-surnames"
        if roll < 0.26:
            return f"{first} {last}-{self.last()}", "hyphenated"
        if roll < 0.34 and self.locale not in {"ja_JP"}:
            native = str(self.faker.name())
            if all(ord(c) < 0x370 for c in native):  # Latin script only
                return native, "faker-native"
        if roll < 0.4:
            return f"{first} {rng.choice('ABCDEFGHJKLMNPRST')}. {last}", "initial"
        return f"{first} {last}", "full"

    def title(self, rng: random.Random) -> str:
        return rng.choice(TITLES.get(self.lang, TITLES["en"]))


# --- hard negatives: names that are not people here, dates, products, identifiers ---------
def _installed_distributions() -> list[str]:
    names = {str(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    return sorted(n.replace("_", "-").capitalize() for n in names
                  if n and n[0].isalpha() and "-" not in n and "_" not in n and len(n) > 3)


_DISTRIBUTIONS = _installed_distributions()
TECH_PHRASES = (
    "a Jenkins job", "the Jenkins pipeline", "Sinatra routes", "the Ruby gem", "Ruby on Rails",
    "Flask", "Django", "Rust", "the Rust compiler", "Grace period", "a grace period",
    "Bill the customer", "Kafka consumers", "a Cassandra cluster", "Julia notebooks",
    "an Ada compiler", "Pascal case", "Haskell types", "Elixir", "Crystal", "Dart",
    "Kotlin coroutines", "Swift packages", "Hugo themes", "Jekyll", "Gatsby", "Ansible",
    "Chef recipes", "Puppet manifests", "Apache Tomcat", "Jetty", "Celery workers",
    "Jasmine specs", "Mocha tests", "Karma runner", "Grafana dashboards", "Kibana",
    "Prometheus alerts", "Sentry", "Jira", "Confluence", "Heroku", "Alexa skills",
    "Siri shortcuts", "Watson", "the Claude API", "Gemini", "Llama 3", "Mistral",
    "Ubuntu Jammy", "macOS Sonoma", "Android Pie", "Windows Server", "Debian Bookworm",
    "Max retries", "Mark as read", "Will do", "Hope this helps", "Pull Request",
    "Stack Overflow", "Code Review", "Release Notes", "Visual Studio Code",
    "Microsoft Teams", "Google Cloud Run", "Amazon S3", "Apple Watch", "GitHub Actions",
    "Red Hat Enterprise Linux", "Tesla Model 3", "Rose Gold", "Victoria Metrics",
)
CODE_IDENTIFIERS = (
    "JohnDoeService", "get_user_name", "MaryQueue", "setGraceTimeout", "DEFAULT_MAX_RETRIES",
    "FlaskForm", "RubyParser", "JenkinsClient", "class Victoria", "parseMayDate",
    "user.first_name", "customer.last_name", "PatrickStarHandler", "LeeWayIterator",
)


def _date_phrase(rng: random.Random) -> str:
    month = calendar.month_name[rng.randint(1, 12)]
    day = calendar.day_name[rng.randint(0, 6)]
    return rng.choice([f"{month} {rng.randint(2019, 2026)}", f"{month} {rng.randint(1, 28)}",
                       f"on {day}", f"{day}, {month} {rng.randint(1, 28)}",
                       f"May {rng.randint(2019, 2026)}", f"since {month}"])


NEGATIVES: dict[str, Callable[[random.Random], str]] = {
    "tech-name": lambda r: r.choice(TECH_PHRASES),
    "distribution": lambda r: r.choice(_DISTRIBUTIONS),
    "date": _date_phrase,
    "code-identifier": lambda r: r.choice(CODE_IDENTIFIERS),
}

# --- templates ------------------------------------------------------------------------
# {P}, {P2}: full names; {TP}: title + full name; {TL}: title + surname; {R}: "Last, First";
# {F}: first name alone (a greeting); {A}: a full address; {S}: a street line alone;
# {~kind}: a hard negative.
FREE_TEXT = [
    "{P} asked for a refund on the annual plan; the {~tech-name} step failed again.",
    "Please forward the invoice to {P} before the {~date} close.",
    "Hi {F}, your ticket about {~tech-name} is resolved.",
    "Meeting notes: {P} and {P2} agreed to ship the fix for {~tech-name}.",
    "Can you draft a reply to {P}? The complaint is about {~distribution} being slow.",
    "The contract was signed by {TP} on {~date}.",
    "I spoke with {TL} yesterday about the {~distribution} migration.",
    "{P}'s account was locked after three failed logins.",
    "Assign the {~tech-name} rewrite to {P} and cc {P2}.",
    "Thanks {F}! I'll update {~code-identifier} and re-run the tests.",
    "Ship the replacement to {A} and mark the order as urgent.",
    "My new address is {A}, please update it before the {~date} invoice.",
    "The parcel for {P} was returned from {S}.",
    "Customer {P} lives at {A}; the courier could not find the entrance.",
    "Dear {TL}, we received your request regarding {~tech-name}.",
    "According to {P}, the {~distribution} upgrade broke the build on {~date}.",
    "Escalate to {TP}: the {~tech-name} outage affects billing.",
    "We moved the office to {S} in {~date}.",
]
FREE_TEXT_CLEAN = [
    "The {~tech-name} failed on {~date}; I restarted {~distribution} and it passed.",
    "Use {~code-identifier} instead of {~code-identifier} in the {~distribution} adapter.",
    "Pinned {~distribution} and {~distribution}; {~tech-name} is next.",
    "Bill the customer on {~date} and extend the grace period.",
]
LOG = [
    "{ts} INFO  auth: login ok user=\"{P}\" role=admin",
    "{ts} WARN  billing: card declined for customer {P} (plan=pro, job={~tech-name})",
    "{ts} INFO  approvals: change 48213 approved by {P}",
    "[{ts}] {P} joined the channel #deploys",
    "{ts} DEBUG crm: updated contact name='{R}' source={~distribution}",
    "{ts} INFO  shipping: label created for {P}, {A}",
    "{ts} ERROR geocode: no match for address \"{A}\"",
    "{ts} INFO  mail: reminder queued for {TP} re {~tech-name}",
]
LOG_CLEAN = [
    "{ts} INFO  ci: {~tech-name} finished in 42s ({~distribution})",
    "{ts} WARN  scheduler: next run {~date}, handler={~code-identifier}",
]
TABLE = [
    "| Name | Role | Team |\n|---|---|---|\n| {P} | Engineer | Payments |\n"
    "| {P2} | Manager | {~tech-name} |",
    "| Ticket | Assignee | Status |\n|---|---|---|\n| 4821 | {P} | open |\n"
    "| 4822 | {P2} | closed |",
    "| Customer | Plan | Since |\n|---|---|---|\n| {R} | Pro | {~date} |",
    "| Contact | Address |\n|---|---|\n| {P} | {A} |",
    "| Site | Street |\n|---|---|\n| Warehouse | {S} |",
]
TABLE_CLEAN = [
    "| Package | Version |\n|---|---|\n| {~distribution} | 2.1.0 |\n| {~distribution} | 0.9 |",
    "| Job | Schedule |\n|---|---|\n| {~tech-name} | {~date} |",
]
TOOL_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("send_email", {"to_name": "{P}", "subject": "Your {~tech-name} request",
                    "body": "Dear {TL},\nthe refund was issued on {~date}."}),
    ("create_ticket", {"assignee": "{P}", "reporter": "{P2}",
                       "title": "{~tech-name} fails after {~date} release"}),
    ("crm_update", {"contact": {"first_name": "{F}", "last_name": "{L}"},
                    "notes": "Prefers email; uses {~distribution}."}),
    ("book_meeting", {"attendees": ["{P}", "{P2}"], "topic": "{~tech-name}"}),
    ("lookup_customer", {"customer_name": "{P}", "fields": ["plan", "since"]}),
    ("send_message", {"recipient": "{P}", "text": "Hi {F}, the {~tech-name} fix is live."}),
    ("update_owner", {"owner": "{P}", "service": "{~distribution}"}),
    ("ship_order", {"order_id": "A-1042", "ship_to": {"name": "{P}", "street": "{S}"}}),
    ("update_address", {"customer": "{P}", "address": "{A}"}),
    ("geocode", {"query": "{A}"}),
    ("note", {"text": "Called {P} about the delivery to {A}."}),
]
TOOL_CALLS_CLEAN: list[tuple[str, dict[str, Any]]] = [
    ("run_job", {"job": "{~tech-name}", "when": "{~date}"}),
    ("pip_install", {"packages": ["{~distribution}", "{~distribution}"]}),
    ("refactor", {"symbol": "{~code-identifier}", "note": "keep {~tech-name} working"}),
]
_SLOT = re.compile(r"\{(~[a-z\-]+|[A-Z]+\d?|ts)\}")
_PARTICLES = frozenset({
    "de", "da", "do", "dos", "das", "del", "della", "di", "du", "van", "von", "der", "den",
    "ter", "ten", "la", "le", "y", "e", "bin", "binti", "ibn", "al", "el", "zu", "af",
})


class _Filler:
    """Fills one document's slots, recording where each planted value lands."""

    def __init__(self, names: NameSource, addresses: Faker | None, rng: random.Random,
                 ts: str) -> None:
        self.names, self.addresses, self.rng, self.ts = names, addresses, rng, ts
        self.persons: dict[str, tuple[str, str]] = {}
        self.first = names.first()
        self.last = names.last()

    def value(self, slot: str) -> tuple[str, str, int, int, str] | None:
        """(text, entity, start, end, form) of a slot; start/end within the text."""
        rng, n = self.rng, self.names
        if slot.startswith("~"):
            neg = NEGATIVES[slot[1:]](rng)
            return neg, slot[1:], 0, len(neg), ""
        if slot == "ts":
            return self.ts, "", 0, 0, ""
        if slot in {"P", "P2"}:
            if slot not in self.persons:
                self.persons[slot] = (n.full(rng) if slot == "P2" else
                                      (f"{self.first} {self.last}", "full")
                                      if rng.random() < 0.3 and n.locale not in SURNAME_FIRST
                                      else n.full(rng))
            name, form = self.persons[slot]
            return name, "PERSON", 0, len(name), form
        if slot == "TP":
            title, (name, _) = n.title(rng), n.full(rng)
            return f"{title} {name}", "PERSON", len(title) + 1, len(title) + 1 + len(name), "titled"
        if slot == "TL":
            title = n.title(rng)
            return (f"{title} {self.last}", "PERSON", len(title) + 1,
                    len(title) + 1 + len(self.last), "title-surname")
        if slot == "R":
            name = f"{self.last}, {self.first}"
            return name, "PERSON", 0, len(name), "reversed"
        if slot == "F":
            return self.first, "PERSON", 0, len(self.first), "first-only"
        if slot == "L":
            return self.last, "PERSON", 0, len(self.last), "surname-only"
        if slot in {"A", "S"}:
            assert self.addresses is not None
            street = " ".join(str(self.addresses.street_address()).split())
            if slot == "S":
                return street, "STREET_ADDRESS", 0, len(street), "street"
            lines = [" ".join(line.split()) for line in str(self.addresses.address()).split("\n")]
            full = ", ".join(x for x in lines if x)
            return full, "STREET_ADDRESS", 0, len(full), "full-address"
        raise KeyError(slot)

    def fill(self, template: str, path: Path, gold: list[Planted],
             negatives: list[Planted]) -> str:
        out: list[str] = []
        cursor = 0
        length = 0
        for m in _SLOT.finditer(template):
            literal = template[cursor:m.start()]
            out.append(literal)
            length += len(literal)
            got = self.value(m.group(1))
            assert got is not None
            text, entity, s, e, form = got
            if entity in {"PERSON", "STREET_ADDRESS"}:
                gold.append(Planted(entity, path, length + s, length + e, form))
            elif entity:
                negatives.append(Planted(entity, path, length + s, length + e, ""))
            out.append(text)
            length += len(text)
            cursor = m.end()
        out.append(template[cursor:])
        return "".join(out)

    def fill_json(self, value: Any, path: Path, gold: list[Planted],
                  negatives: list[Planted]) -> Any:
        if isinstance(value, str):
            return self.fill(value, path, gold, negatives)
        if isinstance(value, dict):
            return {k: self.fill_json(v, (*path, k), gold, negatives) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill_json(v, (*path, i), gold, negatives) for i, v in enumerate(value)]
        return value


#: Titles and degrees Faker writes around names ("Dr.", "Dipl.-Ing.", "B.Eng.", "drg.").
_HONORIFICS = frozenset({
    *(w.lower().rstrip(".") for ts in TITLES.values() for t in ts for w in t.split()),
    "dr", "mr", "mrs", "ms", "mx", "miss", "prof", "dipl", "ing", "univ", "eng", "drg", "ir",
    "hon", "b", "m", "a", "sc", "ba", "ma", "bsc", "msc", "phd", "md", "dds", "dvm", "jr",
    "sr", "ii", "iii", "iv", "mag", "lic", "mtro", "sig", "ra", "ssa", "dott", "pani", "pan",
    "herr", "frau", "mme", "mlle", "ind", "rev", "sir", "dame", "dhr", "mevr", "h", "c",
})


def significant(value: str, entity: str = "PERSON") -> list[tuple[int, int]]:
    """Spans of a planted value that must not survive: its words, less name particles
    ("van", "de", "bin"), titles and degrees, which identify no one on their own."""
    return [m.span() for m in re.finditer(r"[^\W_]+", value)
            if m.group(0).lower() not in _PARTICLES
            and (entity != "PERSON" or m.group(0).lower() not in _HONORIFICS)]


def generate(n: int, seed: int = 7, clean_share: float = 0.25) -> list[NameDoc]:
    """``n`` documents, a quarter of them (``clean_share``) holding only hard negatives."""
    rng = random.Random(seed)
    name_locales = sorted(NAME_LOCALES)
    address_locales = sorted(ADDRESS_LOCALES)
    sources: dict[str, NameSource] = {}
    address_fakers: dict[str, Faker] = {}
    contexts = ["free_text", "json", "log", "table"]
    docs: list[NameDoc] = []
    for i in range(n):
        context = contexts[i % 4]
        clean = rng.random() < clean_share
        locale = rng.choice(name_locales)
        names = sources.setdefault(locale, NameSource(locale, seed + len(sources)))
        addr_locale = rng.choice(address_locales)
        if addr_locale not in address_fakers:
            address_fakers[addr_locale] = Faker(addr_locale)
            address_fakers[addr_locale].seed_instance(seed + 1000 + len(address_fakers))
        filler = _Filler(names, address_fakers[addr_locale], rng,
                         f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
                         f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
                         f"{rng.randint(0, 59):02d}")
        doc = NameDoc(locale="-" if clean else locale,
                      region="hard negatives" if clean else NAME_LOCALES[locale],
                      context=context)
        if context == "json":
            tool, args = rng.choice(TOOL_CALLS_CLEAN if clean else TOOL_CALLS)
            doc.tool = tool
            doc.arguments = filler.fill_json(args, (), doc.gold, doc.negatives)
        else:
            pool = {"free_text": (FREE_TEXT, FREE_TEXT_CLEAN), "log": (LOG, LOG_CLEAN),
                    "table": (TABLE, TABLE_CLEAN)}[context]
            doc.text = filler.fill(rng.choice(pool[1] if clean else pool[0]), (),
                                   doc.gold, doc.negatives)
        # an address is labelled with its own country (names with the name's locale)
        doc.gold = [Planted(g.entity, g.path, g.start, g.end,
                            f"{g.form}:{ADDRESS_LOCALES[addr_locale]}"
                            if g.entity == "STREET_ADDRESS" else g.form) for g in doc.gold]
        docs.append(doc)
    return docs


def field_text(doc: NameDoc, path: Path) -> str:
    """The string a planted value lives in."""
    if doc.context != "json":
        return doc.text
    value: Any = doc.arguments
    for key in path:
        value = value[key]
    assert isinstance(value, str)
    return value


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
