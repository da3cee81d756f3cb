"""Structured-PII recognizers: stock presidio ones behind gates, and fast replacements.

* Stock (checksum or strict shape, good recall per FIELD_NOTES): credit card (Luhn, plus an
  issuer prefix/length check), IBAN (mod-97), US SSN, Bitcoin (base58check / bech32), MAC —
  each wrapped in a :class:`~hermes_fed.privacy.rules.GatedRecognizer`.
* E-mail and IP: stock's regexes backtrack from every word boundary (a third of our time
  before); here e-mails are scanned outward from each ``@`` (same public-suffix check as
  stock, on the bundled snapshot) and IPs are validated by :mod:`ipaddress`.
* Phone: stock runs ``phonenumbers.PhoneNumberMatcher`` over every text for every region
  (~74 % of its time) and rejects numbers ``phonenumbers`` deems *invalid* (87.5 % recall in
  FIELD_NOTES). Here one candidate regex finds digit groups and ``phonenumbers`` only judges
  the candidates, with ``is_possible_number`` (length per region) rather than
  ``is_valid_number`` (number-plan allocation, which rejects fictional 555 numbers).
* URL credentials (``user:pass@``, ``?token=``/``key``/``sig``..., also after ``:port``) and
  Ethereum addresses, which stock presidio does not cover.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

import phonenumbers
import tldextract

from hermes_fed.privacy.offline import import_presidio

import_presidio()

from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CryptoRecognizer,
    MacAddressRecognizer,
    UsSsnRecognizer,
)
from presidio_analyzer.predefined_recognizers.generic.iban_patterns import (  # noqa: E402
    regex_per_country as IBAN_FORMATS,
)

from hermes_fed.privacy.rules import (  # noqa: E402
    Gate,
    GatedRecognizer,
    GroupScanRecognizer,
    Rule,
    RuleRecognizer,
)

# The bundled public-suffix snapshot only: never a network fetch, whatever the environment.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None,
                                     fallback_to_snapshot=True)


# --- credit cards -------------------------------------------------------------------
_BRANDS: tuple[tuple[re.Pattern[str], frozenset[int]], ...] = (
    (re.compile(r"4"), frozenset({13, 16, 19})),                                   # Visa
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)"), frozenset({16})),       # Mastercard
    (re.compile(r"3[47]"), frozenset({15})),                                      # Amex
    (re.compile(r"6(?:011|5|4[4-9])"), frozenset({16, 17, 18, 19})),               # Discover
    (re.compile(r"3(?:6|8|0[0-5])"), frozenset({14})),                            # Diners
    (re.compile(r"35(?:2[89]|[3-8]\d)"), frozenset({16, 17, 18, 19})),            # JCB
    (re.compile(r"62"), frozenset({16, 17, 18, 19})),                             # UnionPay
)


_CARD_CANDIDATE = re.compile(
    r"(?<![\w+.\-/#])\d++(?![A-Za-z_])(?:[ \-]\d++(?![A-Za-z_]))*+"
)
_CARD_GROUP = re.compile(r"\d+")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(candidate: str) -> float | None:
    """Luhn plus issuer prefix and length (ISO/IEC 7812 ranges) and one separator style;
    the prefix/length check removes most Luhn-valid long ids (1 in 10 pass Luhn alone)."""
    digits = candidate.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or (" " in candidate and "-" in candidate):
        return None
    if not any(p.match(digits) and len(digits) in lengths for p, lengths in _BRANDS):
        return None
    return 1.0 if _luhn(digits) else None


def credit_card_recognizer() -> GroupScanRecognizer:
    """Credit cards as group windows (stock presidio's single greedy match fails the Luhn
    check when a card follows other digits, e.g. ``+15955552411 6011 6048 7647 5933``)."""
    return GroupScanRecognizer(
        "CreditCardRecognizer", Gate(regex=r"\d{4}[ \-]?\d{3}"),
        Rule("card-groups", "CREDIT_CARD", _CARD_CANDIDATE, 1.0, validate=_card),
        _CARD_GROUP, max_groups=5)


# --- phone -------------------------------------------------------------------------------
# Possessive quantifiers (Python >= 3.11): every digit group is consumed whole and never
# re-split, so a long run of separated digits cannot backtrack exponentially (ReDoS). Each
# group carries its own lookahead, so a run stops before a group glued to a word ("0x...")
# instead of failing as a whole; the windows of GroupScanRecognizer judge what is left.
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w+.\-/#])"
    r"(?:\+|00)?+(?:\(\d{1,4}\)|\d++(?![A-Za-z_]))"
    r"(?:[ .\-]?\(\d{1,4}\)|[ .\-]\d++(?![A-Za-z_]))*+"
    r"(?:\s?(?:ext\.?|x)\s?\d{1,5}(?!\w))?+"
)
_DATE_LIKE = re.compile(
    r"^(?:\d{4}[\-./ ]\d{1,2}[\-./ ]\d{1,2}|\d{1,2}[\-./ ]\d{1,2}[\-./ ]\d{4})(?:\b.*)?$"
)
_NOT_PHONE_SHAPE = re.compile(r"^\d{3}-\d{2}-\d{4}$|^\d{1,3}(?:\.\d{1,3}){3}$")
_DIGIT_GROUP = re.compile(r"(?:\+|00)?\(?\d+\)?")
_NATIONAL_SHAPE = re.compile(
    r"^(?:\(\d{2,4}\)\s?|\d{2,5}[ .\-])\d{2,4}(?:[ .\-]\d{2,4}){0,3}$"
)


class CandidatePhoneRecognizer(GroupScanRecognizer):
    """Phone numbers: a candidate regex, then ``phonenumbers`` length checks per region.

    Candidates starting with ``+`` (or ``00``) are parsed internationally; others must have
    a national shape (separated groups, or a parenthesised area code) and be a possible
    number in one of ``regions``. Unseparated digit runs without ``+`` are ids, not phones.
    """

    def __init__(self, regions: Sequence[str]) -> None:
        self.regions = tuple(regions)
        rule = Rule("phone-candidate", "PHONE_NUMBER", _PHONE_CANDIDATE, 0.7,
                    validate=self._judge)
        super().__init__("CandidatePhoneRecognizer", Gate(regex=r"\d[ .\-)]?\d{2}"), rule,
                         _DIGIT_GROUP, max_groups=7)

    def _judge(self, candidate: str) -> float | None:
        digits = sum(c.isdigit() for c in candidate)
        if not 7 <= digits <= 15 or _DATE_LIKE.match(candidate) or _NOT_PHONE_SHAPE.match(candidate):
            return None
        text = candidate.strip()
        if text.startswith(("+", "00")):
            return self._parse(text if text.startswith("+") else "+" + text[2:], None)
        if not 9 <= digits <= 11 or not _NATIONAL_SHAPE.match(text.split(" x")[0].split(" ext")[0]):
            return None
        for region in self.regions:
            score = self._parse(text, region)
            if score is not None:
                return score
        return None

    @staticmethod
    def _parse(text: str, region: str | None) -> float | None:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(number):
            return None
        return 0.85 if phonenumbers.is_valid_number(number) else 0.7


def lenient_phone(value: str) -> bool:
    """A value under a phone-like JSON key: 7-15 digits and only phone punctuation."""
    digits = sum(c.isdigit() for c in value)
    return 7 <= digits <= 15 and re.fullmatch(r"[+\d\s().\-x]+", value) is not None


# --- URL credentials ---------------------------------------------------------------------
_TOKEN_PARAMS = (
    r"access_token|id_token|refresh_token|token|auth|auth_token|authorization|key|api_key|"
    r"apikey|api-key|sig|signature|secret|client_secret|password|pwd|pass|session|sessionid|"
    r"code|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential"
)
_URL_USERINFO = re.compile(
    r"(?i)\b[a-z][a-z0-9+.\-]{1,20}://([^\s/?#@:\"'<>]+:[^\s/?#@\"'<>]*)@"
)
_URL_TOKEN_PARAM = re.compile(
    r"(?i)[?&#](?:" + _TOKEN_PARAMS + r")=([^&\s#\"'<>]+)"
)


def url_credential_recognizer() -> RuleRecognizer:
    """``scheme://user:password@host`` and token-bearing query parameters, any port."""
    return RuleRecognizer("UrlCredentialRecognizer", Gate(("://", "=")), [
        Rule("url-userinfo", "URL_CREDENTIAL", _URL_USERINFO, 0.9, 1),
        Rule("url-token-param", "URL_CREDENTIAL", _URL_TOKEN_PARAM, 0.85, 1),
    ])


