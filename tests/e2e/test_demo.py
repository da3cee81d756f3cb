"""The README's main job, ``hermes-fed demo``, end to end through the real CLI, on small
settings: per tenant a model server, a node daemon and its gateway; a Flower SuperLink with
3 SuperNodes; the coordinator's autopilot taking one beat per simulated day; simulated
users through the gateways with the official ``openai`` client. Three days: readiness, a
round, the offline look and the canary on day 1, the A/B from day 2. The full defaults run
in ``make demo``."""

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
def test_demo_turns_the_wheel_through_the_gateways_and_writes_its_report(tmp_path: Path) -> None:
    # Execute
    done = subprocess.run(
        [
            sys.executable, "-m", "hermes_fed.cli", "demo", "--dir", str(tmp_path), "--days", "3",
            "--sessions-scale", "3", "--users", "40", "--local-steps", "10", "--pii-rate", "0.7",
        ],
        capture_output=True, text=True, timeout=1200,
    )

    # Assert: the run, its progress lines and its report
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "federation up: SuperLink + 3 SuperNodes" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "report.html").read_text().count("<svg") == 4
    assert report["coordinator_log_ok"] is True
    days = report["days"]
    assert [d["day"] for d in days] == [1, 2, 3]

    # Assert: the autopilot did it all (the demo decides nothing): on day 1 it delivered the
    # base's plan, trained because the nodes said so, looked offline and put the candidate on
    # canary; on day 2 it moved it to the online A/B
    def acted(day: dict[str, object]) -> list[tuple[str, str | None]]:
        return [(d["action"], d.get("stage")) for d in day["decisions"]  # type: ignore[attr-defined]
                if d["event"] == "AutopilotStepIntended"]

    assert acted(days[0])[:3] == [("deploy", None), ("train", None), ("offline_look", None)]
    train = next(d for d in days[0]["decisions"] if d.get("action") == "train")
    assert "nodes say train" in train["reason"]
    assert ("promote", "canary") in acted(days[0])
    candidate = next(v["version"] for v in report["registry"] if v["lineage"].get("mode") != "init")
    assert days[0]["plan"]["test_id"] == f"canary-{candidate}"
    assert ("promote", "ab") in acted(days[1])
    assert days[2]["plan"]["test_id"] == f"ab-{candidate}"
    # every gateway served the plan the coordinator says it applied, that day
    for day in days:
        assert set(day["gateway_plans"].values()) == {day["plan"]["test_id"]}, day["gateway_plans"]

    # Assert: users were routed by the gateways, by arm, and their sessions scored (a
    # tenant's dozen sessions a day can all land in one arm: the arms are pooled over the
    # A/B's days and the large tenants)
    seen_arms: set[str] = set()
    for day in days[1:]:
        for tenant in ("acme", "globex"):
            cells = day["tenants"][tenant]["arms"]
            assert set(cells) <= {"control", "treatment"}, cells
            seen_arms |= set(cells)
            assert {c["version"] for a, c in cells.items() if a == "treatment"} <= {candidate}
            assert {c["version"] for a, c in cells.items() if a == "control"} <= {"base"}
            assert sum(c["sessions"] for c in cells.values()) == \
                day["tenants"][tenant]["usage"]["sessions"]
            assert all(c["scored"] == c["sessions"] for c in cells.values()), cells
            assert all(-1.0 <= c["quality"] <= 1.0 for c in cells.values()), cells
    assert seen_arms == {"control", "treatment"}

    # Assert: every node's log verifies, and even decrypted it holds no e-mail address (the
    # simulated users plant some in most turns; the gateway redacted before anything was
    # written); the sessions name the test and arm the gateway chose
    variants: set[str] = set()
    redacted: list[bool] = []
    for tenant in report["tenants"]:
        data = tmp_path / "nodes" / tenant / "data"
        ring = Keyring.from_file(data / "keyring.json")
        with open_store(f"sqlite:///{data / 'events.db'}", tenant, keyring=ring) as store:
            assert store.verify().ok
            events = list(store.read())
            text = "\n".join(canonical_json(dict(e.data)).decode() for e in events)
        tagged = [e.data for e in events if e.type == "SessionStarted" and e.data.get("ab_test_id")]
        assert {d["ab_test_id"] for d in tagged} <= {f"canary-{candidate}", f"ab-{candidate}"}
        assert {d["variant"] for d in tagged} <= {"control", "treatment"}
        variants |= {d["variant"] for d in tagged}
        redacted.append("<EMAIL_ADDRESS_" in text)
        assert EMAIL.findall(text) == []
    assert variants == {"control", "treatment"}
    assert any(redacted)  # the long tail's few sessions may plant no address at all
