"""`stack up` refuses to start, before starting anything, when a port is taken or `java` is
missing; the message names the service, the port or binary, and the log file."""

from __future__ import annotations

import socket

import pytest

from tests.stack.scratch import ScratchStack


@pytest.mark.stack
def test_taken_port_names_service_port_and_log(settings, tmp_path):
    scratch = ScratchStack.create(settings, tmp_path / "stack", offset=300)
    port = scratch.port("kafka_port")
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen(1)
        result = scratch.cli("stack", "up")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "kafka" in output and str(port) in output and "already in use" in output, output
    log_path = tmp_path / "stack" / "logs" / "kafka.log"
    assert str(log_path) in output.replace("\n", ""), output
    assert "ERROR" in log_path.read_text()
    # pre-flight failed before anything started
    assert not list((tmp_path / "stack").glob("run/*.pid"))


@pytest.mark.stack
def test_missing_java_names_service_binary_and_log(settings, tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    scratch = ScratchStack.create(settings, tmp_path / "stack", offset=300,
                                  PATH=str(empty_bin))
    scratch.env.pop("JAVA_HOME", None)
    result = scratch.cli("stack", "up")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "kafka" in output and "`java` not found" in output, output
    assert str(tmp_path / "stack" / "logs" / "kafka.log") in output.replace("\n", ""), output
    assert not list((tmp_path / "stack").glob("run/*.pid"))


@pytest.mark.stack
def test_maven_unreachable_names_maven_and_its_log(settings, tmp_path):
    """Jars missing and Maven cannot reach Central (simulated: offline with an empty local
    repository): `up` fails before starting anything and points at maven.log."""
    empty_repo = tmp_path / "m2"
    empty_repo.mkdir()
    wrapper = tmp_path / "mvn-offline"
    wrapper.write_text(f'#!/bin/sh\nexec mvn -o -Dmaven.repo.local={empty_repo} "$@"\n')
    wrapper.chmod(0o755)
    scratch = ScratchStack.create(settings, tmp_path / "stack", offset=300,
                                  SALESLEDGER_MAVEN_BIN=str(wrapper),
                                  SALESLEDGER_JARS_DIR=str(tmp_path / "lib"))
    result = scratch.cli("stack", "up")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "maven" in output and "Maven Central unreachable" in output, output
    log_path = tmp_path / "stack" / "logs" / "maven.log"
    assert str(log_path) in output.replace("\n", ""), output
    assert "offline" in log_path.read_text()
    assert not list((tmp_path / "stack").glob("run/*.pid"))
