"""Live replay of a dataset slice into the sales database (``salesledger simulate``).

:mod:`salesledger.simulation.runner` executes a :class:`~salesledger.datasets.plan.Plan`'s steps
against the sales database in time order at a chosen speed, one transaction per step, as a sales
program would, and summarises what it did. Plumbing: imports psycopg and the pure
:mod:`salesledger.datasets` modules; nothing imports it except the CLI and the demo.
"""

from salesledger.simulation.runner import RunResult, run_plan

__all__ = ["RunResult", "run_plan"]
