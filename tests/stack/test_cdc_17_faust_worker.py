"""CDC-17: a real `faust worker` process (pinned faust-streaming / mode-streaming / aiokafka)
against the stack's Kafka 4.x broker consumes and produces; its consumer group's committed
offset is read from the broker (admin API), not from Faust's in-memory test context."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition

DEADLINE_S = 240.0
RECORDS = 5
FORBIDDEN_IN_LOG = ("UnsupportedVersion", "UnsupportedVersionError", "closed connection",
                    "Connection closed", "KafkaConnectionError")


def committed_offset(kafka_admin, group: str, topic: str) -> int | None:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    result = kafka_admin.list_consumer_group_offsets([request])[group].result(timeout=30)
    offsets = [tp.offset for tp in result.topic_partitions if tp.topic == topic]
    return offsets[0] if offsets and offsets[0] >= 0 else None


@pytest.mark.stack
def test_CDC_17_faust_worker_process_round_trip(settings, fresh_topic, kafka_admin, tmp_path):
    source, sink = fresh_topic("cdc17-in"), fresh_topic("cdc17-out")
    app_id = f"{settings.topic_prefix}-cdc17-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for i in range(RECORDS):
        producer.produce(source, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    log_path = tmp_path / "faust-worker.log"
    env = {**os.environ, "CDC17_APP_ID": app_id, "CDC17_BOOTSTRAP": settings.kafka_bootstrap,
           "CDC17_SOURCE": source, "CDC17_SINK": sink,
           "PYTHONPATH": str(Path(__file__).parent)}
    faust_bin = Path(sys.executable).parent / "faust"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([str(faust_bin), "-A", "faust_cdc17_app", "worker", "-l", "info"],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                  start_new_session=True)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"{app_id}-reader", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(sink, 0, 0)])
        received = []
        deadline = time.monotonic() + DEADLINE_S
        while len(received) < RECORDS and time.monotonic() < deadline:
            assert worker.poll() is None, "faust worker exited:\n" + log_path.read_text()[-4000:]
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                received.append((msg.key(), msg.value()))
        assert received == [(f"k{i}".encode(), f"v{i}|faust".encode()) for i in range(RECORDS)], \
            log_path.read_text()[-4000:]

        offset = None
        while time.monotonic() < deadline:
            offset = committed_offset(kafka_admin, app_id, source)
            if offset == RECORDS:
                break
            time.sleep(1)
        assert offset == RECORDS, f"committed offset {offset} on the broker, expected {RECORDS}"
    finally:
        consumer.close()
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=30)
        leftovers = [t for t in kafka_admin.list_topics(timeout=30).topics if t.startswith(app_id)]
        if leftovers:
            kafka_admin.delete_topics(leftovers, operation_timeout=30)
        try:
            kafka_admin.delete_consumer_groups([app_id], request_timeout=30)[app_id].result(timeout=30)
        except Exception:
            pass
    log_text = log_path.read_text()
    for word in FORBIDDEN_IN_LOG:
        assert word not in log_text, f"{word!r} in the faust worker log:\n{log_text[-4000:]}"
