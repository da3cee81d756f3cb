"""Labelled corpus for redaction: agent chat, tool-call JSON, tool results, logs, YAML, env
files and stack traces, with PII and secrets of every type planted at known spans, plus hard
negatives (ISO timestamps, UUIDs, file names, versions, long ids, hashes, plain URLs).

Every planted value is generated to be *valid* for its type (Luhn cards, mod-97 IBANs,
base58check Bitcoin addresses, well-formed JWTs, possible phone numbers), so a miss is the
detector's fault, not the corpus's. Deterministic for a seed.

    from bench.redaction.corpus import generate
    docs = generate(2000, seed=7)   # list[Doc]; Doc.text, Doc.spans (entity, start, end)
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"


@dataclass(frozen=True, slots=True)
class Span:
    entity: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Doc:
    kind: str
    text: str
    spans: tuple[Span, ...]  # planted PII/secrets (gold)
    negatives: tuple[Span, ...]  # planted hard negatives (entity = the negative's kind)


# --- value generators (rng -> value) --------------------------------------------------
def _rand(rng: random.Random, chars: str, n: int) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("6011", 16), ("37", 15)])
    number = _luhn_complete(prefix, length, rng)
    if length == 16:
        style = rng.choice(["plain", "dash", "space"])
        groups = [number[i:i + 4] for i in range(0, 16, 4)]
        return {"plain": number, "dash": "-".join(groups), "space": " ".join(groups)}[style]
    return number


def iban(rng: random.Random) -> str:
    country, bban = rng.choice([
        ("GB", "WEST" + _rand(rng, string.digits, 14)),
        ("DE", _rand(rng, string.digits, 18)),
        ("FR", _rand(rng, string.digits, 23)),
        ("NL", "ABNA" + _rand(rng, string.digits, 10)),
        ("ES", _rand(rng, string.digits, 20)),
    ])
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    check = 98 - int(numeric) % 97
    value = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    return value


def email(rng: random.Random) -> str:
    first = rng.choice(["alice", "bob", "carol", "dmitri", "eve", "farah", "gus", "hana"])
    last = rng.choice(["smith", "nguyen", "okafor", "muller", "garcia", "tanaka", "rossi"])
    domain = rng.choice(["example.com", "acme-corp.io", "mail.co.uk", "uni-berlin.de",
                         "globex.org", "startup.ai"])
    sep = rng.choice([".", "_", ""])
    return f"{first}{sep}{last}{rng.randint(1, 99) if rng.random() < 0.5 else ''}@{domain}"


def phone(rng: random.Random) -> str:
    d = lambda n: _rand(rng, string.digits, n)  # noqa: E731
    area = str(rng.randint(201, 989))
    return rng.choice([
        f"+1 {area}-555-{d(4)}", f"+1 ({area}) 555-{d(4)}", f"({area}) 555-{d(4)}",
        f"{area}-555-{d(4)}", f"{area}.555.{d(4)}", f"+1{area}555{d(4)}",
        f"+44 20 7946 {d(4)}", f"+44 7700 900{d(3)}", f"020 7946 {d(4)}",
        f"+49 30 {d(6)}", f"+49 151 {d(8)}", f"+33 1 42 68 {d(2)} {d(2)}",
        f"+33 6 12 {d(2)} {d(2)} {d(2)}", f"+91 98765 {d(5)}", f"+81 3-1234-{d(4)}",
        f"+61 2 9374 {d(4)}", f"+31 20 {d(3)} {d(4)}", f"+34 912 {d(3)} {d(3)}",
    ])


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    sep = rng.choice(["-", "-", " "])
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def ipv4(rng: random.Random) -> str:
    return ".".join(str(x) for x in (rng.choice([10, 34, 52, 81, 172, 192, 203]),
                                     rng.randint(0, 255), rng.randint(0, 255),
                                     rng.randint(1, 254)))


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xffff):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return "2001:db8::" + ":".join(groups[:3])
    return ":".join(groups)


def mac(rng: random.Random) -> str:
    octets = [f"{rng.randint(0, 255):02x}" for _ in range(6)]
    style = rng.choice([":", "-", "."])
    if style == ".":
        joined = "".join(octets)
        return ".".join(joined[i:i + 4] for i in range(0, 12, 4))
    return style.join(octets).upper() if rng.random() < 0.5 else style.join(octets)


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def btc(rng: random.Random) -> str:
    payload = bytes([rng.choice([0x00, 0x05])]) + rng.randbytes(20)
    check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(payload + check, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(payload + check) - len((payload + check).lstrip(b"\0"))) + out


def crypto(rng: random.Random) -> str:
    return btc(rng) if rng.random() < 0.6 else "0x" + _rand(rng, "0123456789abcdefABCDEF", 40)


def api_key(rng: random.Random) -> str:
    return rng.choice([
        lambda: "sk-proj-" + _rand(rng, B64URL, 74) + _rand(rng, string.digits, 2),
        lambda: "sk-" + _rand(rng, ALNUM, 20) + "T3BlbkFJ" + _rand(rng, ALNUM, 20),
        lambda: "sk-ant-api03-" + _rand(rng, B64URL, 93) + "AA",
        lambda: "ghp_" + _rand(rng, ALNUM, 36),
        lambda: "gho_" + _rand(rng, ALNUM, 36),
        lambda: "github_pat_11" + _rand(rng, ALNUM, 20) + "_" + _rand(rng, ALNUM, 59),
        lambda: f"xoxb-{_rand(rng, string.digits, 12)}-{_rand(rng, string.digits, 13)}-"
                + _rand(rng, string.ascii_lowercase + string.digits, 24),
        lambda: rng.choice(["sk_live_", "sk_test_", "rk_live_"]) + _rand(rng, ALNUM, 24)
                + (_rand(rng, ALNUM, 75) if rng.random() < 0.5 else ""),
        lambda: "AIza" + _rand(rng, B64URL, 35),
        lambda: "hf_" + _rand(rng, ALNUM, 34),
    ])()


def aws_key_id(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA"]) + _rand(rng, string.ascii_uppercase + "234567", 16)


def aws_secret(rng: random.Random) -> str:
    return _rand(rng, ALNUM + "/+", 40)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    claims = {"sub": str(rng.randint(10**6, 10**9)), "iat": rng.randint(1.6e9, 1.8e9),
              "scope": rng.choice(["read", "read write", "admin"])}
    return f"{header}.{_b64url(json.dumps(claims).encode())}.{_rand(rng, B64URL, 43)}"


def bearer(rng: random.Random) -> str:
    return _rand(rng, ALNUM, rng.randint(24, 48)) + rng.choice(["", ".", "_"]) + _rand(
        rng, ALNUM, 8)


def private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY",
                       "OPENSSH PRIVATE KEY"])
    lines = [_rand(rng, ALNUM + "+/", 64) for _ in range(rng.randint(3, 8))]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


def password(rng: random.Random) -> str:
    return _rand(rng, ALNUM, rng.randint(6, 12)) + _rand(rng, "!%^*", 1) + _rand(
        rng, string.digits, 2)


def token(rng: random.Random) -> str:
    return _rand(rng, ALNUM, rng.randint(20, 40))


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL_ADDRESS": email, "PHONE_NUMBER": phone, "CREDIT_CARD": card, "IBAN_CODE": iban,
    "IP_ADDRESS": lambda r: ipv4(r) if r.random() < 0.6 else ipv6(r), "US_SSN": ssn,
    "CRYPTO": crypto, "MAC_ADDRESS": mac, "API_KEY": api_key,
    "AWS_ACCESS_KEY_ID": aws_key_id, "JWT": jwt,
}

NEGATIVES: dict[str, Callable[[random.Random], str]] = {
    "iso-timestamp": lambda r: f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T"
                               f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:"
                               f"{r.randint(0, 59):02d}" + r.choice(["Z", ".123Z", "+02:00"]),
    "log-timestamp": lambda r: f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} "
                               f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:"
                               f"{r.randint(0, 59):02d},{r.randint(0, 999):03d}",
    "uuid": lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)),
    "file-name": lambda r: r.choice(["settings.py", "config.yaml", "requirements.txt",
                                     "main.rs", "index.ts", "README.md", "app.log"]),
    "version": lambda r: r.choice([f"v{r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 9)}",
                                   f"torch=={r.randint(1, 2)}.{r.randint(0, 13)}.0",
                                   f"version {r.randint(1, 9)}.{r.randint(0, 9)}."
                                   f"{r.randint(0, 9)}.{r.randint(1, 99)}",
                                   f"{r.randint(1, 4)}.{r.randint(0, 30)}.{r.randint(0, 9)}"]),
    "long-id": lambda r: str(r.randint(10**11, 10**15)),
    "epoch-ms": lambda r: str(r.randint(1_600_000_000_000, 1_800_000_000_000)),
    "sha": lambda r: r.getrandbits(160).to_bytes(20, "big").hex(),
    "sha256": lambda r: r.getrandbits(256).to_bytes(32, "big").hex(),
    "plain-url": lambda r: r.choice(["https://docs.python.org/3/library/json.html",
                                     "http://localhost:8080/health",
                                     "https://github.com/org/repo/pull/4821"]),
    "hex-addr": lambda r: f"0x{r.getrandbits(48):012x}",
    "amount": lambda r: f"{r.randint(1, 99)},{r.randint(100, 999)}.{r.randint(10, 99)}",
}


def _userinfo(rng: random.Random) -> str:
    return rng.choice(["app", "admin", "deploy", "svc_backup", "bob"]) + ":" + password(rng)


CONTEXT_GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "URL_CREDENTIAL": _userinfo, "URL_CREDENTIAL|token": token, "AWS_SECRET_KEY": aws_secret,
    "BEARER_TOKEN": bearer, "PRIVATE_KEY": private_key, "PASSWORD": password,
    "SECRET": lambda r: _rand(r, ALNUM, 32),
}

# --- templates: {TYPE} = planted gold value, {~kind} = planted hard negative --------------
CHAT = [
    "Hi, I can't log in. My email is {EMAIL_ADDRESS} and you can call me at {PHONE_NUMBER}.",
    "Please charge my card {CREDIT_CARD} for the upgrade; the invoice ref is {~long-id}.",
    "Send the refund to IBAN {IBAN_CODE} please, it was processed at {~iso-timestamp}.",
    "My SSN is {US_SSN}, do you need anything else for the tax form?",
    "The server at {IP_ADDRESS} keeps refusing connections since the {~version} upgrade.",
    "Donations go to {CRYPTO} if you like the tool.",
    "The device MAC is {MAC_ADDRESS}, it shows up in the DHCP table.",
    "Here's my key {API_KEY}, can you check why requests fail?",
    "I set OPENAI_API_KEY={API_KEY} in my shell but it still says unauthorized.",
    "Use this token to reproduce: {JWT}",
    "Can you fix this? curl -H 'Authorization: Bearer {BEARER_TOKEN}' "
    "https://api.example.com/v2/orders",
    "Connect with postgresql://{URL_CREDENTIAL}@db.internal:5432/prod and run the migration.",
    "The webhook is https://hooks.example.com:8443/notify?sig={URL_CREDENTIAL|token}&v=2 now.",
    "Here is the deploy key:\n{PRIVATE_KEY}\nplease rotate it after the incident.",
    "Text me on {PHONE_NUMBER} or write to {EMAIL_ADDRESS} when the build {~uuid} is green.",
    "The AWS key {AWS_ACCESS_KEY_ID} was committed in {~file-name} by mistake.",
]
CHAT_CLEAN = [
    "The job {~uuid} finished at {~iso-timestamp}; see {~file-name} and commit {~sha}.",
    "Upgraded to {~version}; order {~long-id} shipped, total {~amount} EUR.",
    "See {~plain-url} for the details, the cache key is {~sha256}.",
    "Sure! To parse JSON in Python use json.loads; the docs are at {~plain-url}.",
    "The segfault was at {~hex-addr}, build {~version}, timestamp {~epoch-ms}.",
    "Thanks, that fixed it. I'll close ticket {~long-id} and update {~file-name}.",
    "Can you summarise the meeting notes from {~iso-timestamp} in three bullet points?",
]
LOG = [
    "{~log-timestamp} INFO  auth: login ok user={EMAIL_ADDRESS} ip={IP_ADDRESS} req={~uuid}",
    "{~log-timestamp} WARN  payment: retry card={CREDIT_CARD} attempt=2 trace={~sha}",
    "{~log-timestamp} DEBUG http: GET https://{URL_CREDENTIAL}@search.example.com:9200/_search",
    "{~log-timestamp} DEBUG http: GET https://api.example.com:8443/v1/export?"
    "token={URL_CREDENTIAL|token}&page=2 200",
    "{~log-timestamp} ERROR s3: AccessDenied for key id {AWS_ACCESS_KEY_ID} at {~epoch-ms}",
    "{~log-timestamp} INFO  net: device {MAC_ADDRESS} joined from {IP_ADDRESS}",
    "{~log-timestamp} DEBUG headers: Authorization: Bearer {JWT}",
    "{~log-timestamp} INFO  sms: sent code to {PHONE_NUMBER} job={~uuid}",
]
LOG_CLEAN = [
    "{~log-timestamp} INFO  worker pid=4242 build {~version} job={~uuid}",
    "{~log-timestamp} INFO  http: GET {~plain-url} 200 in 12ms",
    "{~log-timestamp} DEBUG cache: hit key={~sha256} size=1024",
    "{~log-timestamp} WARN  gc: pause 35ms heap={~long-id}",
]
YAML = [
    "database:\n  host: db.internal\n  user: app\n  password: {PASSWORD}\n  port: 5432",
    "aws:\n  access_key_id: {AWS_ACCESS_KEY_ID}\n  secret_access_key: {AWS_SECRET_KEY}\n"
    "  region: eu-west-1",
    "notify:\n  email: {EMAIL_ADDRESS}\n  phone: \"{PHONE_NUMBER}\"",
    "openai:\n  api_key: {API_KEY}\n  model: gpt-4o-mini",
    "oauth:\n  client_id: web-frontend\n  client_secret: {SECRET}",
]
YAML_CLEAN = [
    "image: registry.example.com/app:{~version}\nbuild_id: {~long-id}\nconfig: {~file-name}",
    "job:\n  id: {~uuid}\n  started: {~iso-timestamp}\n  digest: {~sha256}",
]
ENV = [
    "AWS_ACCESS_KEY_ID={AWS_ACCESS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET_KEY}\n"
    "AWS_REGION=us-east-1",
    "DATABASE_URL=postgres://{URL_CREDENTIAL}@db:5432/app\nDB_PASSWORD={PASSWORD}",
    "HF_TOKEN={API_KEY}\nSTRIPE_KEY={API_KEY}",
    "SQL_CONN=Server=tcp:sql.example.net,1433;Database=shop;User Id=sa;Password={PASSWORD};",
]
TRACE = [
    "Traceback (most recent call last):\n  File \"/app/{~file-name}\", line 42, in handler\n"
    "    resp = client.get(url)\nrequests.exceptions.HTTPError: 401 Client Error for url: "
    "https://api.example.com/v1/users?api_key={URL_CREDENTIAL|token}&limit=5",
    "psycopg.OperationalError: connection to server at \"{IP_ADDRESS}\", port 5432 failed: "
    "FATAL:  password authentication failed for user \"app\"",
    "ValueError: invalid card {CREDIT_CARD} (request {~uuid})",
    "Exception in thread \"main\" java.lang.IllegalStateException: bad IBAN {IBAN_CODE}\n"
    "    at com.example.Billing.charge(Billing.java:118)",
]
TRACE_CLEAN = [
    "KeyError: '{~uuid}' at {~iso-timestamp}\n  File \"/srv/{~file-name}\", line 7, in <module>",
    "Fatal Python error: Segmentation fault\nCurrent thread {~hex-addr} (most recent call "
    "first):\n  File \"/usr/lib/python3.11/{~file-name}\", line 312",
]
TOOL_CALL = [
    {"name": "send_email", "arguments": {"to": "{EMAIL_ADDRESS}", "subject": "Invoice "
     "{~long-id}", "body": "Please call me at {PHONE_NUMBER}."}},
    {"name": "charge", "arguments": {"card_number": "{CREDIT_CARD}", "amount": "{~amount}",
                                      "idempotency_key": "{~uuid}"}},
    {"name": "http_request", "arguments": {
        "url": "https://api.example.com:8443/v1/items?key={URL_CREDENTIAL|token}",
        "headers": {"Authorization": "Bearer {BEARER_TOKEN}"}}},
    {"name": "db_query", "arguments": {"dsn": "postgresql://{URL_CREDENTIAL}@db:5432/prod",
                                        "sql": "select * from users where ssn = '{US_SSN}'"}},
    {"name": "deploy", "arguments": {"env": {"AWS_ACCESS_KEY_ID": "{AWS_ACCESS_KEY_ID}",
                                              "AWS_SECRET_ACCESS_KEY": "{AWS_SECRET_KEY}"},
                                      "version": "{~version}"}},
    {"name": "set_secret", "arguments": {"github_token": "{API_KEY}", "password": "{PASSWORD}"}},
    {"name": "transfer", "arguments": {"iban": "{IBAN_CODE}", "wallet": "{CRYPTO}"}},
    {"name": "ssh", "arguments": {"host": "{IP_ADDRESS}", "identity": "{PRIVATE_KEY}"}},
    {"name": "lookup_device", "arguments": {"mac": "{MAC_ADDRESS}", "since": "{~iso-timestamp}"}},
]
TOOL_CALL_CLEAN = [
    {"name": "calculator", "arguments": {"expression": "{~amount} * 3"}},
    {"name": "read_file", "arguments": {"path": "/repo/{~file-name}", "ref": "{~sha}"}},
    {"name": "search", "arguments": {"query": "pin {~version} changelog", "limit": 5}},
]
TOOL_RESULT = [
    {"status": 200, "user": {"id": "{~uuid}", "email": "{EMAIL_ADDRESS}",
                             "phone": "{PHONE_NUMBER}"}, "fetched_at": "{~iso-timestamp}"},
    {"access_token": "{JWT}", "expires_in": 3600, "token_type": "Bearer"},
    {"session": {"ip": "{IP_ADDRESS}", "mac": "{MAC_ADDRESS}"}, "trace": "{~sha256}"},
    {"customer": {"ssn": "{US_SSN}", "card": "{CREDIT_CARD}"}, "request_id": "{~uuid}"},
]
TOOL_RESULT_CLEAN = [
    {"items": [{"sku": "A-1", "price": 10}], "request_id": "{~uuid}", "build": "{~version}"},
    {"result": "{~amount}", "took_ms": 12, "cached_at": "{~iso-timestamp}"},
]

KINDS: dict[str, tuple[list, list, bool]] = {  # kind -> (planted, clean, is_json)
    "chat": (CHAT, CHAT_CLEAN, False), "log": (LOG, LOG_CLEAN, False),
    "yaml": (YAML, YAML_CLEAN, False), "env": (ENV, [], False),
    "trace": (TRACE, TRACE_CLEAN, False), "tool_call": (TOOL_CALL, TOOL_CALL_CLEAN, True),
    "tool_result": (TOOL_RESULT, TOOL_RESULT_CLEAN, True),
}
_SLOT = __import__("re").compile(r"\{(~?[A-Za-z0-9_\-|]+)\}")
_MARK = "\u27e6{}\u27e7"
_MARK_RE = __import__("re").compile("\u27e6(\\d+)\u27e7")


def _fill(template: str, rng: random.Random, slots: list[tuple[str, str]]) -> str:
    def sub(m: object) -> str:
        name = m.group(1)  # type: ignore[attr-defined]
        if name.startswith("~"):
            value = NEGATIVES[name[1:]](rng)
        elif name in CONTEXT_GENERATORS:
            value = CONTEXT_GENERATORS[name](rng)
        else:
            value = GENERATORS[name](rng)
        slots.append((name.split("|")[0], value))
        return _MARK.format(len(slots) - 1)
    return _SLOT.sub(sub, template)


def _fill_json(node: object, rng: random.Random, slots: list[tuple[str, str]]) -> object:
    if isinstance(node, str):
        return _fill(node, rng, slots)
    if isinstance(node, dict):
        return {k: _fill_json(v, rng, slots) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_json(v, rng, slots) for v in node]
    return node


def _resolve(marked: str, slots: list[tuple[str, str]], kind: str, escape: bool) -> Doc:
    out: list[str] = []
    gold: list[Span] = []
    negatives: list[Span] = []
    cursor = 0
    length = 0
    for m in _MARK_RE.finditer(marked):
        out.append(marked[cursor:m.start()])
        length += m.start() - cursor
        name, value = slots[int(m.group(1))]
        if escape:
            value = json.dumps(value, ensure_ascii=False)[1:-1]
        span = (length, length + len(value))
        (negatives if name.startswith("~") else gold).append(
            Span(name.lstrip("~"), *span))
        out.append(value)
        length += len(value)
        cursor = m.end()
    out.append(marked[cursor:])
    return Doc(kind, "".join(out), tuple(gold), tuple(negatives))


def generate(n: int, seed: int = 7, clean_fraction: float = 0.35) -> list[Doc]:
    """``n`` labelled documents, a mix of every kind; ``clean_fraction`` hold no PII."""
    rng = random.Random(seed)
    docs = []
    kinds = list(KINDS)
    for _ in range(n):
        kind = rng.choice(kinds)
        planted, clean, is_json = KINDS[kind]
        pool = clean if (clean and rng.random() < clean_fraction) else planted
        slots: list[tuple[str, str]] = []
        if is_json:
            marked = json.dumps(_fill_json(rng.choice(pool), rng, slots), ensure_ascii=False)
        else:
            lines = [_fill(rng.choice(pool), rng, slots) for _ in range(rng.randint(1, 4))]
            if pool is planted and clean and rng.random() < 0.5:
                lines.append(_fill(rng.choice(clean), rng, slots))
            marked = "\n".join(lines)
        docs.append(_resolve(marked, slots, kind, is_json))
    return docs
