"""`gateway opt-out import` in shared mode: straight into Redis, with the workers' key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.shared.conftest import Launch, Shared, post, sms


def test_import_reaches_every_process(launch: Launch, shared: Shared, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = launch(shared, opt_out=True, data_dir=data)
    second = launch(shared, opt_out=True, data_dir=data)
    (tmp_path / "list.csv").write_text("+12125550100\n+12125550101\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_REDIS_URL": shared.url, "GATEWAY_REDIS_PREFIX": shared.prefix}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "opt-out", "import", "--data-dir", str(data),
         "global", str(tmp_path / "list.csv")],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2 rows: 2 added to global, 0 already on it\n"
    for server in (first, second):
        for to in ("+12125550100", "+12125550101"):
            answer = post(server, sms(to=to))
            assert answer.status_code == 403
            assert answer.json()["reasons"][0]["code"] == "opted_out"
    assert post(second, sms(to="+12125550102")).status_code == 201
    exported = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "opt-out", "export", "--data-dir", str(data),
         "global"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    hints = sorted(line.split(",")[1] for line in exported.stdout.splitlines()[1:])
    assert hints == ["+1212…0100", "+1212…0101"]
