"""The command line as a policy author and an operator use it: real processes."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import pytest

from gateway.cli import main
from gateway.settings import load_settings
from tests.conftest import REPO
from tests.server import Server, free_port

# One rule, for the tests of `policy test`: a text of more than three characters fails.
LENGTH_RULE = "rules:\n  - id: len\n    type: content_length\n    max_chars: 3\n"

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


def test_policy_check_of_a_folder_takes_the_configs_packs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundle checked is the one `serve` would run: the folder given, with
    the packs that ./gateway.yaml or GATEWAY_PACKS switch on."""
    folder = str(REPO / "policies")
    code, plain, _ = gateway(["policy", "check", folder], capsys, monkeypatch, tmp_path)
    (tmp_path / "gateway.yaml").write_text("packs: [us-tcpa]\n")
    code, packed, _ = gateway(["policy", "check", folder], capsys, monkeypatch, tmp_path)
    (tmp_path / "gateway.yaml").unlink()
    env = {"GATEWAY_PACKS": "[us-tcpa]"}
    code, from_env, _ = gateway(["policy", "check", folder], capsys, monkeypatch, tmp_path, env=env)
    assert code == 0 and ": 7 rules in 4 files, no packs (the config switches none on)" in plain
    assert ": 8 rules in 5 files, packs us-tcpa, version" in packed
    assert ": 8 rules in 5 files, packs us-tcpa, version" in from_env
    assert packed.split("version ")[1] == from_env.split("version ")[1]


def test_policy_check_on_the_sample_bundle() -> None:
    done = run("policy", "check", "policies")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("policies: 7 rules in ")
    assert done.stderr == ""


def test_policy_check_warns_of_a_route_the_config_does_not_have(tmp_path: Path) -> None:
    # Routes come from the config: the bundle stands, but the author hears of it.
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - {id: r, type: content_length, max_chars: 5, match: {route: [native, sms]}}\n"
    )
    done = run("policy", "check", str(tmp_path))
    assert done.returncode == 0
    assert done.stderr == (
        "warning: rule r: match.route names sms, not a route of the configuration (native,"
        " twilio, sendgrid, fcm): no message comes by it\n"
    )


def test_policy_check_prints_every_problem(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - id: x\n    type: nope\n  - id: y\n    type: opt_out\n"
    )
    done = run("policy", "check", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].endswith(
        "a.yaml:3: x: type: unknown rule type 'nope' (known: opt_out, consent, "
        "frequency_cap, content_length, banned_terms, required_text, time_window)"
    )
    assert lines[1].endswith("a.yaml:4: y: lists: is required")
    assert lines[2] == "the policy bundle was refused: 2 problem(s)"
    assert "Traceback" not in done.stderr


def test_policy_test_passes_on_the_sample_cases() -> None:
    done = run("policy", "test", "policies")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("passed, 0 failed")


def run_policy_test(folder: Path, rules: str, cases: str) -> subprocess.CompletedProcess[str]:
    """`gateway policy test` on a folder holding `rules` (a.yaml) and `cases` (a.test.yaml)."""
    (folder / "a.yaml").write_text(rules)
    (folder / "a.test.yaml").write_text("cases:\n" + cases)
    return run("policy", "test", str(folder))


def test_policy_test_reports_a_failing_case(tmp_path: Path) -> None:
    done = run_policy_test(
        tmp_path,
        LENGTH_RULE,
        "  - name: short is fine\n    at: '2026-06-02T11:00:00Z'\n"
        "    message: {channel: sms, to: '+12125550100', body: 'hello'}\n"
        "    expect: {decision: allow}\n",
    )
    assert done.returncode == 1
    # The reasons say what to fix.
    assert done.stdout.splitlines()[0].endswith(
        "a.test.yaml: short is fine: expected allow, got reject (reasons: content_too_long len)"
    )


