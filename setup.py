"""Build hook: ship the top-level contracts inside the wheel.

``schemas/`` (Avro), ``connect-configs/`` and ``deploy/topics.yaml`` are the project's contracts;
they live at the top level for readers and are copied into ``salesledger/_data/`` of the built
package, where :mod:`salesledger.resources` finds them at run time.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

_TOP = Path(__file__).parent
_SHIPPED = ["schemas", "connect-configs", "deploy/topics.yaml", "deploy/local", "deploy/sql",
            "deploy/prometheus", "deploy/demo.yaml"]


class BuildWithData(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "salesledger" / "_data"
        for rel in _SHIPPED:
            src = _TOP / rel
            if src.is_dir():
                shutil.copytree(src, target / rel, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.is_file():
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / rel)


setup(cmdclass={"build_py": BuildWithData})
