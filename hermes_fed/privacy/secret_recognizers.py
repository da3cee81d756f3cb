"""Secret recognizers: detect-secrets plugins wrapped as presidio recognizers, plus rules
for the formats detect-secrets 1.5 does not know.

detect-secrets' ``RegexBasedDetector`` plugins carry a ``denylist`` of compiled patterns and
yield matched *values*, not spans; :func:`from_detect_secrets` turns each pattern into a
:class:`~hermes_fed.privacy.rules.Rule` (first non-empty group = the secret, detect-secrets'
own convention) and keeps the plugin's formal validation (JWT). Gaps filled by hand, each
checked against the vendor's published format:

* OpenAI project/service keys (``sk-proj-...``): detect-secrets requires the legacy
  ``T3BlbkFJ`` marker; Anthropic ``sk-ant-api03-...``; GitHub fine-grained ``github_pat_``;
  Stripe test keys and keys longer than 24 characters; Google ``AIza``; Hugging Face ``hf_``;
* AWS secret access keys outside quotes (``aws_secret_access_key = ...`` in INI/env/YAML);
* bearer tokens, PEM private-key *blocks* (detect-secrets only flags the header line), and
  password/secret assignments (``password: ...``, ``Password=...;`` in connection strings).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from hermes_fed.privacy.rules import Gate, Rule, RuleRecognizer, Validator

TOKEN_CHARS = r"A-Za-z0-9_\-"
_PLACEHOLDER_VALUE = re.compile(
    r"^(?:<[^>]*>|\$\{[^}]*\}|\{\{.*\}\}|\$[A-Z_][A-Z0-9_]*|\*+|x{3,}|X{3,}|\.{3,}|null|none|"
    r"nil|true|false|changeme|redacted|string|required|optional|os\.environ.*|env\(.*)$",
    re.IGNORECASE,
)


def from_detect_secrets(
    plugin: RegexBasedDetector,
    entity: str,
    gate: Gate | None,
    *,
    indices: Sequence[int] | None = None,
    score: float = 0.9,
    extend: str | None = TOKEN_CHARS,
    validate: Validator | None = None,
    strip: str = "",
) -> RuleRecognizer:
    """Wrap a detect-secrets regex plugin (its ``denylist``) as a gated presidio recognizer."""
    patterns = list(plugin.denylist)
    chosen = [patterns[i] for i in indices] if indices is not None else patterns
    name = type(plugin).__name__
    rules = [
        Rule(f"{name}#{i}", entity, p, score, validate=validate, extend=extend, strip=strip)
        for i, p in enumerate(chosen)
    ]
    return RuleRecognizer(name, gate, rules)


def _jwt_valid(token: str) -> float | None:
    token = token.rstrip(".")
    return 0.95 if token.count(".") >= 2 and JwtTokenDetector.is_formally_valid(token) else None


def _has_digit(value: str) -> float | None:
    return 0.9 if any(c.isdigit() for c in value) else None


def _credential_value(value: str) -> float | None:
    """Reject template/placeholder values (``<...>``, ``${VAR}``, ``***``, ``null``)."""
    return None if _PLACEHOLDER_VALUE.match(value) else 0.8


def _secret_value(value: str) -> float | None:
    """A generic secret: long enough and not a word (has a digit or mixed classes)."""
    if _PLACEHOLDER_VALUE.match(value) or len(value) < 8:
        return None
    classes = sum((any(c.isdigit() for c in value), any(c.islower() for c in value),
                   any(c.isupper() for c in value)))
    return 0.7 if classes >= 2 else None


def _pem_block(text_rule: str) -> re.Pattern[str]:
    return re.compile(text_rule, re.DOTALL)


_VALUE = r"""(?:"([^"\n]{1,256})"|'([^'\n]{1,256})'|([^\s"',;&<>(){}\[\]]{1,256}))"""