def test_policy_test_cases_with_bad_recipients_and_bad_messages(tmp_path: Path) -> None:
    done = run_policy_test(
        tmp_path,
        LENGTH_RULE,
        "  - name: not a number\n    at: '2026-06-02T11:00:00Z'\n"
        "    message: {channel: sms, to: '+1 555', body: 'hi'}\n"
        "    expect: {decision: reject, code: invalid_recipient}\n"
        "  - name: no channel\n    at: '2026-06-02T11:00:00Z'\n"
        "    message: {channel: fax, to: '+12125550100', body: 'hi'}\n"
        "    expect: {decision: allow}\n",
    )
    # A message the API would not take is the file's mistake, not a failing
    # case; a recipient that is not valid is a decision, as the API makes it.
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"{tmp_path / 'a.test.yaml'}:8: no channel: message.channel: input should be 'sms',"
        " 'email' or 'push', got 'fax'",
        "the test file was refused: 1 problem(s)",
    ]


def test_policy_test_cases_with_consents(tmp_path: Path) -> None:
    done = run_policy_test(
        tmp_path,
        "rules:\n  - {id: opt-in, type: consent, lists: ['consent:{sender}']}\n",
        "  - name: no consent\n    at: '2026-06-02T11:00:00Z'\n"
        "    message: {channel: sms, to: '+12125550100', body: 'hi', sender: acme}\n"
        "    expect: {decision: reject, code: no_consent, rule: opt-in}\n"
        "  - name: consent on record\n    at: '2026-06-02T11:00:00Z'\n"
        "    consents: [{list: 'consent:acme', address: '+1 212 555 0100'}]\n"
        "    message: {channel: sms, to: '+12125550100', body: 'hi', sender: acme}\n"
        "    expect: {decision: allow}\n",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("2 passed, 0 failed")


def test_policy_schema_is_json_schema() -> None:
    done = run("policy", "schema")
    schema = json.loads(done.stdout)
    assert "time_window" in json.dumps(schema) and "consent" in json.dumps(schema)


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
            json.dumps(
                {"channel": "sms", "to": "12", "body": "hi", "at": "2026-06-02T22:00:00-04:00"}
            ),
        ]
    )
    done = run("check", "--policies", "policies", "-", stdin=lines + "\n\n")
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 5  # one answer per line, the blank one too
    assert out[4] == {"line": 5, "error": "an empty line, not a message"}
    assert out[0]["decision"] == "allow"
    assert out[1]["line"] == 2 and out[1]["error"].startswith("the line is not valid JSON")
    assert out[2]["decision"] == "defer" and out[2]["deliver_at"] == "2026-06-03T12:00:00Z"
    # A number that is not one is a decision, as POST /v1/check answers it.
    assert out[3]["decision"] == "reject"
    assert out[3]["at"] == "2026-06-03T02:00:00Z"  # judged at the moment asked (--at)
    assert out[3]["reasons"] == [
        {
            "rule": "recipient",
            "code": "invalid_recipient",
            "message": "'12' is not a phone number in international form (+ and country code)",
        }
    ]
    assert done.returncode == 1  # line 2 was not a message


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


# In-process: the same `main` as the `gateway` command, for input that once
# escaped as a traceback instead of one line and exit code 2.


