"""The README's main job, ``hermes-fed demo``, end to end through the real CLI, on small
settings: 3 node daemons over gRPC, a Flower SuperLink with 3 SuperNodes on 127.0.0.1, one
federated round, the offline A/B that lets the candidate go live, a round of traffic split
by arm, the online A/B look and the report. The full defaults run in ``make demo``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_fed.events.codec import canonical_json
from hermes_fed.store import Keyring, open_store

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@pytest.mark.slow
def test_demo_runs_the_whole_loop_and_writes_its_report(tmp_path: Path) -> None:
    # Execute
    done = subprocess.run(
        [
            sys.executable, "-m", "hermes_fed.cli", "demo", "--dir", str(tmp_path), "--rounds", "1",
            "--sessions-scale", "2", "--users", "40", "--golden-scale", "12", "--local-steps", "10",
        ],
        capture_output=True, text=True, timeout=1200,
    )

    # Assert: the run, its progress lines and its report
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "federation up: SuperLink + 3 SuperNodes" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "report.html").read_text().count("<svg") >= 3
    assert report["coordinator_log_ok"] is True
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    first = report["rounds"][0]
    assert set(first["tenants"]) == {"acme", "globex", "initech"}
    for tenant in first["tenants"].values():
        assert tenant["usage"]["sessions"] > 0
        assert 0.0 <= tenant["task_success"] <= 1.0
    candidate = first["federated"]["version"]
    assert candidate in {v["version"] for v in report["registry"]}
    assert all(n["bytes_up"] > 0 for n in first["federated"]["nodes"])
    assert report["wire"]["bytes_nodes_to_superlink"] > 0

    # Assert: the offline look shipped the candidate (held-out log-likelihood after 10 steps
    # from the packaged base); it went live at the ab stage, and the next round's users were
    # split between production and the candidate by each node's keyed hash
    decision = first["decision"]
    assert decision["verdict"] == "SHIP", decision
    assert decision["stage"] == "ab" and decision["online"] is True
    second = report["rounds"][1]
    assert second["ab_test_id"] == decision["ab_test_id"]
    for tenant in second["tenants"].values():
        arms = tenant["arms"]
        assert arms["control"]["sessions"] + arms["treatment"]["sessions"] == tenant["usage"]["sessions"]
        assert arms["control"]["sessions"] > 0 and arms["treatment"]["sessions"] > 0
    online = second["online_ab"]
    assert online["ab_test_id"] == decision["ab_test_id"] and online["mode"] == "online"
    assert online["verdict"] in {"SHIP", "ROLLBACK", "CONTINUE"}
    assert online["stage"] == {"SHIP": "production", "ROLLBACK": "rolled_back",
                               "CONTINUE": "ab"}[online["verdict"]]
    assert (report["production"] == candidate) is (online["verdict"] == "SHIP")

    # Assert: every node's log verifies, and even decrypted it holds no e-mail address (the
    # simulated users plant some in most turns; redaction ran before anything was written)
    for tenant in report["tenants"]:
        data = tmp_path / "nodes" / tenant / "data"
        ring = Keyring.from_file(data / "keyring.json")
        with open_store(f"sqlite:///{data / 'events.db'}", tenant, keyring=ring) as store:
            assert store.verify().ok
            events = list(store.read())
            text = "\n".join(canonical_json(dict(e.data)).decode() for e in events)
        # the split users were assigned on the node and their sessions name the test and arm
        assigned = {e.data["user_ref"]: e.data["variant"] for e in events if e.type == "VariantAssigned"}
        tagged = [e.data for e in events if e.type == "SessionStarted" and e.data.get("ab_test_id")]
        assert tagged and all(d["ab_test_id"] == decision["ab_test_id"] for d in tagged)
        assert all(assigned[d["user_ref"]] == d["variant"] for d in tagged)
        assert "<EMAIL_ADDRESS_" in text
        assert EMAIL.findall(text) == []
