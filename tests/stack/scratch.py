"""A second, throw-away stack for tests that stop, restart, reset or break a stack, so the
shared stack that the rest of the suite uses is never disturbed.

It has its own stack dir (a temp folder), its own ports (the defaults shifted by ``offset``) and
shares the resolved jars of the main stack (``SALESLEDGER_JARS_DIR``), so no Maven run is
needed. Commands run the real CLI as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from salesledger.config import Settings
from salesledger.stack.process import port_in_use

PORT_FIELDS = ("pg_port", "kafka_port", "kafka_controller_port", "connect_port",
               "prometheus_port", "jmx_broker_port", "jmx_connect_port", "registry_port")
CLI_TIMEOUT_S = 600


@dataclass
class ScratchStack:
    """A stack dir + env overrides; :meth:`cli` runs `python -m salesledger ...` against it."""

    stack_dir: Path
    env: dict[str, str]

    @classmethod
    def create(cls, main: Settings, stack_dir: Path, offset: int,
               **extra_env: str) -> "ScratchStack":
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("SALESLEDGER_")}
        env.update({"SALESLEDGER_PROFILE": "test", "SALESLEDGER_STACK_DIR": str(stack_dir),
                    "SALESLEDGER_JARS_DIR": str(main.lib_dir),
                    "SALESLEDGER_START_TIMEOUT_S": "300", "COLUMNS": "200"})
        busy = []
        for field in PORT_FIELDS:
            port = getattr(main, field) + offset
            env[f"SALESLEDGER_{field.upper()}"] = str(port)
            if port_in_use(main.host, port):
                busy.append(f"{field}={port}")
        assert not busy, f"scratch stack ports already in use: {busy}"
        env.update(extra_env)
        return cls(stack_dir, env)

    def port(self, field: str) -> int:
        return int(self.env[f"SALESLEDGER_{field.upper()}"])

    def settings(self) -> Settings:
        overrides = {field: self.port(field) for field in PORT_FIELDS}
        return Settings(profile="test", stack_dir=self.stack_dir,
                        jars_dir=Path(self.env["SALESLEDGER_JARS_DIR"]), **overrides)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "salesledger", *args], capture_output=True,
                              text=True, timeout=CLI_TIMEOUT_S, env=env or self.env,
                              stdin=subprocess.DEVNULL)