def gateway(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cwd: Path,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def policy_test(
    folder: Path,
    make: Callable[[Path], object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str, str]:
    """`gateway policy test` on LENGTH_RULE and the a.test.yaml that `make` writes."""
    (folder / "a.yaml").write_text(LENGTH_RULE)
    make(folder / "a.test.yaml")
    return gateway(["policy", "test", str(folder)], capsys, monkeypatch, folder)


def one_case(name: str, at: str, decision: str) -> Callable[[Path], object]:
    """Writes a test file of one case: 'hello' by SMS, expected to get `decision`."""
    text = (
        f"cases:\n  - name: {name}\n    at: '{at}'\n"
        "    message: {channel: sms, to: '+12125550100', body: 'hello'}\n"
        f"    expect: {{decision: {decision}}}\n"
    )
    return lambda path: path.write_text(text)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"port: 1\n\xff\n", "gateway.yaml: not UTF-8 text (byte 8)"),
        (
            b"port: [\n",
            "gateway.yaml:2: not valid YAML: expected the node content, but found '<stream end>'",
        ),
        (b"port: !!float x\n", "gateway.yaml:1: not valid YAML: 'x' is not a valid float"),
        (
            b"host: a\n\x07\n",
            "gateway.yaml:2: not valid YAML: unacceptable character #x0007: "
            "special characters are not allowed",
        ),
        (b'store: "a\\nb"\n', r"store: 'a\nb' is not embedded, memory or a redis"),
        (b"store: redis://[\n", "store: 'redis://[' is not a valid Redis URL"),
        (b"store: redis://h:port/0\n", "is not a valid Redis URL: Port could not be cast"),
        (b"port: 1\nport: 2\n", "gateway.yaml:2: 'port' is given twice"),  # not the last silently
    ],
)
def test_a_broken_config_file_is_one_line(
    content: bytes,
    error: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "gateway.yaml").write_bytes(content)
    argv = ["check", "--policies", str(REPO / "policies"), "-"]
    code, out, err = gateway(argv, capsys, monkeypatch, tmp_path)
    assert code == 2 and out == ""
    assert err.startswith("gateway: ") and error in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.yaml"]  # no data folder


@pytest.mark.parametrize(
    ("config", "env", "error"),
    [
        ("audit: 5\n", {"GATEWAY_AUDIT_KEY": "k"}, "audit: Input should be a valid dictionary"),
        ("redis_tls: []\n", {"GATEWAY_REDIS_TLS_VERIFY": "0"}, "redis_tls: Input should be"),
        ("", {"GATEWAY_ROUTES": "[{a: !!float x}]"}, "GATEWAY_ROUTES: not valid YAML: 'x' is"),
        ("", {"GATEWAY_PACKS": "[a, "}, "GATEWAY_PACKS: not valid YAML: expected the node"),
        ("audit: {retention: 12h}\n", {}, "audit.retention: '12h' is shorter"),
        ("", {"GATEWAY_AUDIT_RETENTION": "a year"}, "'a year' is not a duration"),
        ("", {"GATEWAY_AUDIT_URL": "mysql://db/x"}, "GATEWAY_AUDIT_URL (audit.url): String should"),
        ("", {"GATEWAY_PORT": "abc"}, "GATEWAY_PORT (port): Input should be a valid integer"),
        # A key is bound to senders by `senders`; a misspelt one is refused, not ignored.
        (
            "",
            {"GATEWAY_API_KEYS": f"[{{sha256: '{'0' * 64}', role: sender, sender: acme}}]"},
            "GATEWAY_API_KEYS (api_keys.0.sender): Extra inputs are not permitted",
        ),
        (
            "",
            {"GATEWAY_API_KEYS": f"[{{sha256: '{'0' * 64}', role: auditor, senders: [acme]}}]"},
            "senders: only a sender key acts for senders, not an auditor key",
        ),
        (
            "",
            {"GATEWAY_API_KEYS": f"[{{sha256: '{'0' * 64}', role: sender, senders: []}}]"},
            "senders: name at least one, or leave it out to act for every sender",
        ),
        ("", {"GATEWAY_AUDIT_URL": "postgresql://db/x"}, "audit: a trail in PostgreSQL (url)"),
    ],
)
def test_a_bad_environment_override_is_one_line(
    config: str,
    env: dict[str, str],
    error: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "gateway.yaml").write_text(config)
    code, out, err = gateway(["policy", "check"], capsys, monkeypatch, tmp_path, env=env)
    assert code == 2 and out == ""
    assert err.startswith("gateway: ") and error in err and err.count("\n") == 1, err


def test_an_empty_config_section_takes_environment_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gateway.yaml").write_text(f"policies: {REPO / 'policies'}\naudit:\n")
    env = {"GATEWAY_AUDIT_KEY": "k"}
    code, out, err = gateway(["policy", "check"], capsys, monkeypatch, tmp_path, env=env)
    assert code == 0 and err == "" and "7 rules" in out


