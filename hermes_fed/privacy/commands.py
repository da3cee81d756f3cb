"""``hermes-fed redact``: show what the write-path redactor would do to a text or a file.

    hermes-fed redact text "mail bob@example.com, key sk-proj-..."      # redacted text
    hermes-fed redact text --explain "..."                               # findings as JSON
    hermes-fed redact file notes.txt                                     # whole file as text
    hermes-fed redact file events.jsonl                                  # one JSON value/line
    hermes-fed redact recognizers                                        # what runs, NER or not

``--config node.toml`` reads its ``[redaction]`` section. The tenant secret comes from
``$HERMES_FED_REDACTION_SECRET`` (hex) or a random one per run: placeholders are then
consistent within the run only, which is all a preview needs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from hermes_fed.errors import ConfigError


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="redact_command", metavar="SUBCOMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML file with a [redaction] section")
    common.add_argument("--session", default="cli-preview",
                        help="session key (placeholders are consistent within it)")

    text = sub.add_parser("text", parents=[common], help="redact a text given as argument")
    text.add_argument("text", help="the text ('-' reads stdin)")
    text.add_argument("--explain", action="store_true",
                      help="print findings (type, span, recognizers) as JSON instead")
    text.set_defaults(func=_text)

    file = sub.add_parser("file", parents=[common], help="redact a file (.jsonl: per line)")
    file.add_argument("path", type=Path)
    file.add_argument("--explain", action="store_true",
                      help="print a per-type count of what would be redacted")
    file.set_defaults(func=_file)

    rec = sub.add_parser("recognizers", parents=[common],
                         help="list the recognizers that run and whether NER is available")
    rec.set_defaults(func=_recognizers)


def _redactor(args: argparse.Namespace) -> Any:
    from hermes_fed.privacy import RedactionConfig, Redactor

    config = RedactionConfig.from_toml(args.config) if args.config else RedactionConfig()
    raw = os.environ.get("HERMES_FED_REDACTION_SECRET")
    try:
        secret = bytes.fromhex(raw) if raw else secrets.token_bytes(32)
    except ValueError as exc:
        raise ConfigError("HERMES_FED_REDACTION_SECRET must be hex") from exc
    return Redactor(config, tenant_secret=secret)


def _text(args: argparse.Namespace) -> int:
    redactor = _redactor(args)
    text = sys.stdin.read() if args.text == "-" else args.text
    if args.explain:
        findings = [
            {"entity_type": f.entity_type, "start": f.start, "end": f.end,
             "score": round(f.score, 3), "recognizers": list(f.recognizers)}
            for f in redactor.find(text, session_key=args.session)
        ]
        print(json.dumps({"findings": findings, "ner": redactor.ner_enabled}, indent=2))
    else:
        print(redactor.redact_text(text, session_key=args.session))
    return 0


def _file(args: argparse.Namespace) -> int:
    redactor = _redactor(args)
    if not args.path.is_file():
        raise ConfigError(f"redact file: no such file {str(args.path)!r}")
    content = args.path.read_text(encoding="utf-8")
    if args.path.suffix == ".jsonl":
        lines = [line for line in content.splitlines() if line.strip()]
        data, metadata = redactor.redact_event(
            "Preview", {"lines": [json.loads(line) for line in lines]}, {},
            session_key=args.session)
        if args.explain:
            print(json.dumps(metadata["redaction"], indent=2))
        else:
            for value in data["lines"]:
                print(json.dumps(value, ensure_ascii=False))
        return 0
    data, metadata = redactor.redact_event("Preview", {"text": content}, {},
                                           session_key=args.session)
    if args.explain:
        print(json.dumps(metadata["redaction"], indent=2))
    else:
        sys.stdout.write(data["text"])
    return 0


def _recognizers(args: argparse.Namespace) -> int:
    redactor = _redactor(args)
    print(json.dumps({
        "recognizers": list(redactor.detector.recognizer_names),
        "ner": redactor.ner_enabled,
        "ner_source": redactor.detector.ner_source,
        "entities": list(redactor.config.entities),
    }, indent=2))
    return 0
