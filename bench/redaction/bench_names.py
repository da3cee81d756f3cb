"""Person names and street addresses through the node's real write path. Prints JSON.

    .venv/bin/python -m bench.redaction.bench_names --docs 2000 --out bench/redaction/results_names.json

The corpus (``names_corpus.py``, from Faker) is appended as ``TrajectoryRecorded`` events to
a store opened by ``tenant_node.ingest.runtime.open_node_store`` with the default node config (so
the gate, its config and its placeholder index are exactly what ``node serve`` builds), then
read back. What was redacted is recovered by aligning each stored string with the string
that was sent (every ``<TYPE_n>`` placeholder stands for one non-empty stretch of it).

Metrics
-------
* ``recall``: a planted name counts as found when every one of its words (less particles
  such as "van", "de", "bin") was replaced: a surname left standing is a miss. A planted
  address counts when its street lines and every word holding a digit (house number, unit,
  postcode) were replaced; ``city_left`` counts addresses whose city/region words stayed.
* ``negatives_kept``: hard negatives (tech words that are names, distribution names,
  dates, code identifiers) not touched by any replacement.
* ``precision``: replacements that overlap a planted name or address, over all
  replacements (a replaced hard negative or filler word is a false positive).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.redaction.names_corpus import NameDoc, Planted, field_text, generate, significant

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
ROUNDS = 3
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*?)_(\d+)>")
Span = tuple[str, int, int]


def replaced_spans(original: str, stored: str) -> list[Span] | None:
    """The stretches of ``original`` that the placeholders of ``stored`` replaced, or None
    when ``stored`` is not ``original`` with stretches replaced (never expected)."""
    if stored == original:
        return []
    pieces = _PLACEHOLDER.split(stored)  # literal, type, number, literal, type, number, ...
    literals, types = pieces[0::3], pieces[1::3]
    pattern = "".join(re.escape(lit) + ("(.+?)" if k < len(types) else "")
                      for k, lit in enumerate(literals))
    m = re.fullmatch(pattern, original, re.DOTALL)
    if m is None:
        return None
    return [(t, m.start(k + 1), m.end(k + 1)) for k, t in enumerate(types)]


def _covered(spans: Sequence[Span], start: int, end: int) -> bool:
    pos = start
    for _, s, e in sorted(spans, key=lambda x: x[1]):
        if s <= pos < e:
            pos = e
        if pos >= end:
            return True
    return pos >= end


def judge(doc: NameDoc, planted: Planted, spans: Sequence[Span]) -> tuple[bool, bool]:
    """(found, city_left) for one planted value (see the module docstring)."""
    value = field_text(doc, planted.path)[planted.start:planted.end]
    words = [(planted.start + s, planted.start + e, value[s:e])
             for s, e in significant(value, planted.entity)]
    if planted.entity == "PERSON":
        return all(_covered(spans, s, e) for s, e, _ in words), False
    # address: street lines (all but the last line of a full address), and digits anywhere
    last_line = value.rfind(", ") if planted.form.startswith("full-address") else -1
    core_end = planted.start + last_line if last_line > 0 else planted.end
    must = [(s, e) for s, e, w in words if s < core_end or any(c.isdigit() for c in w)]
    rest = [(s, e) for s, e, w in words if (s, e) not in must]
    found = all(_covered(spans, s, e) for s, e in must)
    return found, any(not _covered(spans, s, e) for s, e in rest)


def _overlaps(span: Span, planted: Planted) -> bool:
    return span[1] < planted.end and planted.start < span[2]


def _events(docs: Sequence[NameDoc]) -> list[Any]:
    from hermes_fed.events.envelope import new_event
    from hermes_fed.events.session import TrajectoryRecorded

    events = []
    for i, doc in enumerate(docs):
        if doc.context == "json":
            message = {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call-1", "name": doc.tool, "arguments": doc.arguments}]}
        else:
            message = {"role": "user", "content": doc.text}
        events.append(new_event(TrajectoryRecorded(
            trajectory_id=f"t-{i}", task="bench", task_type="support", messages=[message],
            tools=[], final_response="ok"), stream_id=f"names-{i}"))
    return events


def _stored_field(data: dict[str, Any], doc: NameDoc, path: tuple[str | int, ...]) -> str:
    message = data["messages"][0]
    if doc.context != "json":
        return str(message["content"])
    value: Any = message["tool_calls"][0]["arguments"]
    for key in path:
        value = value[key]
    return str(value)


def _paths(doc: NameDoc) -> list[tuple[str | int, ...]]:
    if doc.context != "json":
        return [()]
    out: list[tuple[str | int, ...]] = []

    def walk(v: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(v, str):
            out.append(path)
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, (*path, k))
        elif isinstance(v, list):
            for k, x in enumerate(v):
                walk(x, (*path, k))

    walk(doc.arguments, ())
    return out


def _timed(run: Any, batches: Sequence[Sequence[Any]]) -> tuple[float, float]:
    """(wall seconds, this thread's CPU seconds) of ``run`` over every batch."""
    t0, c0 = time.perf_counter(), time.thread_time()
    for b in batches:
        run(b)
    return time.perf_counter() - t0, time.thread_time() - c0


def run_gate(docs: Sequence[NameDoc], batch: int
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Append the corpus through ``open_node_store`` (default config); stored data back.

    In the same run, on the same batches: the gate alone (as ``node serve`` builds it, on
    a second node store, so its numbering starts as fresh as the append's) and the same
    redactor with the in-memory placeholder index (the redaction-only ceiling), the two
    alternating for ``ROUNDS`` rounds; the medians give ``gate_vs_in_memory_redactor``."""
    import statistics

    from hermes_fed.privacy import RedactionConfig, Redactor
    from tenant_node.config import node_config_from_mapping
    from tenant_node.ingest.runtime import open_node_store

    events = _events(docs)
    batches = [events[k:k + batch] for k in range(0, len(events), batch)]
    with tempfile.TemporaryDirectory() as tmp:
        config = node_config_from_mapping({"tenant_id": "bench", "token": "b" * 20,
                                           "data_dir": tmp})
        t0 = time.perf_counter()
        store = open_node_store(config)
        opened = time.perf_counter() - t0
        assert store.keyring is not None
        rates: dict[str, list[tuple[float, float]]] = {"in_memory_redactor": [], "node_gate": []}
        for round_ in range(ROUNDS):
            memory = Redactor(RedactionConfig.from_mapping(config.redaction),
                              store.keyring.hmac_secret)
            rates["in_memory_redactor"].append(_timed(memory.redact_new_events, batches))
            other = open_node_store(node_config_from_mapping({
                "tenant_id": "bench", "token": "b" * 20, "data_dir": f"{tmp}/gate-{round_}"}))
            assert other.gate is not None
            rates["node_gate"].append(_timed(other.gate, batches))
            other.close()
        appended, appended_cpu = _timed(store.append, batches)
        stored = [store.read_stream(f"names-{i}")[0] for i in range(len(docs))]
        store.close()
    n = len(docs)
    medians = {k: (statistics.median(n / w for w, _ in v), statistics.median(n / c for _, c in v))
               for k, v in rates.items()}
    info = {"open_node_store_s": round(opened, 3), "append_s": round(appended, 3),
            "docs_per_s": round(n / appended, 1), "docs_per_cpu_s": round(n / appended_cpu, 1),
            "batch": batch,
            "gate_only_docs_per_s": round(medians["node_gate"][0], 1),
            "gate_only_docs_per_cpu_s": round(medians["node_gate"][1], 1),
            "in_memory_redactor_docs_per_s": round(medians["in_memory_redactor"][0], 1),
            "in_memory_redactor_docs_per_cpu_s": round(medians["in_memory_redactor"][1], 1),
            "rounds": {k: [round(n / w, 1) for w, _ in v] for k, v in rates.items()},
            "ratios": {
                "gate_vs_in_memory_redactor":
                    round(medians["node_gate"][0] / medians["in_memory_redactor"][0], 3),
                "cpu_gate_vs_in_memory_redactor":
                    round(medians["node_gate"][1] / medians["in_memory_redactor"][1], 3),
                "append_vs_in_memory_redactor":
                    round(n / appended / medians["in_memory_redactor"][0], 3),
            },
            "redaction_report": stored[0].metadata.get("redaction")}
    return [dict(s.data) for s in stored], info


def _rate(hit: int, n: int) -> float | None:
    return round(hit / n, 4) if n else None


def score(docs: Sequence[NameDoc], stored: Sequence[dict[str, Any]],
          examples: int) -> dict[str, Any]:
    found: dict[str, Counter[str]] = defaultdict(Counter)  # "<entity>|<dimension>" -> hits
    total: dict[str, Counter[str]] = defaultdict(Counter)
    neg_kept: Counter[str] = Counter()
    neg_total: Counter[str] = Counter()
    pred_n: Counter[str] = Counter()
    pred_tp: Counter[str] = Counter()
    city_left = 0
    misaligned = 0
    misses: list[str] = []
    false_pos: list[str] = []
    for doc, data in zip(docs, stored, strict=True):
        for path in _paths(doc):
            original = field_text(doc, path)
            spans = replaced_spans(original, _stored_field(data, doc, path))
            if spans is None:
                misaligned += 1
                spans = [("?", 0, len(original))]
            gold = [g for g in doc.gold if g.path == path]
            negs = [n for n in doc.negatives if n.path == path]
            for g in gold:
                hit, city = judge(doc, g, spans)
                city_left += city
                country = g.form.split(":")[1] if ":" in g.form else None
                dims = {"all": "all", "context": doc.context,
                        "form": g.form.split(":")[0],
                        "locale": country if country else doc.locale,
                        "region": country if country else doc.region}
                for dim, key in dims.items():
                    total[f"{g.entity}|{dim}"][key] += 1
                    found[f"{g.entity}|{dim}"][key] += hit
                if not hit and len(misses) < examples:
                    misses.append(f"{g.entity} {doc.locale} {doc.context} {g.form}: "
                                  f"{original[g.start:g.end]!r} in {original!r} -> "
                                  f"{_stored_field(data, doc, path)!r}")
            for n in negs:
                neg_total[n.entity] += 1
                neg_kept[n.entity] += not any(s[1] < n.end and n.start < s[2] for s in spans)
            for span in spans:
                pred_n[span[0]] += 1
                if any(_overlaps(span, g) for g in gold):
                    pred_tp[span[0]] += 1
                elif len(false_pos) < examples:
                    false_pos.append(f"{span[0]} {doc.context}: {original[span[1]:span[2]]!r} "
                                     f"in {original!r}")

    def table(entity: str, dim: str) -> dict[str, Any]:
        t, f = total[f"{entity}|{dim}"], found[f"{entity}|{dim}"]
        return {k: {"n": t[k], "recall": _rate(f[k], t[k])} for k in sorted(t)}

    result: dict[str, Any] = {}
    for entity in ("PERSON", "STREET_ADDRESS"):
        t, f = total[f"{entity}|all"]["all"], found[f"{entity}|all"]["all"]
        result[entity] = {
            "gold": t, "recall": _rate(f, t),
            "by_context": table(entity, "context"), "by_form": table(entity, "form"),
            "by_region": table(entity, "region"), "by_locale": table(entity, "locale"),
        }
    result["STREET_ADDRESS"]["city_left_in_clear"] = city_left
    all_pred = sum(pred_n.values())
    result["precision"] = {
        "all": _rate(sum(pred_tp.values()), all_pred),
        "by_type": {t: {"predicted": pred_n[t], "precision": _rate(pred_tp[t], pred_n[t])}
                    for t in sorted(pred_n)},
    }
    result["hard_negatives"] = {
        "n": sum(neg_total.values()), "kept": _rate(sum(neg_kept.values()),
                                                    sum(neg_total.values())),
        "by_kind": {k: {"n": neg_total[k], "kept": _rate(neg_kept[k], neg_total[k])}
                    for k in sorted(neg_total)},
    }
    result["misaligned_fields"] = misaligned
    if examples:
        result["examples"] = {"misses": misses, "false_positives": false_pos}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=20, help="events per append")
    ap.add_argument("--examples", type=int, default=0, help="list up to N misses and FPs")
    ap.add_argument("--out", default="", help="also write the JSON here")
    args = ap.parse_args(argv)

    docs = generate(args.docs, seed=args.seed)
    stored, gate = run_gate(docs, args.batch)
    scores = score(docs, stored, args.examples)
    goals = {"PERSON recall >= 0.97": (scores["PERSON"]["recall"] or 0) >= 0.97,
             "STREET_ADDRESS recall >= 0.9": (scores["STREET_ADDRESS"]["recall"] or 0) >= 0.9,
             "hard negatives kept >= 0.95": (scores["hard_negatives"]["kept"] or 0) >= 0.95}
    result = {
        "bench": "redaction-names",
        "command": "python -m bench.redaction.bench_names " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version()},
        "corpus": {"docs": len(docs), "seed": args.seed, "source": "Faker",
                   "contexts": dict(Counter(d.context for d in docs)),
                   "gold": dict(Counter(g.entity for d in docs for g in d.gold)),
                   "hard_negatives": sum(len(d.negatives) for d in docs)},
        "write_path": "tenant_node.ingest.runtime.open_node_store, default NodeConfig",
        "gate": gate,
        **scores,
        "goals": goals,
    }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