def test_a_whole_section_comes_from_one_variable() -> None:
    env = {
        "GATEWAY_AUDIT": "{key: section-key-of-16+, store_bodies: true}",
        "GATEWAY_AUDIT_STORE_BODIES": "false",  # one key of it, given apart, wins
    }
    settings = load_settings(None, env)
    assert settings.audit.key == "section-key-of-16+"
    assert settings.audit.store_bodies is False


def test_check_answers_a_line_that_is_not_utf8_and_checks_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = b'{"channel": "sms", "to": "+12125550100", "body": "b", "category": "transactional"}'
    stdin = b"\xef\xbb\xbf" + good + b'\n{"body": "\xff"}\n' + good + b"\n"
    argv = ["check", "--policies", str(REPO / "policies"), "-"]
    code, out, err = gateway(argv, capsys, monkeypatch, tmp_path, stdin=stdin)
    assert (code, err) == (1, "")
    first, bad, last = (json.loads(line) for line in out.splitlines())
    assert first["decision"] == last["decision"] == "allow"  # the BOM is not part of line 1
    assert bad == {"line": 2, "error": "not UTF-8 text (byte 10 of the line)"}


def test_check_answers_each_line_of_deeply_nested_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Starts with "{" and spans lines: first tried as one pretty-printed message.
    text = "{" + '"a":{' * 5000 + "\n}\n"
    argv = ["check", "--policies", str(REPO / "policies"), "-"]
    code, out, err = gateway(argv, capsys, monkeypatch, tmp_path, stdin=text.encode())
    assert code == 1 and err == ""
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["line"] for a in answers] == [1, 2]
    assert answers[0]["error"] == "the line is not valid JSON: it is nested too deeply"


def test_check_lines_end_at_line_feeds_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # U+2028, U+2029, NEL and the ASCII separators are characters a JSON line
    # may hold (a writer with ensure_ascii off leaves them raw); CRLF ends a line.
    def line(body: str) -> str:
        return json.dumps(
            {"channel": "sms", "to": "+12125550100", "body": body, "category": "transactional"},
            ensure_ascii=False,
        )

    text = "\n".join(
        [line("a\u2028b") + "\r", line("c\u2029d"), line("e\x85f"), "x\x0by\x1cz\x1d", ""]
    )
    argv = ["check", "--policies", str(REPO / "policies"), "-"]
    code, out, err = gateway(argv, capsys, monkeypatch, tmp_path, stdin=text.encode())
    # The answers are lines whatever a reader takes for a line's end.
    answers = [json.loads(answer) for answer in out.splitlines()]
    assert len(answers) == 4 and (code, err) == (1, "")
    assert [a.get("decision") for a in answers[:2]] == ["allow", "allow"]
    assert answers[2] == {  # a control character, as the HTTP API refuses it
        "line": 3,
        "error": "the message is not valid: body: control character U+0085 at offset 1",
    }
    assert answers[3]["line"] == 4
    assert answers[3]["error"].startswith("the line is not valid JSON")


def test_check_holds_a_line_to_the_size_of_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the HTTP API refuses with 413 is not approved here.
    big = {"channel": "email", "to": "a@example.com", "subject": "s", "body": "x" * 300_000}
    small = {"channel": "email", "to": "a@example.com", "subject": "s", "body": "x"}
    text = f"{json.dumps(big)}\n{json.dumps(small | {'category': 'transactional'})}\n"
    argv = ["check", "--policies", str(REPO / "policies"), "-"]
    code, out, _ = gateway(argv, capsys, monkeypatch, tmp_path, stdin=text.encode())
    first, second = (json.loads(answer) for answer in out.splitlines())
    limit = load_settings(None, {}).max_body_bytes
    assert first == {
        "line": 1,
        "error": f"the line is over the {limit} byte limit of a message (max_body_bytes)",
    }
    assert second["decision"] == "allow" and code == 1


