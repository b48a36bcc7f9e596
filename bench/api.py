"""Load benchmark of the HTTP API on a seeded database.

    .venv/bin/python -m bench.api [--database-url URL] [--reuse] [--seconds 10] [--concurrency 16]

1. Creates a fresh database ``transcriber_bench_api`` on ``DATABASE_URL``'s server (default: the
   local PostgreSQL at 127.0.0.1:5432) and seeds it with ``bench.api_seed`` (1 000 spaces,
   1 000 000 segments, 100 000 usage rows; one 2-hour session of 2 400 segments). ``--reuse``
   keeps an already seeded database (its manifest is ``bench/results/api_seed.json``).
2. Starts the API (``python -m api``) in a subprocess on a loopback port.
3. Drives concurrent load from this process (aiohttp, keep-alive, loopback only), each scenario
   for a bounded time after a warm-up, and reports latency p50/p95/p99 and throughput:
   * ``usage_report``: ``GET /api/usage`` of the busiest space over its busiest month, by day,
     as that space's admin (JWT);
   * ``transcript_page``: ``GET /api/sessions/{slug}/transcript`` (100 segments) over 100
     sessions of many spaces (admin key, which sees every space);
   * ``srt_export``: ``GET .../transcript?format=srt`` of the 2-hour session.

Writes ``bench/results/api.json`` and prints a table. The load generator and the API share the
machine's cores, so the figures are a lower bound of what the API alone would do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from api.auth import issue_user_token
from bench import api_seed
from store.engine import asyncpg_dsn

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "transcriber_bench_api"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Scenario:
    name: str
    concurrency: int
    seconds: float
    url: Callable[[int], str]  # request number -> path and query
    headers: dict[str, str]


@dataclass
class Result:
    name: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_bytes: int


def _percentile(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))]


async def run_scenario(http: aiohttp.ClientSession, base: str, scenario: Scenario) -> Result:
    async def one(n: int) -> tuple[float, int, bool]:
        start = time.perf_counter()
        async with http.get(base + scenario.url(n), headers=scenario.headers) as response:
            body = await response.read()
            ok = response.status == 200
        return (time.perf_counter() - start) * 1000, len(body), ok

    for n in range(min(50, scenario.concurrency * 3)):  # warm-up: pools, caches, plans
        await one(n)
    latencies: list[float] = []
    sizes: list[int] = []
    errors = 0
    counter = 0
    stop = time.perf_counter() + scenario.seconds

    async def worker() -> None:
        nonlocal errors, counter
        while time.perf_counter() < stop:
            counter += 1
            ms, size, ok = await one(counter)
            latencies.append(ms)
            sizes.append(size)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(scenario.concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Result(
        name=scenario.name,
        concurrency=scenario.concurrency,
        requests=len(latencies),
        errors=errors,
        seconds=round(elapsed, 2),
        rps=round(len(latencies) / elapsed, 1),
        p50_ms=round(statistics.median(latencies), 2),
        p95_ms=round(_percentile(latencies, 0.95), 2),
        p99_ms=round(_percentile(latencies, 0.99), 2),
        max_ms=round(latencies[-1], 2),
        mean_bytes=int(statistics.fmean(sizes)),
    )


async def recreate_database(server_url: str, name: str = DB_NAME) -> str:
    """Drop and create the bench's own database ``name`` on the server; its URL."""
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start_api(
    database_url: str, env: dict[str, str], port: int
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "WARNING",
        cwd=ROOT, env=os.environ | env | {"DATABASE_URL": database_url},
    )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(f"http://127.0.0.1:{port}/ready") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectionError:
                pass
            if process.returncode is not None:
                raise SystemExit("the API exited during start-up")
            await asyncio.sleep(0.1)
    process.kill()
    raise SystemExit("the API did not become ready")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    manifest_path = RESULTS / "api_seed.json"
    server_url = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_SERVER
    database_url = make_url(server_url).set(database=DB_NAME).render_as_string(hide_password=False)
    if args.reuse and manifest_path.exists():
        manifest = api_seed.Manifest(**json.loads(manifest_path.read_text()))
        print(f"reusing {manifest.database}", file=sys.stderr)
    else:
        database_url = await recreate_database(server_url)
        print("seeding (a minute or two) ...", file=sys.stderr)
        manifest = await api_seed.seed(database_url, api_seed.Plan(), reset=True)
        manifest_path.write_text(json.dumps(asdict(manifest), indent=2))

    jwt_secret, admin_key = secrets.token_hex(32), secrets.token_hex(32)
    port = _free_port()
    env = {"API_JWT_SECRET": jwt_secret, "API_ADMIN_KEY": admin_key}
    env["DB_POOL_SIZE"] = str(args.pool)
    process = await _start_api(database_url, env, port)
    base = f"http://127.0.0.1:{port}"
    month_start = datetime.fromisoformat(manifest.report_month_start)
    month_end = datetime.fromisoformat(manifest.report_month_end) - timedelta(days=1)
    report_path = f"/api/usage?from={month_start.date()}&to={month_end.date()}&group_by=day"
    space_admin = issue_user_token(
        jwt_secret, user_id="bench-admin", space_id=manifest.report_space_id, role="admin"
    )
    slugs = manifest.sample_session_slugs
    scenarios = [
        Scenario(
            "usage_report", args.concurrency, args.seconds, lambda n: report_path,
            {"Authorization": f"Bearer {space_admin}"},
        ),
        Scenario(
            "transcript_page", args.concurrency, args.seconds,
            lambda n: f"/api/sessions/{slugs[n % len(slugs)]}/transcript?limit=100",
            {"X-Api-Key": admin_key},
        ),
        Scenario(
            "srt_export", max(1, args.concurrency // 4), args.seconds,
            lambda n: f"/api/sessions/{manifest.long_session_slug}/transcript?format=srt",
            {"X-Api-Key": admin_key},
        ),
    ]  # fmt: skip
    results: list[Result] = []
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            for scenario in scenarios:
                print(f"running {scenario.name} ...", file=sys.stderr)
                results.append(await run_scenario(http, base, scenario))
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    targets = {
        "usage_report_p95_under_50ms": results[0].p95_ms < 50,
        "transcript_page_at_least_500_rps": results[1].rps >= 500,
    }
    return {
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "load generator and API share the machine's cores; other work was running",
        },
        "dataset": {
            "spaces": manifest.spaces,
            "sessions": manifest.sessions,
            "segments": manifest.segments,
            "usage_rows": manifest.usage_rows,
            "long_session_segments": manifest.long_session_segments,
            "report_space": manifest.report_space_id,
            "report_month": manifest.report_month_start[:7],
        },
        "api": {"processes": 1, "db_pool_size": args.pool},
        "results": [asdict(r) for r in results],
        "targets_met": targets,
    }


def _table(report: dict[str, Any]) -> str:
    head = f"{'scenario':<16}{'conc':>5}{'reqs':>8}{'err':>5}{'req/s':>9}"
    head += f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'bytes':>10}"
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        lines.append(
            f"{r['name']:<16}{r['concurrency']:>5}{r['requests']:>8}{r['errors']:>5}"
            f"{r['rps']:>9.1f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['mean_bytes']:>10}"
        )
    lines.append("targets: " + ", ".join(f"{k}={v}" for k, v in report["targets_met"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    parser.add_argument("--database-url", help="server to create the bench database on")
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database")
    parser.add_argument("--seconds", type=float, default=10.0, help="per scenario")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pool", type=int, default=10, help="the API's DB_POOL_SIZE")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    report = asyncio.run(bench(args))
    (RESULTS / "api.json").write_text(json.dumps(report, indent=2))
    print(_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
