"""The local stack as plain processes (no Docker), backed by the files in ``deploy/local/``.

Modules (each imports only :mod:`salesledger.config`, the ones above it, and the clients):

- ``errors``     — :class:`StackError` (service, cause, log file), the one error raised.
- ``process``    — pid files, detached spawning, ports, stopping, ``{{placeholder}}`` templates.
- ``base``       — :class:`Service`: preflight -> prepare -> start -> converge -> health.
- ``jars``       — Maven resolution of the JVM services' jars into ``<stack_dir>/lib``.
- ``postgres``   — the private PostgreSQL cluster, its roles and databases (both profiles).
- ``kafka``      — Kafka in KRaft mode (and the shared JVM launcher for Connect).
- ``connect``    — Kafka Connect with Debezium; ``http_json`` for its REST API.
- ``prometheus`` — Prometheus; :func:`prometheus.register_worker_target` for workers.
- ``registry``   — the Apicurio schema registry when ``deploy/local/registry`` declares it works.
- ``topics``     — ``deploy/topics.yaml`` applied to the broker (:func:`topics.apply_topics`).
- ``manager``    — ``up`` / ``down`` / ``status`` / ``reset_profile`` / ``reset_all``.

The command line is ``salesledger stack ...`` (:mod:`salesledger.cli.stack`).
"""
