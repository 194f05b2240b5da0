"""Apache Kafka in KRaft mode: one combined broker + controller on loopback, as a plain JVM.

The version is the one Debezium 3.6.1.Final is built against (``version.kafka`` of
``io.debezium:debezium-build-parent:3.6.1.Final`` = 4.3.0; see ``deploy/local/pom.xml``).
Storage is formatted on the first start (cluster id kept in ``<stack_dir>/kafka/cluster.id``).
Both JVMs carry the Prometheus JMX exporter as ``-javaagent``.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from salesledger.stack import jars, process
from salesledger.stack.base import Health, Service, deploy_file, find_java

_ADMIN_TIMEOUT_S = 15.0
HEALTH_TOPIC_PREFIX = "_sl-health-"

# librdkafka logs every refused connection to stderr; a probe reports failures itself.
_PROBE_LOGGER = logging.getLogger("salesledger.stack.kafka.probe")
_PROBE_LOGGER.addHandler(logging.NullHandler())
_PROBE_LOGGER.propagate = False


class JvmService(Service):
    """A JVM service: classpath from ``<stack_dir>/lib/<lib_name>``, our Log4j2 config, the JMX
    exporter agent on ``jmx_port``."""

    lib_name = "?"
    main_class = "?"
    heap = "512m"
    jmx_port = 0
    jmx_config = "?"

    def binaries(self) -> dict[str, Path | None]:
        return {"java": find_java(self.settings)}

    @property
    def ports(self) -> list[int]:
        return [self.port, self.jmx_port]

    def config_path(self) -> Path:
        raise NotImplementedError

    def marker(self) -> str:
        return str(self.config_path())

    def java_argv(self, main_class: str, *args: str, agent: bool = True) -> list[str]:
        java = find_java(self.settings)
        if java is None:
            raise self.fail("required binary `java` not found; run `make setup`")
        lib = self.settings.lib_dir
        argv = [str(java), "-Xms128m", f"-Xmx{self.heap}", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
                f"-Dlog4j2.configurationFile={deploy_file('log4j2/log4j2.properties')}",
                f"-Dkafka.logs.dir={self.settings.log_dir}"]
        if agent:
            agent_jar = jars.key_jars(self.settings)["jmx"]
            argv.append(f"-javaagent:{agent_jar}={self.settings.host}:{self.jmx_port}:"
                        f"{deploy_file(self.jmx_config)}")
        argv += ["-cp", f"{lib / self.lib_name}/*", main_class, *args]
        return argv

    def start(self) -> subprocess.Popen:
        argv = self.java_argv(self.main_class, str(self.config_path()))
        return process.spawn(argv, log_path=self.log_path, pid_file=self.pid_file, cwd=self.home)

    def version(self) -> str | None:
        return jars.pom_property("version.kafka")


class KafkaService(JvmService):
    """The broker on ``kafka_port`` (controller on ``kafka_controller_port``)."""

    name = "kafka"
    lib_name = "broker"
    main_class = "kafka.Kafka"
    jmx_config = "jmx/kafka-broker.yml"

    @property
    def heap(self) -> str:  # type: ignore[override]
        return self.settings.kafka_heap

    @property
    def jmx_port(self) -> int:  # type: ignore[override]
        return self.settings.jmx_broker_port

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def ports(self) -> list[int]:
        return [self.port, self.settings.kafka_controller_port, self.jmx_port]

    def config_path(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        values = {"host": self.settings.host, "port": self.port,
                  "controller_port": self.settings.kafka_controller_port,
                  "data_dir": self.data_dir}
        process.render_file(deploy_file("kafka/server.properties"), self.config_path(), values)
        if not (self.data_dir / "meta.properties").exists():
            id_file = self.home / "cluster.id"
            if not id_file.exists():
                id_file.write_text(_new_cluster_id() + "\n")
            cluster_id = id_file.read_text().strip()
            # ``--cluster-id=ID``: an id starting with "-" (as stack dirs made before
            # _new_cluster_id avoided it may hold) would be read as an option otherwise
            argv = self.java_argv("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                                  "--config", str(self.config_path()), "--ignore-formatted",
                                  agent=False)
            self.run_tool(argv, "format KRaft storage (first start)", cwd=self.home)

    def converge(self) -> None:
        from salesledger.stack.topics import apply_topics, topics_file

        if topics_file() is not None:
            for profile in ("run", "test"):
                apply_topics(self.settings, profile=profile)

    def ready(self) -> Health:
        """The broker's port accepts connections, then the full round trip."""
        if not process.wait_port_open(self.settings.host, self.port):
            return Health(False, f"port {self.port} not accepting connections yet")
        return self.health()

    def health(self) -> Health:
        """Create a fresh topic, produce one record, consume it back, delete the topic."""
        return kafka_round_trip(self.settings.kafka_bootstrap, self.version())


def _new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars), never
    starting with "-" (one in 64 did; Kafka's own ``Uuid.randomUuid`` draws again then too)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def kafka_round_trip(bootstrap: str, version: str | None) -> Health:
    """Produce/consume one record on a fresh topic ``_sl-health-<uuid>`` (deleted afterwards)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000,
                         "logger": _PROBE_LOGGER})
    metadata = admin.list_topics(timeout=_ADMIN_TIMEOUT_S)
    if not metadata.brokers:
        return Health(False, "no broker in metadata", version)
    topic = f"{HEALTH_TOPIC_PREFIX}{uuid.uuid4().hex[:12]}"
    future = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                 operation_timeout=_ADMIN_TIMEOUT_S)[topic]
    future.result(timeout=_ADMIN_TIMEOUT_S)
    try:
        payload = uuid.uuid4().hex.encode()
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                             "enable.idempotence": True, "message.timeout.ms": 15000,
                             "logger": _PROBE_LOGGER})
        producer.produce(topic, value=payload, key=b"health")
        if producer.flush(20.0) != 0:
            return Health(False, "produce did not complete", version)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "logger": _PROBE_LOGGER})
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            for _ in range(30):
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    return Health(False, f"consume error: {msg.error()}", version)
                if msg.value() == payload:
                    return Health(True, f"produce/consume round trip on {topic}; "
                                        f"{len(metadata.topics)} topics", version)
            return Health(False, "produced record not read back within 30 s", version)
        finally:
            consumer.close()
    except KafkaException as exc:
        return Health(False, f"kafka error: {exc}", version)
    finally:
        admin.delete_topics([topic], operation_timeout=_ADMIN_TIMEOUT_S)
