"""Production settings: the deploy check passes with the documented environment, bad values stop the start."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.servers import ROOT

pytestmark = pytest.mark.processes  # each test starts servers or programs

PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "a" * 20 + "-production-secret-key-with-enough-entropy-7Hq2",
              "ALLOWED_HOSTS": "gateway.example.com", "SECURE_SSL_REDIRECT": "true",
              "SECURE_HSTS_SECONDS": "31536000", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
              "SECURE_HSTS_PRELOAD": "true", "GATEWAY_BEHIND_TLS_PROXY": "true"}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env})


def test_check_deploy_passes_with_the_documented_production_settings() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off() -> None:
    result = manage("check", DEBUG="false", SECRET_KEY="")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_it_refuses_a_bad_log_format_and_a_bad_body_limit() -> None:
    assert "LOG_FORMAT" in manage("check", LOG_FORMAT="xml").stderr
    assert "GATEWAY_MAX_BODY_BYTES" in manage("check", GATEWAY_MAX_BODY_BYTES="lots").stderr
