"""Where the shipped contracts are: Avro schemas, connector configs, topic and stack files.

In a source checkout (editable install) they are the repository's top-level folders; in an
installed wheel they are ``salesledger/_data/`` (copied there by ``setup.py``).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent


def resource_path(relative: str) -> Path:
    """Return the absolute path of a shipped resource such as ``"schemas"`` or
    ``"deploy/topics.yaml"``.

    Raises:
        FileNotFoundError: the resource is neither in the package nor in the checkout.
    """
    for base in (_PACKAGE_DIR / "_data", _REPO_ROOT):
        candidate = base / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"shipped resource {relative!r} not found under {_PACKAGE_DIR}")


def repo_root() -> Path:
    """The source checkout's root (where ``.stack/`` lives when run from a checkout)."""
    return _REPO_ROOT
