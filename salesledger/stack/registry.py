"""The Confluent-compatible schema registry slot of the stack.

Another track builds Apicurio Registry from Maven Central in ``deploy/local/registry/``
(``build.sh STACK_DIR`` then ``run.sh STACK_DIR PORT``; Confluent API at ``/apis/ccompat/v7``).
The registry joins the stack as one more service once that folder has its ``README.md`` (the
track's statement that it works) next to both scripts. Until then it is reported as not
available, with the reason, and is not required for the stack's health.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import uuid
from pathlib import Path

from salesledger.config import Settings
from salesledger.stack import process
from salesledger.stack.base import Health, Service, ServiceStatus, deploy_file, find_java
from salesledger.stack.connect import http_json

NAME = "registry"
_BUILD_TIMEOUT_S = 1800.0
_PROBE_SCHEMA = {"type": "record", "name": "SlHealth", "namespace": "salesledger.health",
                 "fields": [{"name": "id", "type": "string"}]}


def _folder() -> Path | None:
    try:
        return deploy_file("registry")
    except FileNotFoundError:
        return None


def available() -> bool:
    """True when ``deploy/local/registry`` declares a working build (README + both scripts)."""
    folder = _folder()
    return folder is not None and all((folder / f).exists()
                                      for f in ("README.md", "build.sh", "run.sh"))


def service(settings: Settings) -> Service | None:
    """The registry as a stack service, or None while it is not available."""
    return RegistryService(settings) if available() else None


def unavailable_reason(settings: Settings) -> str:
    """Why the registry is not part of the stack."""
    folder = _folder()
    if folder is None:
        return ("not available: no registry build (deploy/local/registry missing); "
                "CDC topics use Connect's JSON converter")
    missing = [f for f in ("README.md", "build.sh", "run.sh") if not (folder / f).exists()]
    return (f"not available: deploy/local/registry has no {', '.join(missing)} yet (the "
            "Apicurio trial is not declared working); CDC topics use Connect's JSON converter")


def unavailable_status(settings: Settings) -> ServiceStatus:
    """A status row that explains the registry's absence (not required)."""
    return ServiceStatus(NAME, None, settings.registry_port,
                         Health(False, unavailable_reason(settings)),
                         settings.log_dir / f"{NAME}.log", None, required=False)


class RegistryService(Service):
    """Apicurio Registry (Quarkus fast-jar) on ``registry_port``, built by ``build.sh``."""

    name = NAME

    @property
    def port(self) -> int:
        return self.settings.registry_port

    def marker(self) -> str:
        return str(self.home / "build" / "quarkus-app" / "quarkus-run.jar")

    def binaries(self) -> dict[str, Path | None]:
        return {"java": find_java(self.settings)}

    def _env(self) -> dict[str, str]:
        java = find_java(self.settings)
        env = dict(os.environ)
        if java is not None:
            env["JAVA"] = str(java)
            env["PATH"] = f"{java.parent}:{env.get('PATH', '')}"
        return env

    @property
    def build_root(self) -> Path:
        """Where ``build.sh`` builds (beside the Maven jars, so stacks sharing
        ``SALESLEDGER_JARS_DIR`` share one build and ``reset --all`` keeps it)."""
        return self.settings.lib_dir / "registry-build"

    def prepare(self) -> None:
        folder = _folder()
        assert folder is not None
        self.build_root.mkdir(parents=True, exist_ok=True)
        self.run_tool(["bash", str(folder / "build.sh"), str(self.build_root)],
                      "build the registry (cached after the first time)",
                      timeout_s=_BUILD_TIMEOUT_S, env=self._env())
        # run.sh STACK_DIR expects STACK_DIR/registry/build; data stays in STACK_DIR/registry/data
        link, target = self.home / "build", self.build_root / "registry" / "build"
        self.home.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and link.resolve() != target.resolve():
            link.unlink()
        elif link.exists() and not link.is_symlink():
            shutil.rmtree(link)
        if not link.is_symlink():
            link.symlink_to(target)

    def start(self) -> subprocess.Popen:
        folder = _folder()
        assert folder is not None
        argv = ["bash", str(folder / "run.sh"), str(self.settings.stack_dir), str(self.port)]
        return process.spawn(argv, log_path=self.log_path, pid_file=self.pid_file,
                             cwd=self.settings.stack_dir, env=self._env())

    def health(self) -> Health:
        """Register a schema through the Confluent API and read it back by id."""
        base = self.settings.registry_url
        subject = f"_sl-health-{uuid.uuid4().hex[:8]}-value"
        schema = json.dumps(_PROBE_SCHEMA)
        try:
            created = http_json(f"{base}/subjects/{subject}/versions", method="POST",
                                body={"schema": schema})
            fetched = http_json(f"{base}/schemas/ids/{created['id']}")
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            return Health(False, f"ccompat round trip failed: {exc}")
        finally:
            try:
                http_json(f"{base}/subjects/{subject}", method="DELETE")
            except (urllib.error.URLError, OSError, ValueError):
                pass
        if json.loads(fetched["schema"]) != _PROBE_SCHEMA:
            return Health(False, "schema read back differs from the one stored")
        return Health(True, f"stored and fetched schema id {created['id']} via /apis/ccompat/v7",
                      self.version())

    def version(self) -> str | None:
        root = self.settings.registry_url.split("/apis/")[0]
        try:
            info = http_json(f"{root}/apis/registry/v2/system/info")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return f"Apicurio {info.get('version')}"