# --- crypto (Ethereum; Bitcoin is stock) ---------------------------------------------------
def ethereum_recognizer() -> RuleRecognizer:
    return RuleRecognizer("EthereumAddressRecognizer", Gate(("0x",)), [
        Rule("eth-address", "CRYPTO", re.compile(r"\b0x[0-9a-fA-F]{40}\b"), 0.8),
    ])


# --- deny lists --------------------------------------------------------------------------
def deny_list_recognizer(terms: Sequence[str], name: str = "DenyListRecognizer"
                         ) -> RuleRecognizer | None:
    """Known customer/user names and identifiers: whole-word, case-insensitive.

    Longest terms first so "Acme Corp" wins over "Acme".
    """
    cleaned = sorted({t.strip() for t in terms if t.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    body = "|".join(re.escape(t) for t in cleaned)
    regex = re.compile(r"(?i)(?<!\w)(?:" + body + r")(?!\w)")
    return RuleRecognizer(name, Gate(tuple(cleaned), fold_case=True),
                          [Rule("deny-term", "DENY_LIST", regex, 1.0)])


# --- IBAN ------------------------------------------------------------------------------
# A run of space-separated alphanumeric tokens starting like an IBAN; windows of whole
# tokens are judged (a compact IBAN is one token, a grouped one is up to 9).
_IBAN_CANDIDATE = re.compile(
    r"(?i)(?<![A-Za-z0-9])[A-Z]{2}\d{2}[A-Z0-9]*+(?: [A-Z0-9]++)*+"
)
_IBAN_TOKEN = re.compile(r"[A-Za-z0-9]+")
_IBAN_COUNTRY = {cc: re.compile("^" + rx + "$") for cc, rx in IBAN_FORMATS.items()}


def _iban_valid(candidate: str) -> bool:
    value = candidate.upper()
    country = _IBAN_COUNTRY.get(value[:2])
    if country is None or country.match(value) is None:
        return False
    compact = value.replace(" ", "")
    numeric = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(numeric) % 97 == 1  # ISO 13616 mod-97-10


def _iban_score(candidate: str) -> float | None:
    return 1.0 if _iban_valid(candidate) else None


def iban_recognizer() -> GroupScanRecognizer:
    """IBANs: presidio's per-country formats and the mod-97 check on windows of tokens
    (stock presidio's greedy match swallows a following ``2024`` and then fails the
    checksum, leaving the IBAN in clear)."""
    return GroupScanRecognizer(
        "IbanCodeRecognizer", Gate(regex=r"(?i)(?<![A-Za-z0-9])[a-z]{2}\d{2} ?[a-z0-9]{4}"),
        Rule("iban", "IBAN_CODE", _IBAN_CANDIDATE, 1.0, validate=_iban_score),
        _IBAN_TOKEN, max_groups=9)


# --- e-mail and IP: anchored scans (stock regexes backtrack from every word boundary) ---
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&*+^_~.\-]{1,64}$")
_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}"
    r"[A-Za-z0-9])?)+"
)


