"""Smoke test of deploy/ without a container engine: its very config files, run natively.

- the official LiveKit server (the binary `make livekit-server` builds, the release the compose
  file pins) with deploy/livekit/livekit.yaml and its keys, webhook key and node IP from the
  environment as compose passes them; only ports, the bind address, Redis's and the API's
  addresses are rewritten (compose's service names do not resolve here);
- Redis, and PostgreSQL (the test database);
- the API (migrating at start, as in compose) and two bot workers with the environment
  `docker compose config` resolves for the api and bot services from deploy/.env.example
  (addresses and ports replaced);
- Debian's Prometheus with deploy/prometheus/prometheus.yml and alerts.yml (targets rewritten
  to the local ports; the bot's DNS discovery becomes two static targets).

A simulated participant joins through an API-issued token and speaks a real recording; the
server's webhooks make the API request the job, a worker transcribes it. Then every dashboard
query must return data through Prometheus's HTTP API, every alert rule must evaluate cleanly,
and no alert may fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.simulate import SimulatedSpeaker, Turn
from lkserver import find_binary, free_port
from tests.deploy.conftest import DEPLOY, REPO_ROOT, tool
from tests.deploy.test_static import compose_env, dashboard_expressions, run_compose
from tests.e2e.bot.helpers import WorkerProcess
from tests.integration.conftest import database_url, db_server  # noqa: F401 - fixtures
from tests.support.netns import VethNamespace, unavailable_reason, veth_namespace
from tests.support.redis import RedisProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

CLIP = REPO_ROOT / "assets" / "eval" / "en_jfk_inaugural.wav"
WAIT_S = 180.0


class Process:
    """A child process with its log in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv, env=env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(45)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def http_get(url: str, timeout_s: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, proc: Process, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise AssertionError(f"{proc.name} exited:\n{proc.log()}")
        with contextlib.suppress(OSError):
            if http_get(url)[0] == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"{proc.name} never answered {url}:\n{proc.log()}")


