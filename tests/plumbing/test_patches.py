"""The patches to daphne, Twisted and autobahn: only on the versions they were tested with, and on their targets."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from plumbing import patches
from tests.servers import ROOT, free_port

# daphne's command line, run with importlib.metadata saying daphne is 9.9.9 (what an upgrade would install).
UPGRADED_DAPHNE = """
import importlib.metadata as metadata, sys
real = metadata.version
metadata.version = lambda name: "9.9.9" if name.lower() == "daphne" else real(name)
from daphne.cli import CommandLineInterface
sys.argv = ["daphne", "-p", sys.argv[1], "gatewaysite.asgi:application"]
CommandLineInterface.entrypoint()
"""


def upgraded(name: str) -> str:
    return "9.9.9" if name == "daphne" else patches.TESTED[name]


def test_the_installed_server_packages_are_the_tested_ones() -> None:
    """requirements.txt pins what TESTED names: a fresh install starts."""
    assert patches.untested() == []


def test_every_method_a_patch_wraps_is_there() -> None:
    assert patches.missing(target for patch in patches.PATCHES for target in patch.TARGETS) == []


def test_another_version_is_refused_by_name() -> None:
    assert patches.untested(upgraded) == ["daphne 9.9.9 (tested: 4.2.3)"]
    refusal = r"daphne 9\.9\.9 \(tested: 4\.2\.3\).*GATEWAY_ALLOW_UNTESTED_SERVER"
    with pytest.raises(ImproperlyConfigured, match=refusal):
        patches.check(allow_untested=False, installed=upgraded)


def test_the_override_starts_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway"):
        patches.check(allow_untested=True, installed=upgraded)
    assert "untested server packages (GATEWAY_ALLOW_UNTESTED_SERVER=true): daphne 9.9.9" in caplog.text


def test_a_method_gone_from_a_class_is_named() -> None:
    assert patches.missing([("daphne.server", "Server", ("handle_reply", "gone_in_5")),
                            ("daphne.nowhere", "Server", ("handle_reply",))]) == [
        "daphne.server.Server.gone_in_5", "daphne.nowhere.Server"]


def run_upgraded_daphne(**env: str) -> subprocess.Popen[str]:
    port = free_port()
    return subprocess.Popen([sys.executable, "-c", UPGRADED_DAPHNE, str(port)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "UPSTREAM_BASE_URL": "", "GATEWAY_JOURNAL_DIR": "", **env})


@pytest.mark.processes
def test_daphne_refuses_to_serve_the_gateway_on_an_untested_version() -> None:
    process = run_upgraded_daphne()
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "ImproperlyConfigured" in output and "daphne 9.9.9 (tested: 4.2.3)" in output
