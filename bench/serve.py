"""The gateway as `gateway serve` runs it (the same settings, app and uvicorn
call), without the access log, and optionally with the collector tuned.

`python -m bench.serve CONFIG [--workers N] [--gc-tune] [--loop L] [--http H]`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import uvicorn

from gateway.settings import Settings, load_settings


def app_from_env() -> Any:
    """One worker's app (uvicorn imports it by name when there are several)."""
    from gateway.cli import app_from_env as gateway_app

    return gateway_app()  # tunes the collector itself, as `gateway serve` does


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("config", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--gc-tune", action="store_true")
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    args = parser.parse_args(argv)
    settings: Settings = load_settings(args.config)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
        "loop": args.loop,
        "http": args.http,
    }
    if args.workers > 1:
        os.environ["GATEWAY_SETTINGS_JSON"] = settings.model_dump_json()
        uvicorn.run("bench.serve:app_from_env", factory=True, workers=args.workers, **options)
        return
    from gateway.app import create_app

    uvicorn.run(create_app(settings, tune_gc=args.gc_tune), **options)


if __name__ == "__main__":
    main()