@pytest.fixture(scope="module")
def netns() -> Iterator[VethNamespace]:
    if (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    with veth_namespace("lkd") as namespace:
        yield namespace


def compose_services(tmp_path: Path) -> dict[str, Any]:
    result = run_compose(compose_env(tmp_path), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    return services


def service_env(service: dict[str, Any], **overrides: str) -> dict[str, str]:
    """The service's environment as compose resolves it, on top of this process's own (PATH,
    HOME...), with the addresses that only exist inside compose replaced."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LIVEKIT_", "API_", "BOT_", "ASR_", "DATABASE_"))
    }
    env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    # deploy/.env.example ships CHANGE-ME placeholders, which only development mode accepts
    return {
        **inherited,
        **env,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "TRANSCRIBER_DEV_MODE": "1",
        **overrides,
    }


def livekit_config(netns: VethNamespace, redis: str, api_base: str) -> tuple[dict[str, Any], int]:
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "livekit" / "livekit.yaml").read_text())
    # compose's service names and fixed host ports do not exist here
    assert config["webhook"]["urls"] == ["http://api:8080/webhooks/livekit"]
    config["webhook"]["urls"] = [f"{api_base}/webhooks/livekit"]
    assert config["redis"]["address"] == "redis:6379"
    config["redis"]["address"] = redis
    config["port"] = free_port()
    config["bind_addresses"] = [netns.namespace_address]
    config["rtc"]["tcp_port"] = free_port()
    config["prometheus_port"] = free_port()
    return config, int(config["port"])


def prometheus_config(tmp: Path, api: str, bots: list[str], livekit: str) -> Path:
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["transcriber-api"]["static_configs"] == [{"targets": ["api:8080"]}]
    jobs["transcriber-api"]["static_configs"] = [{"targets": [api]}]
    assert jobs["transcriber-bot"]["dns_sd_configs"][0]["names"] == ["bot"]
    del jobs["transcriber-bot"]["dns_sd_configs"]
    jobs["transcriber-bot"]["static_configs"] = [{"targets": bots}]
    jobs["livekit"]["static_configs"] = [{"targets": [livekit]}]
    assert config["rule_files"] == ["alerts.yml"]
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp / "alerts.yml")
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def prom_query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = http_get(url)
    reply = json.loads(body)
    assert status == 200 and reply["status"] == "success", (expr, reply)
    result: list[dict[str, Any]] = reply["data"]["result"]
    return result


def has_number(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


async def api_call(base: str, admin_key: str, method: str, path: str, body: object = None) -> Any:
    import aiohttp

    headers = {"X-Api-Key": admin_key, "X-Space-Id": "space-1", "X-User-Id": "host"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, base + path, json=body, headers=headers) as reply,
    ):
        payload = await reply.json()
        assert reply.status < 400, (method, path, reply.status, payload)
        return payload


async def test_deploy_configs_run_a_meeting_with_every_panel_filled_and_no_alert(
    netns: VethNamespace,
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    binary = find_binary()
    if binary is None:
        pytest.fail("the official LiveKit server is not installed: run `make livekit-server`")
    prometheus_bin = tool("prometheus", "prometheus")
    services = compose_services(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[Process] = []
    redis: RedisProcess | None = None
    speaker: SimulatedSpeaker | None = None
    bots: list[WorkerProcess] = []
    try:
        redis = RedisProcess(netns.namespace_address, free_port(), netns.command([]))

        # the API, on the host side of the veth pair so LiveKit's webhooks reach it
        api_port = free_port(netns.host_address)
        api_base = f"http://{netns.host_address}:{api_port}"
        lk_config, lk_port = livekit_config(netns, redis.address, api_base)
        livekit_url = f"ws://{netns.namespace_address}:{lk_port}"
        api_env = service_env(
            services["api"],
            DATABASE_URL=database_url,
            LIVEKIT_URL=livekit_url,
            API_HOST=netns.host_address,
            API_PORT=str(api_port),
        )
        assert services["api"]["command"] == ["api"]  # no --no-migrate: it migrates at start
        api = Process("api", [sys.executable, "-m", "api"], api_env, logs)
        procs.append(api)

        # LiveKit with deploy/'s config; keys, webhook key and node IP from the environment
        lk_env = {k: str(v) for k, v in services["livekit"]["environment"].items()}
        assert set(lk_env) == {"LIVEKIT_KEYS", "LIVEKIT_WEBHOOK_API_KEY", "NODE_IP"}
        lk_env["NODE_IP"] = netns.namespace_address
        config_path = tmp_path / "livekit.yaml"
        config_path.write_text(yaml.safe_dump(lk_config))
        livekit = Process(
            "livekit",
            [*netns.command([]), str(binary), "--config", str(config_path)],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **lk_env},
            logs,
        )
        procs.append(livekit)
        wait_http(f"http://{netns.namespace_address}:{lk_port}/", livekit, 60)
        wait_http(f"{api_base}/ready", api)

        # two workers with the bot service's environment
        assert services["bot"]["deploy"]["replicas"] == 2
        for n in (1, 2):
            env = service_env(
                services["bot"],
                DATABASE_URL=database_url,
                LIVEKIT_URL=livekit_url,
                SPOOL_DIR=str(tmp_path / "spool"),  # shared, as the compose volume is
            )
            bots.append(WorkerProcess(f"bot{n}", env, logs))
        for bot in bots:
            await bot.wait_ready(WAIT_S)

        # Prometheus with deploy/'s scrape config and rules
        prom_port = free_port()
        prom_dir = tmp_path / "prometheus"
        prom_dir.mkdir()
        prom_config = prometheus_config(
            prom_dir,
            api=f"{netns.host_address}:{api_port}",
            bots=[f"127.0.0.1:{b.port}" for b in bots],
            livekit=f"{netns.namespace_address}:{lk_config['prometheus_port']}",
        )
        prometheus = Process(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            logs,
        )
        procs.append(prometheus)
        prom = f"http://127.0.0.1:{prom_port}"
        wait_http(f"{prom}/-/ready", prometheus, 60)
        # one scrape of every target before anyone speaks: rates count from there
        deadline = time.monotonic() + 60
        while len([r for r in prom_query(prom, "up") if r["value"][1] == "1"]) < 4:
            assert time.monotonic() < deadline, prom_query(prom, "up")
            await asyncio.sleep(1.0)

        # a meeting: a session, an API-issued token, a participant speaking a real recording
        admin_key = api_env["API_ADMIN_KEY"]
        created = await api_call(api_base, admin_key, "POST", "/api/sessions", {"title": "Smoke"})
        slug = created["slug"]
        joined = await api_call(api_base, admin_key, "GET", f"/api/sessions/{slug}/token?name=Al")
        speaker = SimulatedSpeaker("alice")
        await speaker.join(livekit_url, joined["token"])
        await speaker.pause(3.0)
        await speaker.say(Turn(CLIP))
        await speaker.pause(3.0)

        async def finals() -> float:
            total = 0.0
            for bot in bots:
                for line in (await bot.metrics()).splitlines():
                    if line.startswith('transcriber_captions_total{kind="final"}'):
                        total += float(line.split()[-1])
            return total

        deadline = time.monotonic() + WAIT_S
        while await finals() < 1:
            assert time.monotonic() < deadline, "no final caption: " + bots[0].log()[-2000:]
            await asyncio.sleep(1.0)

        # every dashboard query returns data through Prometheus (rates need two scrapes)
        exprs = dashboard_expressions()
        deadline = time.monotonic() + WAIT_S
        while True:
            missing = [e for e in exprs if not has_number(prom_query(prom, e))]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"dashboard queries without data: {missing}")
            await asyncio.sleep(3.0)
        p95 = prom_query(
            prom,
            "histogram_quantile(0.95, sum by (le) "
            "(rate(transcriber_caption_latency_seconds_bucket[5m])))",
        )
        assert 0 < float(p95[0]["value"][1]) < 30

        # every rule evaluates cleanly, and none fires
        await asyncio.sleep(16)  # one more evaluation_interval with all data in
        _, body = http_get(f"{prom}/api/v1/rules")
        rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
        shipped = (REPO_ROOT / "deploy/prometheus/alerts.yml").read_text().count("- alert:")
        assert len(rules) == shipped
        for rule in rules:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        _, body = http_get(f"{prom}/api/v1/alerts")
        firing = [a for a in json.loads(body)["data"]["alerts"] if a["state"] == "firing"]
        assert firing == []
        up = prom_query(prom, "up")
        assert {r["metric"]["job"] for r in up if r["value"][1] == "1"} >= {
            "transcriber-api",
            "transcriber-bot",
            "livekit",
        }
        assert len([r for r in up if r["metric"]["job"] == "transcriber-bot"]) == 2
    finally:
        if speaker is not None:
            with contextlib.suppress(Exception):
                await speaker.leave()
        for proc in reversed(procs):
            proc.stop()
        for bot in bots:
            bot.stop()
        if redis is not None:
            redis.close()
        print(f"smoke test: {time.monotonic() - started:.0f} s; logs in {logs}")
