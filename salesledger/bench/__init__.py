"""``salesledger bench``: throughput, freshness and the capture limit, side by side in one run.

Layer map (what each module holds and may import):

- :mod:`salesledger.bench.figures` — pure: percentiles, slopes, medians of repeats with
  ``…_min`` / ``…_max`` siblings, the shape of ``.bench/latest.json``. Imports nothing of the
  stack.
- :mod:`salesledger.bench.procs` — CPU seconds and resident memory of processes from
  ``/proc`` (Linux only).
- :mod:`salesledger.bench.workload` — the seeded synthetic sales traffic written with SQL into
  the bench's sales database (master data, the opening goods receipt, a backlog of N invoice
  lines, paced invoices at an offered rate). Imports psycopg.
- :mod:`salesledger.bench.dataset` — ``--dataset online-retail-full``: the complete Online
  Retail R data read with pyreadr (the bench's optional dependency) into the loader's rows, and
  its sales invoices as a backlog. Imports psycopg and :mod:`salesledger.datasets`.
- :mod:`salesledger.bench.runner` — the measured run on the real stack (connector, workers,
  broker, replay). Imports everything above and the pipeline's own modules.
"""
