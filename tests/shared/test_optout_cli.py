"""`gateway opt-out import|export` in shared mode: Redis, with the workers' key."""

from __future__ import annotations

from pathlib import Path

from tests.shared.conftest import Launch, Shared, command, post, sms, two_workers


def test_import_reaches_every_process(launch: Launch, shared: Shared, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, second = two_workers(launch, shared, data, opt_out=True)
    (tmp_path / "list.csv").write_text("+12125550100\n+12125550101\n", encoding="utf-8")
    done = command(shared, "opt-out", "import", "--data-dir", str(data), "global",
                   str(tmp_path / "list.csv"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2 rows: 2 added to global, 0 already on it\n"
    for server in (first, second):
        for to in ("+12125550100", "+12125550101"):
            answer = post(server, sms(to=to))
            assert answer.status_code == 403
            assert answer.json()["reasons"][0]["code"] == "opted_out"
    assert post(second, sms(to="+12125550102")).status_code == 201
    exported = command(shared, "opt-out", "export", "--data-dir", str(data), "global")
    assert exported.returncode == 0, exported.stderr
    hints = sorted(line.split(",")[1] for line in exported.stdout.splitlines()[1:])
    assert hints == ["+1212…0100", "+1212…0101"]