_USERINFO_BEFORE = re.compile(r"://[^\s/?#@]*:$")


class EmailAddressRecognizer(RuleRecognizer):
    """E-mail addresses, scanned outward from each ``@``; the domain must end in a public
    suffix (presidio's own check, on the bundled snapshot)."""

    def __init__(self) -> None:
        super().__init__("EmailAddressRecognizer", Gate(("@",)), [])
        self.supported_entities = ["EMAIL_ADDRESS"]
        self._rule = Rule("email-at", "EMAIL_ADDRESS", _EMAIL_DOMAIN, 0.9)
        _OFFLINE_TLD("example.com")  # load the suffix snapshot now, not on the first event

    def find(self, text: str, folded: str | None = None) -> list[Any]:
        out = []
        at = text.find("@")
        while at != -1:
            left = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
            right = _EMAIL_DOMAIN.match(text, at + 1)
            if left is not None and right is not None:
                start = left.start()
                while start < at and text[start] in ".-":
                    start += 1
                # ``scheme://user:password@host`` is a URL credential, not an address
                in_userinfo = start > 0 and text[start - 1] == ":" and _USERINFO_BEFORE.search(
                    text, max(0, start - 256), start) is not None
                if start < at and not in_userinfo and _OFFLINE_TLD(right.group(0)).suffix:
                    out.append(self._result(self._rule, start, right.end(), 0.9))
            at = text.find("@", at + 1)
        return out


