"""The command line as a policy author and an operator use it: real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

GATEWAY = [sys.executable, "-m", "gateway.cli"]


def run(*args: str, stdin: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [*GATEWAY, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_policy_check_on_the_sample_bundle() -> None:
    done = run("policy", "check", "policies")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("policies: 7 rules in ")


def test_policy_check_prints_every_problem(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - id: x\n    type: nope\n  - id: y\n    type: opt_out\n"
    )
    done = run("policy", "check", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].endswith(
        "a.yaml:3: x: type: unknown rule type 'nope' (known: opt_out, "
        "frequency_cap, content_length, banned_terms, required_text, time_window)"
    )
    assert lines[1].endswith("a.yaml:4: y: lists: is required")
    assert lines[2] == "the policy bundle was refused: 2 problem(s)"
    assert "Traceback" not in done.stderr


def test_policy_test_passes_on_the_sample_cases() -> None:
    done = run("policy", "test", "policies")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("passed, 0 failed")


def test_policy_test_reports_a_failing_case(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - id: len\n    type: content_length\n    max_chars: 3\n"
    )
    (tmp_path / "a.test.yaml").write_text(
        "cases:\n  - name: short is fine\n    at: '2026-06-02T11:00:00Z'\n"
        "    message: {channel: sms, to: '+12125550100', body: 'hello'}\n"
        "    expect: {decision: allow}\n"
    )
    done = run("policy", "test", str(tmp_path))
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].endswith(
        "a.test.yaml: short is fine: expected allow, got reject"
    )


def test_policy_schema_is_json_schema() -> None:
    done = run("policy", "schema")
    schema = json.loads(done.stdout)
    assert "time_window" in json.dumps(schema)


def test_check_json_lines_one_answer_per_line() -> None:
    lines = "\n".join(
        [
            json.dumps(
                {
                    "channel": "sms",
                    "to": "+12125550100",
                    "body": "hi",
                    "at": "2026-06-02T11:00:00-04:00",
                }
            ),
            "{broken",
            json.dumps(
                {
                    "channel": "sms",
                    "to": "+12125550100",
                    "body": "hi",
                    "at": "2026-06-02T22:00:00-04:00",
                }
            ),
            json.dumps({"channel": "sms", "to": "12", "body": "hi"}),
        ]
    )
    done = run("check", "--policies", "policies", "-", stdin=lines + "\n")
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 4
    assert out[0]["decision"] == "allow"
    assert out[1]["line"] == 2 and out[1]["error"].startswith("the body is not valid JSON")
    assert out[2]["decision"] == "defer" and out[2]["deliver_at"] == "2026-06-03T12:00:00Z"
    assert out[3] == {
        "line": 4,
        "error": "'12' is not a phone number in international form (+ and country code)",
    }
    assert done.returncode == 1


def test_check_with_at_flag(tmp_path: Path) -> None:
    message = tmp_path / "m.json"
    message.write_text(json.dumps({"channel": "sms", "to": "+12125550100", "body": "hi"}, indent=2))
    done = run("check", "--policies", "policies", "--at", "2026-06-02T07:59:59-04:00", str(message))
    out = json.loads(done.stdout)
    assert out["decision"] == "defer" and out["deliver_at"] == "2026-06-02T12:00:00Z"


def test_errors_are_one_line(tmp_path: Path) -> None:
    done = run("check", "--policies", "policies", str(tmp_path / "missing.json"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"gateway: {tmp_path / 'missing.json'}: No such file or directory"
    bad_at = run("check", "--policies", "policies", "--at", "soon", "-", stdin="")
    assert bad_at.stderr.strip() == "gateway: --at: 'soon' is not an ISO 8601 time"
