import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_every_port_is_bound_to_loopback(compose):
    ports = [p for service in compose["services"].values() for p in service.get("ports", [])]
    assert ports and all(str(p).startswith("127.0.0.1:") for p in ports)


def test_mlflow_server_matches_the_pinned_client(compose):
    pinned = re.search(r'"mlflow==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    mlflow = compose["services"]["mlflow"]
    assert mlflow["build"]["args"]["MLFLOW_VERSION"] == pinned
    assert (REPO / mlflow["build"]["context"] / "Dockerfile").is_file()
    command = " ".join(mlflow["command"])
    assert "serve.sh" in command and "--serve-artifacts" in command
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in compose["services"]["postgres"]


def test_named_volumes_are_declared(compose):
    used = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])}
    assert used <= set(compose["volumes"])


def test_pyproject_parses():
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["lightning-privacy"]


def test_compose_schema_with_docker_compose():
    for cmd in (["docker-compose"], ["docker", "compose"]):
        if shutil.which(cmd[0]) and subprocess.run(cmd + ["version"], capture_output=True).returncode == 0:
            result = subprocess.run(cmd + ["-f", str(REPO / "docker-compose.yml"), "config", "-q"],
                                    capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            return
    pytest.skip("neither docker-compose nor the docker compose plugin is installed (scripts/test.sh installs it)")


def test_the_database_password_is_a_secret_not_an_argument_or_environment(compose):
    text = (REPO / "docker-compose.yml").read_text()
    assert "PASSWORD:" not in text.replace("POSTGRES_PASSWORD_FILE:", "")  # no password value in any environment
    for name in ("postgres", "mlflow"):
        assert compose["services"][name]["secrets"] == ["db_password"]
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert "postgresql://" not in " ".join(compose["services"]["mlflow"]["command"])


def test_health_checks_allow_start_up_and_the_port_leaves_5000_to_mlflow_ui(compose):
    assert compose["services"]["mlflow"]["healthcheck"]["start_period"]
    ports = compose["services"]["mlflow"]["ports"]
    assert ports and not any(str(p).endswith(":5000") for p in ports)


def test_serve_script_hands_mlflow_the_store_uri_through_its_environment(tmp_path: Path):
    fake = tmp_path / "bin" / "mlflow"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "ARGS=$*"\necho "URI=$MLFLOW_BACKEND_STORE_URI"\n')
    fake.chmod(0o755)
    secret = tmp_path / "db_password"
    secret.write_text("p@ss/w:rd\n")
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "DB_PASSWORD_FILE": str(secret)}
    out = subprocess.run(["sh", str(REPO / "docker" / "mlflow" / "serve.sh"), "--port=5080"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "ARGS=server --port=5080" in out and "p@ss" not in out.split("URI=")[0]
    assert "URI=postgresql://mlflow:p%40ss%2Fw%3Ard@postgres:5432/mlflow" in out
    secret.write_text("")
    missing = subprocess.run(["sh", str(REPO / "docker" / "mlflow" / "serve.sh")], env=env, capture_output=True,
                             text=True)
    assert missing.returncode == 1 and "docker/secrets/db_password" in missing.stderr