def test_check_refuses_a_data_folder_without_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checked against nothing, an opted-out recipient would pass; nothing is created.
    argv = ["check", "--policies", str(REPO / "policies"), "--data-dir", str(tmp_path), "-"]
    code, out, err = gateway(argv, capsys, monkeypatch, tmp_path, stdin=b"{}\n")
    assert (code, out) == (2, "")
    assert err == (
        f"gateway: {tmp_path}: no gateway state here (state.db); give the --data-dir the"
        " gateway serves from\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_check_with_an_unreachable_store_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    argv = ["check", "--policies", str(REPO / "policies"), "-"]
    env = {"GATEWAY_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    code, out, err = gateway(argv, capsys, monkeypatch, tmp_path, stdin=b"{}\n", env=env)
    assert (code, out) == (2, "")
    assert err.startswith("gateway: the shared store is unreachable (") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p: p.write_bytes(b"cases: []\n\xfe"), "a.test.yaml: not UTF-8 text (byte 10)"),
        (lambda p: p.mkdir(), "a.test.yaml: cannot read the test file (Is a directory)"),
    ],
)
def test_an_unreadable_policy_test_file_is_one_line(
    make: Callable[[Path], object],
    error: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = policy_test(tmp_path, make, capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err == f"gateway: {tmp_path / error}\n"


def test_a_failing_case_is_one_line_whatever_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    case = one_case('"two\\nlines"', "2026-06-02T11:00:00Z", "allow")
    code, out, err = policy_test(tmp_path, case, capsys, monkeypatch)
    assert code == 1 and err == "0 passed, 1 failed\n"
    assert out.startswith(f"{tmp_path / 'a.test.yaml'}: two\\nlines: expected allow, got reject ")
    assert out.count("\n") == 1


def test_check_refuses_an_at_flag_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = "9999-12-31T23:59:59-14:00"  # past datetime's range once in UTC
    argv = ["check", "--policies", str(REPO / "policies"), "--at", at, "-"]
    code, out, err = gateway(argv, capsys, monkeypatch, tmp_path, stdin=b"{}")
    assert (code, out) == (2, "")
    assert err == f"gateway: --at: '{at}' must be from 1970-01-01T00:00:00Z to before 9000\n"


def test_serve_refuses_a_data_folder_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").write_text("")
    port = str(free_port())  # 8080 may be a gateway's already (make run), refused first
    argv = ["serve", "--policies", str(REPO / "policies"), "--data-dir", "data", "--port", port]
    code, out, err = gateway(argv, capsys, monkeypatch, tmp_path)
    assert (code, out) == (2, "")
    assert err == "gateway: data_dir: cannot use data as the data folder (File exists)\n"


@pytest.mark.parametrize(
    ("at", "error"),
    [
        ("2026-06-02T11:00:00", "give a time zone offset, e.g. 2026-06-02T11:00:00-04:00"),
        ("9999-12-31T23:59:59-14:00", "must be from 1970-01-01T00:00:00Z to before 9000"),
    ],
)
def test_a_case_time_without_offset_or_out_of_range_is_refused(
    at: str,
    error: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = policy_test(tmp_path, one_case("x", at, "reject"), capsys, monkeypatch)
    assert (code, out) == (2, "")
    first, last = err.splitlines()
    assert first.startswith(f"{tmp_path / 'a.test.yaml'}:3: x: at: {error}")
    assert last == "the test file was refused: 1 problem(s)"


def test_a_config_path_with_a_newline_is_shown_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"GATEWAY_CONFIG": "no\nsuch.yaml"}
    code, out, err = gateway(["policy", "check"], capsys, monkeypatch, tmp_path, env=env)
    assert (code, out) == (2, "")
    assert (
        err == "gateway: no\\nsuch.yaml: cannot read the config file (No such file or directory)\n"
    )


def test_the_readme_configuration_loads_as_written(tmp_path: Path) -> None:
    """A newcomer copies the README's gateway.yaml: every default it shows loads."""
    from gateway.settings import Settings, load_settings

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Configuration", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "gateway.yaml"
    config.write_text(block, encoding="utf-8")
    settings = load_settings(config, {})
    assert settings.port == 8080 and settings.store == "embedded"
    assert settings.redis_tls == Settings().redis_tls  # `null`: no TLS options


def test_a_reader_that_goes_away_ends_quietly(tmp_path: Path) -> None:
    # `gateway check ... | head -1`: the rest of the output meets a closed pipe.
    message = json.dumps({"channel": "sms", "to": "+12125550100", "body": "Hi"})
    (tmp_path / "many.jsonl").write_text((message + "\n") * 500, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    done = subprocess.run(
        [*GATEWAY, "check", "--policies", "policies", str(tmp_path / "many.jsonl")],
        stdout=reader.stdin, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env, timeout=60,
    )  # fmt: skip
    assert reader.stdin is not None and reader.stdout is not None
    reader.stdin.close()
    with reader.stdout:
        assert reader.stdout.read() == b'{"decision'
    reader.wait(10)
    assert done.returncode == 1
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["opt-out", "add", "--data-dir", "d", "global", "+12125550100", "--note", "bad\udcff"],
         "--note"),
        (["opt-out", "add", "--data-dir", "d", "gl\udcff", "+12125550100"], "list"),
        (["audit", "query", "--data-dir", "d", "--sender", "x\udcff"], "--sender"),
        (["check", "--at", "2026\udcff", "-"], "--at"),
    ],
)  # fmt: skip
def test_arguments_that_are_not_utf8_are_refused_in_one_line(
    tmp_path: Path, args: list[str], shown: str
) -> None:
    # Bytes that are not UTF-8 reach Python as lone surrogates (as \udcff here).
    done = subprocess.run(
        [*GATEWAY, *[a.encode("utf-8", "surrogateescape") for a in args]],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (2, f"gateway: {shown}: not UTF-8 text\n")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_serve_names_variables_that_are_no_setting(tmp_path: Path) -> None:
    """A mistyped variable would otherwise leave its setting silently unset."""
    data = tmp_path / "data"
    server = Server(
        "--policies", str(REPO / "policies"), "--data-dir", str(data),
        env={"GATEWAY_AUDIT_RETENTON": "400d", "GATEWAY_AUDIT_RETENTION": "400d"},
    )  # fmt: skip
    try:
        server.wait_ready()
        said = server.output()
    finally:
        server.stop()
    assert "gateway: GATEWAY_AUDIT_RETENTON is not a setting, so it is ignored" in said
    assert "GATEWAY_AUDIT_RETENTION is not" not in said


def test_serve_writes_its_data_for_its_own_user_alone(tmp_path: Path) -> None:
    """The state holds the pseudonymization key and held messages' provider
    credentials: what serve creates is readable by its user alone."""
    data = tmp_path / "data"
    server = Server("--policies", str(REPO / "policies"), "--data-dir", str(data))
    try:
        server.wait_ready()
        httpx.post(
            server.url + "/v1/messages", json={"channel": "sms", "to": "+12125550100", "body": "hi"}
        )
    finally:
        server.stop()
    assert data.stat().st_mode & 0o777 == 0o700
    written = [path for path in data.rglob("*") if path.is_file()]
    assert any(path.name == "state.db" for path in written)
    assert {oct(path.stat().st_mode & 0o077) for path in written} == {"0o0"}


def test_serve_needs_at_least_one_worker() -> None:
    done = run("serve", "--workers", "0")
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "argument --workers: '0' is not a number of processes (1 or more)"
    )


def test_every_mistake_of_a_test_file_is_listed_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def two_mistakes(path: Path) -> None:
        one_case("a", "2026-06-02T11:00:00Z", "maybe")(path)
        later = one_case("b", "2026-06-02T11:00:00", "allow")
        later(tmp_path / "b.part")
        cases = (tmp_path / "b.part").read_text().removeprefix("cases:\n")
        path.write_text(path.read_text() + cases)

    code, out, err = policy_test(tmp_path, two_mistakes, capsys, monkeypatch)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == 3 and lines[-1] == "the test file was refused: 2 problem(s)"
    assert ": a: expect.decision:" in lines[0] and ": b: at: give a time zone offset" in lines[1]


def test_serve_on_a_port_in_use_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ("serve", "--port", str(port), "--policies", str(REPO / "policies"))
        done = run(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"gateway: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert list(tmp_path.iterdir()) == []  # no data folder claimed
