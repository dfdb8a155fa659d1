"""The deployment files in deploy/ stay in step with the code (they cannot be run here).

No Docker engine or Kubernetes here, so the Helm values and Dockerfiles are
checked for what would break silently: a secret written into a values file,
channels or store types that differ from what the launcher uses, a COPY of
a folder that no longer exists. deploy/nginx.conf is rendered and checked
with `nginx -t` (and run for real by tests/e2e/test_scaleout.py).
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

import bot.serve as serve
from core.settings import PROJECT_ROOT
from tests.e2e.services import render_nginx_conf

DEPLOY = PROJECT_ROOT / "deploy"
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET", re.IGNORECASE)


def load(name: str):
    return yaml.safe_load((DEPLOY / "helm" / name).read_text(encoding="utf-8"))


def env_from_values(values) -> dict:
    return {item["name"]: item for item in values.get("extraEnv", [])}


@pytest.mark.parametrize("name", ["values.yaml", "action-server-values.yaml"])
def test_secrets_come_from_kubernetes_secrets(name):
    values = load(name)
    for variable, item in env_from_values(values).items():
        if SECRET_NAME.search(variable):
            assert "secretKeyRef" in item.get("valueFrom", {}), f"{variable} must come from a Secret in {name}"
        assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(item.get("value", ""))), f"a password in {variable}'s URL in {name}"
    endpoints = (values.get("applicationSettings") or {}).get("endpoints") or {}
    for store in endpoints.values():
        if isinstance(store, dict) and "password" in store:
            assert re.fullmatch(r"\$\{[A-Z_]+\}", str(store["password"])), "store passwords are ${ENV} references"


@pytest.mark.parametrize("name", ["values.yaml", "action-server-values.yaml"])
def test_encryption_at_rest_is_on_with_the_key_from_the_secret(name):
    """Both charts set ASSISTANT_ENCRYPTION_KEY from the same Secret key: the Rasa servers write
    the tracker, the action servers the personal columns, and each must read what the other wrote."""
    item = env_from_values(load(name))["ASSISTANT_ENCRYPTION_KEY"]
    assert item["valueFrom"]["secretKeyRef"] == {"name": "northwind-assistant", "key": "encryption-key"}


def test_the_rasa_chart_runs_two_replicas_with_the_launchers_stores_and_channels():
    values = load("values.yaml")
    endpoints = values["applicationSettings"]["endpoints"]

    assert values["replicaCount"] == 2
    assert endpoints["lockStore"]["enabled"] and endpoints["lockStore"]["type"] == serve.LOCK_STORE_TYPE
    tracker = endpoints["trackerStore"]
    assert tracker["enabled"] and tracker["dialect"] == "postgresql"
    assert tracker["type"] == getattr(serve, "TRACKER_STORE_TYPE", "SQL")
    channels = yaml.safe_load((PROJECT_ROOT / "bot" / "credentials.yml").read_text(encoding="utf-8"))
    assert set(values["applicationSettings"]["credentials"]["additionalChannelCredentials"]) == set(channels)
    assert "$(RASA_API_TOKEN)" in values["args"] and "RASA_API_TOKEN" in env_from_values(values)
    assert values["ingress"]["enabled"] and values["nginx"]["enabled"] is False


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.actions"])
def test_the_dockerfiles_copy_folders_that_exist(dockerfile):
    text = (DEPLOY / dockerfile).read_text(encoding="utf-8")
    built = ("models/", "artifacts/")  # made by training before the image is built
    for source in re.findall(r"^COPY (?:--\S+ )*(\S+) \S+$", text, flags=re.MULTILINE):
        if source.startswith(built) or source.startswith("/"):
            continue
        assert (PROJECT_ROOT / source).exists(), f"{dockerfile} copies {source}, which is not in the repository"
    assert "USER 1001" in text
    instructions = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in instructions if re.search(r"(?i)(password|token|secret)\w*\s*=", line)], "a secret in the image"


def test_the_nginx_template_is_valid_for_nginx(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.which(nginx):
        pytest.skip("nginx is not installed (scripts/setup installs it)")
    tmp_path.chmod(0o755)
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(tmp_path, "127.0.0.1:18080", ["127.0.0.1:5005", "127.0.0.1:5006"]))

    check = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
                           capture_output=True, text=True)

    assert check.returncode == 0, check.stderr
    text = conf.read_text()
    assert "ip_hash" in text and "Upgrade $http_upgrade" in text and text.count("server 127.0.0.1:5006;") == 2


# ------------------------------------------------------------------ production mode, secrets, network policy


@pytest.mark.parametrize("name", ["values.yaml", "action-server-values.yaml"])
def test_both_charts_run_in_production_mode_with_the_action_secret_from_the_secret(name):
    env = env_from_values(load(name))
    assert env["ASSISTANT_ENV"]["value"] == "production"
    assert env["ACTION_SERVER_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "northwind-assistant", "key": "action-server-secret"}


def test_the_rasa_pods_have_every_secret_production_mode_requires():
    from bot.security.mode import production_problems

    env = env_from_values(load("values.yaml"))
    stand_ins = {name: ("crm=" if name == "REST_CALLER_TOKENS" else "") + "x7Rq2LmN9vB4tY6wZ1sD3fG5hJ8kP0aQ"
                 for name, item in env.items() if "secretKeyRef" in item.get("valueFrom", {})}
    # Inbox accounts live in the database (or INBOX_OIDC_* is added): checked at start, not here.
    assert production_problems(stand_ins, checks=("widget", "rest", "api", "action_server")) == []
    assert "INBOX_PASSWORD" not in env and "INBOX_SESSION_SECRET" not in env  # per-agent accounts replace them


def test_rasa_sends_the_action_secret_header_and_the_chart_writes_no_second_action_endpoint():
    values = load("values.yaml")
    action = values["applicationSettings"]["endpoints"]["additionalEndpoints"]["action_endpoint"]
    assert action["headers"] == {"X-Action-Secret": "${ACTION_SERVER_SECRET}"}
    assert action["url"] == "http://northwind-actions-rasa-action-server/webhook"
    assert values["rasa-action-server"]["install"] is False and values["rasa-action-server"]["external"]["enabled"] is False


def test_the_rasa_pods_listen_on_every_interface_behind_one_trusted_proxy_with_shared_limits():
    values = load("values.yaml")
    env = env_from_values(values)
    assert values["args"][values["args"].index("--interface") + 1] == "0.0.0.0"
    assert env["ASSISTANT_BIND_HOST"]["value"] == "0.0.0.0" and env["ASSISTANT_INGRESS_PROXY_HOPS"]["value"] == "1"
    assert env["ASSISTANT_LOCK_STORE_URL"]["value"].startswith("redis://$(REDIS_HOST)")
    assert env["ASSISTANT_LOCK_STORE_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"


def test_the_action_servers_listen_on_every_interface_of_the_pod():
    args = load("action-server-values.yaml")["args"]
    assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--port") + 1] == "5055"


def test_only_the_rasa_pods_reach_the_action_server():
    policy = load("action-server-networkpolicy.yaml")
    actions = load("action-server-values.yaml")
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "rasa-action-server",
                                                            "app.kubernetes.io/instance": "northwind-actions"}
    [rule] = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "rasa", "app.kubernetes.io/instance": "northwind"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": actions["applicationSettings"]["port"]}]
    assert not (load("values.yaml").get("networkPolicy") or {}).get("enabled")  # the chart's own stays off


def test_the_images_run_in_production_mode_and_the_rasa_image_leaves_the_api_off():
    rasa_image = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    actions_image = (DEPLOY / "Dockerfile.actions").read_text(encoding="utf-8")
    for text in (rasa_image, actions_image):
        assert re.search(r"^\s+ASSISTANT_ENV=production", text, flags=re.MULTILINE)
        assert re.search(r"^\s+ASSISTANT_BIND_HOST=0\.0\.0\.0", text, flags=re.MULTILINE)
    cmd = re.search(r"^CMD (\[.*?\])$", rasa_image, flags=re.MULTILINE | re.DOTALL).group(1)
    assert "--enable-api" not in cmd
    assert 'ENTRYPOINT ["python", "-m", "bot.action_server"]' in actions_image


def test_the_action_servers_privacy_worker_purges_after_the_retention_period_and_links_to_the_public_url():
    """The retention purge and the data-copy link are the action server's (bot/privacy/worker.py)."""
    from core.settings import load_settings

    env = env_from_values(load("action-server-values.yaml"))
    settings = load_settings(environ={name: item["value"] for name, item in env.items() if "value" in item
                                      and name in ("ASSISTANT_RETENTION_DAYS", "ASSISTANT_PUBLIC_URL")})
    assert settings.retention_days == 365
    assert settings.public_url.startswith("https://")