def secret_recognizers() -> list[RuleRecognizer]:
    """All secret recognizers, in priority-free order (overlaps are resolved later)."""
    ds: list[RuleRecognizer] = [
        from_detect_secrets(AWSKeyDetector(), "AWS_ACCESS_KEY_ID",
                            Gate(("A3T", "ABIA", "ACCA", "AKIA", "ASIA")), indices=[0]),
        from_detect_secrets(AWSKeyDetector(), "AWS_SECRET_KEY", Gate(("aws",), fold_case=True),
                            indices=[1], extend=None),
        from_detect_secrets(GitHubTokenDetector(), "API_KEY",
                            Gate(("ghp_", "gho_", "ghu_", "ghs_", "ghr_"))),
        from_detect_secrets(SlackDetector(), "API_KEY", Gate(("xox", "hooks.slack"),
                                                            fold_case=True)),
        from_detect_secrets(StripeDetector(), "API_KEY", Gate(("k_live_",))),
        from_detect_secrets(OpenAIDetector(), "API_KEY", Gate(("T3BlbkFJ",))),
        from_detect_secrets(JwtTokenDetector(), "JWT", Gate(("eyJ",)),
                            extend=TOKEN_CHARS + ".=", validate=_jwt_valid, strip="."),
        from_detect_secrets(GitLabTokenDetector(), "API_KEY",
                            Gate(("gl", "GR1348941"))),
        from_detect_secrets(PypiTokenDetector(), "API_KEY", Gate(("pypi-",))),
        from_detect_secrets(SendGridDetector(), "API_KEY", Gate(("SG.",))),
        from_detect_secrets(TwilioKeyDetector(), "API_KEY", Gate(regex=r"(?:AC|SK)[a-z0-9]{32}")),
        from_detect_secrets(MailchimpDetector(), "API_KEY", Gate(("-us",))),
        from_detect_secrets(DiscordBotTokenDetector(), "API_KEY",
                            Gate(regex=r"[MNO][\w-]{23,25}\.")),
        from_detect_secrets(TelegramBotTokenDetector(), "API_KEY",
                            Gate(regex=r"\d{8}:")),
        from_detect_secrets(AzureStorageKeyDetector(), "API_KEY", Gate(("AccountKey=",)),
                            extend="A-Za-z0-9+/="),
        from_detect_secrets(SquareOAuthDetector(), "API_KEY", Gate(("sq0csp-",))),
    ]
    # PEM blocks: detect-secrets flags the header; the whole block (to its END line, or to
    # the end of the text when truncated) is the secret.
    pem_headers = "|".join(p.pattern for p in PrivateKeyDetector().denylist)
    pem = RuleRecognizer("PrivateKeyBlock", Gate(("PRIVATE KEY", "PuTTY-User-Key-File")), [
        Rule("pem-block", "PRIVATE_KEY", _pem_block(
            r"(?:-----)?(?:" + pem_headers + r")(?:-----)?"
            r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[^\"'`]*)"), 0.99),
    ])
    vendor = RuleRecognizer("VendorApiKeys", Gate(
        ("sk-", "github_pat_", "k_test_", "k_live_", "AIza", "hf_", "whsec_", "xapp-")), [
        Rule("anthropic", "API_KEY",
             re.compile(r"(?<![\w-])sk-ant-(?:api|admin|oat)\d{2}-[" + TOKEN_CHARS + r"]{20,}"),
             0.95),
        Rule("openai", "API_KEY", re.compile(
            r"(?<![\w-])sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[" + TOKEN_CHARS + r"]{20,}"),
             0.9, validate=_has_digit),
        Rule("github-fine-grained", "API_KEY",
             re.compile(r"(?<!\w)github_pat_[A-Za-z0-9_]{22,}"), 0.95),
        Rule("stripe", "API_KEY",
             re.compile(r"(?<!\w)(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}|whsec_[0-9A-Za-z]{24,}"),
             0.95),
        Rule("google", "API_KEY", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_\-]{35}"), 0.95),
        Rule("huggingface", "API_KEY", re.compile(r"(?<![\w-])hf_[A-Za-z0-9]{30,}"), 0.95),
        Rule("slack-app", "API_KEY", re.compile(r"(?<![\w-])xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+"),
             0.95),
    ])
    aws_secret = RuleRecognizer("AwsSecretAccessKey", Gate(
        ("aws", "secretaccesskey", "secret_access_key"), fold_case=True), [
        Rule("aws-secret-assignment", "AWS_SECRET_KEY", re.compile(
            r"(?i)(?:aws_?secret_?access_?key|secret_?access_?key|aws_?secret(?:_?key)?)"
            r"[\"']?\s*(?:[:=]|=>)\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"), 0.95, 1),
    ])
    bearer = RuleRecognizer("BearerToken", Gate(("bearer",), fold_case=True), [
        Rule("bearer", "BEARER_TOKEN", re.compile(
            r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{12,}=*)"), 0.85, 1,
             validate=_credential_value),
    ])
    assignments = RuleRecognizer("CredentialAssignment", Gate(
        ("pass", "pwd", "secret", "token", "key"), fold_case=True), [
        Rule("password-assignment", "PASSWORD", re.compile(
            r"(?i)(?<![A-Za-z0-9])(?:password|passwd|passphrase|pwd|pass)[\"']?"
            r"\s*(?:[:=]|=>)\s*" + _VALUE), 0.8, validate=_credential_value),
        Rule("secret-assignment", "SECRET", re.compile(
            r"(?i)(?<![A-Za-z0-9])(?:secret|token|api_?key|auth_?key|access_?key|"
            r"private_?key)[\"']?\s*(?:[:=]|=>)\s*" + _VALUE), 0.7, validate=_secret_value),
    ])
    return [*ds, pem, vendor, aws_secret, bearer, assignments]


def recognizer_names(recognizers: Iterable[RuleRecognizer]) -> list[str]:
    """Names, for the redaction report."""
    return [r.label for r in recognizers]
