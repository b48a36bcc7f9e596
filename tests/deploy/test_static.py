"""deploy/ checked without a container engine: compose with `docker compose config`, the
Kubernetes manifests against Kubernetes' schemas (offline), Prometheus's config and rules with
promtool, the dashboard and every PromQL expression against the metrics our processes export,
the image's entry point and healthcheck natively. Tools: scripts/test-deps.sh."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lkserver.install import VERSION as LIVEKIT_VERSION
from tests.deploy.conftest import (
    DEPLOY,
    INSTALL_HINT,
    REPO_ROOT,
    TOOLS,
    compose_command,
    exported_metrics,
    tool,
)

pytestmark = pytest.mark.e2e

K8S = DEPLOY / "k8s"
K8S_VERSION = "1.31.0"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "transcriber.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def compose_env(tmp_path: Path, **overrides: str) -> Path:
    """deploy/.env.example as a user would copy it, with LIVEKIT_NODE_IP filled in."""
    values = {"LIVEKIT_NODE_IP": "192.0.2.10", **overrides}
    lines = []
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        if name in values and not line.startswith("#"):
            line = f"{name}={values.pop(name)}"
        lines.append(line)
    lines += [f"{k}={v}" for k, v in values.items()]
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [*compose_command(), "-f", str(DEPLOY / "compose.yaml"), "--env-file", str(env_file)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "API_"))}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=clean, timeout=60, check=False
    )


# --- compose -------------------------------------------------------------------------------------
def test_compose_config_is_valid_and_complete(tmp_path: Path) -> None:
    result = run_compose(compose_env(tmp_path), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(services) >= {"livekit", "redis", "postgres", "api", "bot", "prometheus", "grafana"}
    assert services["livekit"]["image"] == f"livekit/livekit-server:{LIVEKIT_VERSION}"
    lk_env = services["livekit"]["environment"]
    assert (
        lk_env["LIVEKIT_KEYS"]
        == "transcriber: " + services["api"]["environment"]["LIVEKIT_API_SECRET"]
    )
    assert lk_env["LIVEKIT_WEBHOOK_API_KEY"] == "transcriber"
    assert lk_env["NODE_IP"] == "192.0.2.10"
    assert services["bot"]["deploy"]["replicas"] == 2
    assert services["api"]["command"] == ["api"] and services["bot"]["command"] == ["bot"]
    assert services["api"]["environment"]["LIVEKIT_URL"] == "ws://192.0.2.10:7880"
    assert services["bot"]["environment"]["LIVEKIT_URL"] == "ws://livekit:7880"
    for name in ("api", "bot"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://transcriber:")
        assert env["DATABASE_URL"].endswith("@postgres:5432/transcriber")
    # the bots wait for a migrated, healthy API; a stopped bot may drain
    assert services["bot"]["depends_on"]["api"]["condition"] == "service_healthy"
    drain = int(services["bot"]["environment"]["DRAIN_TIMEOUT_S"])
    grace = services["bot"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) > drain
    # the LiveKit config the server mounts names our webhook endpoint
    livekit_config = yaml.safe_load((DEPLOY / "livekit" / "livekit.yaml").read_text())
    assert livekit_config["webhook"]["urls"] == ["http://api:8080/webhooks/livekit"]
    assert "keys" not in livekit_config and "api_key" not in livekit_config["webhook"]


def test_compose_names_a_missing_secret(tmp_path: Path) -> None:
    result = run_compose(compose_env(tmp_path, LIVEKIT_API_SECRET=""), "config")
    assert result.returncode != 0
    assert "LIVEKIT_API_SECRET" in result.stderr


def test_compose_refuses_a_missing_node_ip(tmp_path: Path) -> None:
    result = run_compose(compose_env(tmp_path, LIVEKIT_NODE_IP=""), "config")
    assert result.returncode != 0 and "LIVEKIT_NODE_IP" in result.stderr


# --- Kubernetes ----------------------------------------------------------------------------------
def k8s_resource_files() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = [K8S / name for name in kustomization["resources"]]
    assert all(p.is_file() for p in listed), listed
    others = sorted(set(K8S.rglob("*.yaml")) - set(listed) - {K8S / "kustomization.yaml"})
    return listed + others


def k8s_documents() -> list[dict[str, Any]]:
    return [d for p in k8s_resource_files() for d in yaml.safe_load_all(p.read_text()) if d]


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    python = TOOLS / "venv" / "bin" / "python"
    crds = TOOLS / "crds"
    if not python.is_file() or not (crds / "monitoring.coreos.com_servicemonitors.yaml").is_file():
        pytest.fail(
            "kubernetes-validate (PyPI) or the Prometheus Operator CRDs are missing under "
            f".cache/deploy-tools: {INSTALL_HINT}"
        )
    files = [str(p) for p in k8s_resource_files()]
    result = subprocess.run(
        [str(python), str(Path(__file__).with_name("k8s_validate.py")), K8S_VERSION, str(crds),
         *files],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {line.split(": ")[1].split("/")[0] for line in result.stdout.splitlines()}
    assert kinds >= {
        "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job",
        "ConfigMap", "Secret", "ServiceMonitor", "PrometheusRule",
    }  # fmt: skip


def test_k8s_bot_probes_and_grace_period() -> None:
    docs = k8s_documents()
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    bot = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "transcriber-bot"
    )
    pod = bot["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["terminationGracePeriodSeconds"] > int(config["DRAIN_TIMEOUT_S"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_prometheus_rule_matches_alerts_yml() -> None:
    rule = next(d for d in k8s_documents() if d["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text()), (
        "deploy/k8s/prometheusrule.yaml differs from deploy/prometheus/alerts.yml: copy the groups"
    )


# --- Prometheus ----------------------------------------------------------------------------------
def test_promtool_checks_config_and_rules() -> None:
    promtool = tool("promtool", "prometheus")
    config = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert rules.returncode == 0, rules.stdout + rules.stderr


_FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "delta", "deriv",
    "histogram_quantile", "absent", "vector", "clamp_min", "clamp_max", "min_over_time",
    "max_over_time", "avg_over_time", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "bool", "offset", "topk", "bottomk", "scalar",
}  # fmt: skip
PROMETHEUS_OWN = {"up"}  # Prometheus's own series for every target


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (label matchers, strings, durations and
    grouping labels removed)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    tokens = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {t for t in tokens if t not in _FUNCTIONS and not re.fullmatch(r"\d+[smhdwy]?", t)}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def test_metric_name_parser() -> None:
    expr = 'sum by (le) (rate(x_bucket{a="b"}[5m])) > 3 and on () absent(up{job="y"})'
    assert metric_names(expr) == {"x_bucket", "up"}


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_expression_reads_metrics_we_export(source: str) -> None:
    exported = exported_metrics()
    assert {"transcriber_caption_latency_seconds_bucket", "transcriber_webhooks_total"} <= exported
    exprs = dashboard_expressions() if source == "dashboard" else alert_expressions()
    assert exprs
    for expr in exprs:
        names = metric_names(expr)
        unknown = names - exported - PROMETHEUS_OWN
        assert not unknown, f"{expr!r} reads {sorted(unknown)}, which nothing exports"
        assert names & exported, f"{expr!r} reads none of our metrics"


def test_dashboard_is_provisioned_and_covers_the_product() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"]
        assert panel["targets"], panel["title"]
    read = set().union(*(metric_names(e) for e in dashboard_expressions()))
    assert read >= {
        "transcriber_caption_latency_seconds_bucket", "transcriber_active_rooms",
        "transcriber_active_tracks", "transcriber_captions_total", "transcriber_partials_dropped",
        "transcriber_decode_queue_depth", "transcriber_db_write_failures_total",
        "transcriber_spool_pending", "transcriber_cost_per_minute", "transcriber_speaking_streams",
        "transcriber_jobs",
    }  # fmt: skip
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert alerts >= {
        "TranscriberFinalLatencyHigh", "TranscriberSpoolBacklogGrowing",
        "TranscriberJobsUnclaimed", "TranscriberDatabaseUnreachable",
    }  # fmt: skip


# --- the image -----------------------------------------------------------------------------------
def test_dockerfile_shape() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    silero = re.search(r"--no-deps (silero-vad==[\d.]+)", makefile)
    assert silero and f"--no-deps {silero.group(1)}" in text, "same silero-vad as the Makefile"
    assert re.search(r"^USER 10001", text, re.M), "non-root"
    assert "HEALTHCHECK" in text and 'ENTRYPOINT ["transcriber-entrypoint"]' in text
    assert re.search(r"pip install -c constraints.txt \.", text), "installs the project as a whole"
    assert "ARG ASR_DEVICE" in text and "ARG DIARIZATION" in text
    assert text.count("FROM ") >= 4, "multi-stage"
    ignore = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".cache", ".git", ".data"} <= set(ignore)


@pytest.mark.parametrize(
    "build_args",
    [[], ["ASR_DEVICE=cuda"], ["DIARIZATION=true"], ["ASR_DEVICE=cuda", "DIARIZATION=true"]],
)
def test_dockerfile_passes_buildkit_checks(build_args: list[str]) -> None:
    """BuildKit's own parser, stage resolution and lint rules (`docker build --check`), for
    every build-argument variant; no image is built or pulled."""
    checker = TOOLS / "bin" / "dockerfile-check"
    if not checker.is_file():
        pytest.fail(f"tests/deploy/dockerfile-check is not built: {INSTALL_HINT} (needs Go)")
    flags = [f"-build-arg={arg}" for arg in build_args]
    result = subprocess.run(
        [str(checker), *flags, str(DEPLOY / "Dockerfile")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def fake_transcriber(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "transcriber"
    fake.write_text('#!/bin/sh\necho "transcriber $*"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


@pytest.mark.parametrize(
    ("role", "unset"),
    [
        ("api", "LIVEKIT_API_SECRET"),
        ("api", "DATABASE_URL"),
        ("bot", "LIVEKIT_URL"),
        ("bot", "LIVEKIT_API_KEY"),
        ("migrate", "DATABASE_URL"),
    ],
)
def test_entrypoint_names_a_missing_secret(tmp_path: Path, role: str, unset: str) -> None:
    env = {
        **fake_transcriber(tmp_path),
        "DATABASE_URL": "postgresql+asyncpg://u:p@db/t",
        "LIVEKIT_URL": "ws://lk:7880",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "secret",
        "API_ADMIN_KEY": "admin",
    }
    del env[unset]
    result = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), role],
        capture_output=True, text=True, env=env, timeout=10, check=False,
    )  # fmt: skip
    assert result.returncode == 78
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"transcriber: missing required setting {unset} ")


def test_entrypoint_api_needs_a_way_to_sign_in(tmp_path: Path) -> None:
    env = {
        **fake_transcriber(tmp_path),
        "DATABASE_URL": "postgresql+asyncpg://u:p@db/t",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "secret",
    }
    result = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "api"], capture_output=True, text=True, env=env,
        timeout=10, check=False,
    )  # fmt: skip
    assert result.returncode == 78 and "API_ADMIN_KEY" in result.stderr


def test_entrypoint_runs_the_command_when_configured(tmp_path: Path) -> None:
    env = {
        **fake_transcriber(tmp_path),
        "DATABASE_URL": "postgresql+asyncpg://u:p@db/t",
        "LIVEKIT_URL": "ws://lk:7880",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "secret",
        "API_JWT_SECRET": "jwt",
    }
    cases = [
        (["api", "--no-migrate"], "transcriber api --no-migrate"),
        (["bot"], "transcriber bot"),
        (["migrate"], "transcriber migrate"),
    ]
    for args, expected in cases:
        result = subprocess.run(
            ["sh", str(DEPLOY / "entrypoint.sh"), *args],
            capture_output=True, text=True, env=env, timeout=10, check=False,
        )  # fmt: skip
        assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr


def test_healthcheck_finds_the_role_from_pid_1() -> None:
    sys.path.insert(0, str(DEPLOY))
    try:
        import healthcheck
    finally:
        sys.path.remove(str(DEPLOY))
    assert healthcheck.role(b"/opt/venv/bin/python\0/opt/venv/bin/transcriber\0bot\0") == "bot"
    assert healthcheck.role(b"/opt/venv/bin/python\0/opt/venv/bin/transcriber\0api\0") == "api"
    assert healthcheck.url_for("api") == "http://127.0.0.1:8080/health"
    assert healthcheck.url_for("migrate") is None


def test_alert_rules_fire_when_they_should() -> None:
    """promtool's rule unit tests (tests/deploy/alerts_test.yml): each alert fires on its
    failure and stays quiet in a healthy meeting."""
    promtool = tool("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "test", "rules", str(Path(__file__).with_name("alerts_test.yml"))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
