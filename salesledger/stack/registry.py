"""The Confluent-compatible schema registry slot of the stack.

Another track tries Apicurio Registry from Maven Central in ``deploy/local/registry/``. Until that
folder's README declares a working build script and run command, the registry is reported as
not available (with the reason) and is not required for the stack's health.
"""

from __future__ import annotations

from salesledger.config import Settings
from salesledger.resources import repo_root
from salesledger.stack.base import Health, Service, ServiceStatus

NAME = "registry"


def _readme_path():
    return repo_root() / "deploy" / "local" / "registry" / "README.md"


def service(settings: Settings) -> Service | None:
    """The registry as a stack service, or None while it is not available."""
    return None


def unavailable_reason(settings: Settings) -> str:
    """Why the registry is not part of the stack."""
    readme = _readme_path()
    if not readme.exists():
        return ("not available: no working registry build yet (deploy/local/registry/README.md "
                "missing); CDC topics use Connect's JSON converter")
    return "not available: deploy/local/registry/ declares no working build and run command"


def unavailable_status(settings: Settings) -> ServiceStatus:
    """A status row that explains the registry's absence (not required)."""
    return ServiceStatus(NAME, None, settings.registry_port,
                         Health(False, unavailable_reason(settings)),
                         settings.log_dir / f"{NAME}.log", None, required=False)
