"""Redaction bench: precision/recall per entity type and throughput, hermes-fed's redactor vs
stock presidio ``AnalyzerEngine`` (pattern-only: no-op NLP engine, default recognizers), side
by side in one run on one corpus. Prints JSON.

    .venv/bin/python -m bench.redaction.bench_redaction --docs 1500 --workers 2

Metrics (per gold entity type, spans on the raw document text):

* recall     - gold spans overlapped by a predicted span of the same type;
* covered    - gold spans fully covered by predicted spans of any type (nothing left in clear);
* precision  - predicted spans of a type that overlap a gold span of that type;
* leaked     - end to end: gold values still present verbatim after redaction/anonymisation.

Stock's ``URL`` type is counted as ``URL_CREDENTIAL`` (its closest type); stock types with no
counterpart (DATE_TIME, UUID, US_DRIVER_LICENSE, ...) are listed under ``other_predictions``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.redaction.corpus import Doc, generate

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
SECRET = b"bench-tenant-secret-0123456789ab"
STOCK_MAP = {"URL": "URL_CREDENTIAL"}
Pred = tuple[str, int, int]

# --- engines (module level so worker processes can build them) ---------------------------
_OURS: Any = None
_STOCK: Any = None


def _ours() -> Any:
    global _OURS
    if _OURS is None:
        from hermes_fed.privacy import RedactionConfig, Redactor

        _OURS = Redactor(RedactionConfig(), tenant_secret=SECRET)
    return _OURS


def _stock() -> Any:
    global _STOCK
    if _STOCK is None:
        from hermes_fed.privacy.offline import import_presidio

        import_presidio()  # same offline import; stock behaviour is unchanged by it
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NoOpNlpEngine

        engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
        engine.load()
        _STOCK = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    return _STOCK


def ours_detect(text: str) -> list[Pred]:
    return [(f.entity_type, f.start, f.end) for f in _ours().find(text)]


def ours_redact(item: tuple[int, str]) -> str:
    i, text = item
    redacted: str = _ours().redact_text(text, session_key=f"session-{i}")
    return redacted


def stock_detect(text: str) -> list[Pred]:
    return [(STOCK_MAP.get(r.entity_type, r.entity_type), r.start, r.end)
            for r in _stock().analyze(text, language="en")]


def _chunk(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return [fn(x) for x in items]


# --- scoring ----------------------------------------------------------------------------
def _overlap(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def score(docs: Sequence[Doc], preds: Sequence[list[Pred]]) -> dict[str, Any]:
    gold_n: Counter[str] = Counter()
    gold_hit: Counter[str] = Counter()
    gold_cov: Counter[str] = Counter()
    pred_n: Counter[str] = Counter()
    pred_hit: Counter[str] = Counter()
    neg_hits: Counter[str] = Counter()
    gold_types = {s.entity for d in docs for s in d.spans}
    for doc, ps in zip(docs, preds, strict=True):
        for g in doc.spans:
            gold_n[g.entity] += 1
            if any(t == g.entity and _overlap(s, e, g.start, g.end) for t, s, e in ps):
                gold_hit[g.entity] += 1
            covered = [False] * (g.end - g.start)
            for _, s, e in ps:
                for k in range(max(s, g.start), min(e, g.end)):
                    covered[k - g.start] = True
            gold_cov[g.entity] += all(covered)
        for t, s, e in ps:
            pred_n[t] += 1
            if any(g.entity == t and _overlap(s, e, g.start, g.end) for g in doc.spans):
                pred_hit[t] += 1
            elif any(_overlap(s, e, n.start, n.end) for n in doc.negatives):
                neg_hits[f"{t} on {next(n.entity for n in doc.negatives if _overlap(s, e, n.start, n.end))}"] += 1  # noqa: E501
    per_type = {
        t: {
            "gold": gold_n[t],
            "recall": round(gold_hit[t] / gold_n[t], 4) if gold_n[t] else None,
            "covered": round(gold_cov[t] / gold_n[t], 4) if gold_n[t] else None,
            "predicted": pred_n[t],
            "precision": round(pred_hit[t] / pred_n[t], 4) if pred_n[t] else None,
        }
        for t in sorted(gold_types)
    }
    other = {t: n for t, n in sorted(pred_n.items()) if t not in gold_types}
    return {"per_type": per_type, "other_predictions": other,
            "hard_negative_hits": dict(sorted(neg_hits.items()))}


def leaks(docs: Sequence[Doc], outputs: Sequence[str]) -> dict[str, int]:
    leaked: Counter[str] = Counter()
    for doc, out in zip(docs, outputs, strict=True):
        for g in doc.spans:
            if doc.text[g.start:g.end] in out:
                leaked[g.entity] += 1
    return dict(sorted(leaked.items()))


# --- timing -----------------------------------------------------------------------------
def timed(fn: Callable[[Any], Any], items: list[Any], workers: int) -> tuple[list[Any], float]:
    if workers <= 1:
        t0 = time.perf_counter()
        out = [fn(x) for x in items]
        return out, time.perf_counter() - t0
    chunks = [items[i::workers * 8] for i in range(workers * 8)]
    init = _ours if fn in (ours_detect, ours_redact) else _stock
    with ProcessPoolExecutor(workers, initializer=init) as pool:
        list(pool.map(_chunk, [fn] * workers, [items[:workers]] * workers))  # warm workers
        t0 = time.perf_counter()
        results = list(pool.map(_chunk, [fn] * len(chunks), chunks))
        elapsed = time.perf_counter() - t0
    out: list[Any] = [None] * len(items)
    for c, res in enumerate(results):
        for j, r in enumerate(res):
            out[c + j * workers * 8] = r
    return out, elapsed


def rate(n_docs: int, n_bytes: int, seconds: float) -> dict[str, float]:
    return {"seconds": round(seconds, 3), "docs_per_s": round(n_docs / seconds, 1),
            "mb_per_s": round(n_bytes / seconds / 1e6, 3)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    docs = generate(args.docs, seed=args.seed)
    texts = [d.text for d in docs]
    n_bytes = sum(len(t.encode()) for t in texts)

    t0 = time.perf_counter()
    _ours()
    ours_startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    _stock()
    stock_startup = time.perf_counter() - t0

    ours_preds, ours_detect_s = timed(ours_detect, texts, 1)
    ours_out, ours_redact_s = timed(ours_redact, list(enumerate(texts)), 1)
    stock_preds, stock_s = timed(stock_detect, texts, 1)
    _, ours_pool_s = timed(ours_redact, list(enumerate(texts)), args.workers)
    _, stock_pool_s = timed(stock_detect, texts, args.workers)

    from presidio_analyzer import RecognizerResult
    from presidio_anonymizer import AnonymizerEngine

    anonymizer = AnonymizerEngine()
    stock_out = [
        anonymizer.anonymize(text=t, analyzer_results=[
            RecognizerResult(e if e != "URL_CREDENTIAL" else "URL", s, x, 1.0)
            for e, s, x in ps]).text
        for t, ps in zip(texts, stock_preds, strict=True)
    ]

    ours_score = score(docs, ours_preds)
    stock_score = score(docs, stock_preds)
    result = {
        "bench": "redaction",
        "command": "python -m bench.redaction.bench_redaction " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version()},
        "corpus": {"docs": len(docs), "bytes": n_bytes, "seed": args.seed,
                   "docs_with_pii": sum(1 for d in docs if d.spans),
                   "gold_spans": sum(len(d.spans) for d in docs),
                   "hard_negatives": sum(len(d.negatives) for d in docs),
                   "kinds": dict(Counter(d.kind for d in docs))},
        "startup_s": {"ours_redactor": round(ours_startup, 3),
                      "stock_analyzer": round(stock_startup, 3)},
        "throughput": {
            "ours_detect_1proc": rate(len(texts), n_bytes, ours_detect_s),
            "ours_redact_1proc": rate(len(texts), n_bytes, ours_redact_s),
            f"ours_redact_{args.workers}proc": rate(len(texts), n_bytes, ours_pool_s),
            "stock_analyze_1proc": rate(len(texts), n_bytes, stock_s),
            f"stock_analyze_{args.workers}proc": rate(len(texts), n_bytes, stock_pool_s),
            "speedup_redact_vs_stock_same_procs_1": round(stock_s / ours_redact_s, 2),
            f"speedup_redact_{args.workers}proc_vs_stock_1proc": round(stock_s / ours_pool_s, 2),
            f"speedup_redact_vs_stock_same_procs_{args.workers}": round(
                stock_pool_s / ours_pool_s, 2),
        },
        "ours": {**ours_score, "leaked_after_redaction": leaks(docs, ours_out)},
        "stock": {**stock_score, "leaked_after_anonymize": leaks(docs, stock_out),
                  "type_map": STOCK_MAP},
    }
    targets = defaultdict(list)
    for t, m in ours_score["per_type"].items():
        if m["recall"] is not None and m["recall"] < 0.99:
            targets["recall_below_0.99"].append(t)
        if m["precision"] is not None and m["precision"] < 0.95:
            targets["precision_below_0.95"].append(t)
    result["targets_missed"] = dict(targets)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
