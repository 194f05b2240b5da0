"""The JVM services' jars, resolved from Maven Central by ``deploy/local/pom.xml``.

``<stack_dir>/lib/{broker,connect,debezium-plugin,jmx}`` are filled by one Maven reactor run
(``dependency:copy-dependencies``) and stamped with a hash of the POMs; while the stamp matches
and the key jars exist, nothing is downloaded (Maven's own cache, ``~/.m2``, makes a re-resolve
after a POM change quick).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from salesledger.config import Settings
from salesledger.stack import process
from salesledger.stack.base import deploy_file, find_java
from salesledger.stack.errors import StackError

LIB_DIRS = ("broker", "connect", "debezium-plugin", "jmx")
_MAVEN_TIMEOUT_S = 1200.0
_STAMP = ".resolved"


def _poms() -> list[Path]:
    root = deploy_file("pom.xml")
    return [root] + sorted(deploy_file("maven").glob("*/pom.xml"))


def pom_property(name: str) -> str:
    """A ``<properties>`` value of ``deploy/local/pom.xml`` (e.g. ``version.kafka``)."""
    text = deploy_file("pom.xml").read_text()
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", text)
    if not match:
        raise KeyError(f"property {name} not in deploy/local/pom.xml")
    return match.group(1).strip()


def _stamp_value() -> str:
    digest = hashlib.sha256()
    for pom in _poms():
        digest.update(pom.read_bytes())
    return digest.hexdigest()


def key_jars(settings: Settings) -> dict[str, Path]:
    """The jar that proves each lib folder is complete."""
    lib = settings.lib_dir
    kafka, debezium = pom_property("version.kafka"), pom_property("version.debezium")
    jmx = pom_property("version.jmx.exporter")
    return {
        "broker": lib / "broker" / f"kafka_2.13-{kafka}.jar",
        "connect": lib / "connect" / f"connect-runtime-{kafka}.jar",
        "debezium-plugin": lib / "debezium-plugin" / "debezium-connector-postgres"
        / f"debezium-connector-postgres-{debezium}.jar",
        "jmx": lib / "jmx" / f"jmx_prometheus_javaagent-{jmx}.jar",
    }


def jars_ready(settings: Settings) -> bool:
    """True when every lib folder is resolved for the current POMs."""
    stamp = settings.lib_dir / _STAMP
    return (stamp.exists() and stamp.read_text().strip() == _stamp_value()
            and all(p.exists() for p in key_jars(settings).values()))


def maven_log(settings: Settings) -> Path:
    return settings.log_dir / "maven.log"


def preflight(settings: Settings) -> None:
    """Raise when jars are missing and Maven or java cannot run."""
    if jars_ready(settings):
        return
    if shutil.which(settings.maven_bin) is None:
        raise StackError("maven", f"jars missing and `{settings.maven_bin}` not found; "
                         "run `make setup`", maven_log(settings))
    if find_java(settings) is None:
        raise StackError("maven", "jars missing and `java` not found (Maven needs it); "
                         "install a JDK 17 (`make setup`)", maven_log(settings))


def ensure_jars(settings: Settings) -> bool:
    """Resolve the jars if needed; True when Maven ran. Raises StackError on failure."""
    if jars_ready(settings):
        return False
    log_path = maven_log(settings)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lib = settings.lib_dir
    for name in LIB_DIRS:  # a POM change must not leave old versions on a classpath
        shutil.rmtree(lib / name, ignore_errors=True)
    lib.mkdir(parents=True, exist_ok=True)
    argv = [settings.maven_bin, "-B", "-f", str(deploy_file("pom.xml")),
            f"-Dstack.lib={lib}", "dependency:copy-dependencies"]
    env = None
    java = find_java(settings)
    if java is not None:
        env = {**os.environ, "JAVA_HOME": str(java.resolve().parent.parent)}
    with open(log_path, "ab") as log:
        log.write(f"\n=== resolving jars: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=_MAVEN_TIMEOUT_S, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StackError("maven", f"could not run Maven: {exc}", log_path) from exc
    if result.returncode != 0:
        text = process.tail(log_path, 400)
        unreachable = any(word in text for word in (
            "Could not transfer", "UnknownHost", "Connection refused", "Network is unreachable",
            "Connect timed out", "Could not resolve dependencies", "could not be resolved",
            "Cannot access", "offline mode"))
        cause = ("Maven Central unreachable (could not download the jars)" if unreachable
                 else f"Maven failed with exit code {result.returncode}")
        raise StackError("maven", cause, log_path)
    missing = [str(p) for p in key_jars(settings).values() if not p.exists()]
    if missing:
        raise StackError("maven", f"Maven ran but jars are missing: {missing}", log_path)
    (lib / _STAMP).write_text(_stamp_value() + "\n")
    return True