_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?:/(?:3[0-2]|[12]?\d))?(?!\d|\.\d)"
)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
    r"(?:%[0-9A-Za-z]+)?(?:/\d{1,3})?(?![\w:])"
)


def _valid_ip(candidate: str) -> float | None:
    try:
        ipaddress.ip_address(candidate.split("/")[0].split("%")[0])
    except ValueError:
        return None
    return 0.6 if candidate.strip(":") else None


def ip_recognizer() -> RuleRecognizer:
    """IPv4 / IPv6 (with zone and prefix), validated by :mod:`ipaddress`."""
    return RuleRecognizer("IpAddressRecognizer", Gate(
        regex=r"\d\.\d{1,3}\.\d|::|[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:"), [
        Rule("ipv4", "IP_ADDRESS", _IPV4, 0.6, validate=_valid_ip),
        Rule("ipv6", "IP_ADDRESS", _IPV6, 0.6, validate=_valid_ip),
    ])


# --- stock, gated ------------------------------------------------------------------------
def stock_recognizers() -> list[GatedRecognizer]:
    """Stock presidio pattern recognizers, each behind a necessary-condition gate (R1)."""
    return [
        GatedRecognizer(UsSsnRecognizer(), Gate(regex=r"\d{3}[ .\-]\d{2}[ .\-]\d{4}")),
        GatedRecognizer(CryptoRecognizer(), Gate(
            regex=r"(?<![A-Za-z0-9])(?:bc1|[13])[a-km-zA-HJ-NP-Z1-9]{25,61}(?![A-Za-z0-9])")),
        GatedRecognizer(MacAddressRecognizer(), Gate(
            regex=r"[0-9A-Fa-f]{2}([:\-])[0-9A-Fa-f]{2}\1[0-9A-Fa-f]{2}\1[0-9A-Fa-f]{2}\1"
                  r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.")),
    ]


# --- agent-text false positives ----------------------------------------------------------
NOT_PII_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("iso-timestamp", re.compile(
        r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?"
        r"(?:Z|[+\-]\d{2}:?\d{2})?)?\b")),
    ("uuid", re.compile(
        r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")),
    ("file-name", re.compile(
        r"(?<![\w\-])[\w\-]{1,128}\.(?:py|pyi|js|ts|tsx|jsx|json|ya?ml|toml|md|txt|cfg|ini|log|sh|rs|go|"
        r"java|rb|html|css|csv|lock|xml|sql|env|conf)\b")),
    ("version", re.compile(
        r"(?i)(?:\bv|\bversion\s*|==|>=|<=|~=|\^)\d+(?:\.\d+){1,3}(?:[\-+.][\w.]+)?\b")),
    ("long-numeric-id", re.compile(r"(?<![+\d])\d{11,}(?!\d)")),
    ("hex-digest", re.compile(r"\b[0-9a-f]{32,64}\b")),
)
#: Types whose validation is strong enough that a hard-negative context never vetoes them.
NEVER_SUPPRESSED: frozenset[str] = frozenset(
    {"CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS", "DENY_LIST", "URL_CREDENTIAL", "API_KEY",
     "AWS_ACCESS_KEY_ID", "AWS_SECRET_KEY", "JWT", "BEARER_TOKEN", "PRIVATE_KEY",
     "PASSWORD", "SECRET", "CRYPTO"}
)


def not_pii_spans(text: str) -> list[tuple[int, int]]:
    """Spans of agent-text hard negatives (timestamps, UUIDs, file names, versions, ids)."""
    spans: list[tuple[int, int]] = []
    for _, pattern in NOT_PII_PATTERNS:
        spans.extend(m.span() for m in pattern.finditer(text))
    return spans
