"""``salesledger period lock --through DATE | unlock`` and ``salesledger held list | release DOC``.

Period actions are produced as ``salesledger.PeriodAction`` records onto the documents topic
(key ``period`` / the document key), so the posting stage applies them in one order with the
documents; each records who (``--by``, default the OS user) and when (UTC now). Once applied,
the posting stage writes the action to the control topic (the audit trail) and held-queue
changes to the held topic. ``held list`` reads the compacted held topic (latest record per
document wins) and prints the documents still held.
"""

from __future__ import annotations

import datetime as dt
import getpass
import uuid

import typer

app = typer.Typer(help="Period locks (ordered with the documents).", no_args_is_help=True)
held_app = typer.Typer(help="The held queue: documents waiting for a lock, a rate, stock.",
                       no_args_is_help=True)
_TIMEOUT_S = 30.0


def _send_action(action: str, *, through: dt.date | None = None, document_key: str | None = None,
                 by: str | None = None) -> dict:
    from confluent_kafka import Producer

    from salesledger.config import get_settings
    from salesledger.streams.documents import ACTION_SUBJECT, PeriodActionEvent
    from salesledger.streams.serde import AvroSerde

    settings = get_settings()
    event = PeriodActionEvent(action=action, through=through, document_key=document_key,
                              actor=by or getpass.getuser(), at=dt.datetime.now(dt.UTC),
                              action_id=str(uuid.uuid4()))
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                         "enable.idempotence": True})
    producer.produce(settings.topic("documents"), key=(document_key or "period").encode(),
                     value=AvroSerde.for_settings(settings).encode(ACTION_SUBJECT, event.datum()))
    if producer.flush(_TIMEOUT_S) != 0:
        raise typer.Exit(code=1)
    return event.datum()


@app.command("lock")
def lock(through: str = typer.Option(..., "--through", help="Last locked day, YYYY-MM-DD."),
         by: str = typer.Option(None, "--by", help="Who locks (default: the OS user).")) -> None:
    """Lock every day up to and including DATE (documents dated in it are held)."""
    datum = _send_action("lock", through=dt.date.fromisoformat(through), by=by)
    typer.echo(f"lock through {through} requested by {datum['actor']} at {datum['at']:%Y-%m-%dT%H:%M:%SZ}")


@app.command("unlock")
def unlock(by: str = typer.Option(None, "--by", help="Who unlocks (default: the OS user).")) -> None:
    """Lift the period lock."""
    datum = _send_action("unlock", by=by)
    typer.echo(f"unlock requested by {datum['actor']} at {datum['at']:%Y-%m-%dT%H:%M:%SZ}")


def read_held(settings) -> dict[str, dict]:  # noqa: ANN001
    """Latest record per document of the held topic (``salesledger.HeldDocument`` datums)."""
    from confluent_kafka import Consumer, TopicPartition

    from salesledger.streams.serde import AvroSerde

    serde = AvroSerde.for_settings(settings)
    topic = settings.topic("held")
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"held-list-{uuid.uuid4().hex}", "enable.auto.commit": False})
    latest: dict[str, dict] = {}
    try:
        meta = consumer.list_topics(topic, timeout=_TIMEOUT_S).topics[topic]
        ends = {}
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=_TIMEOUT_S)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        while ends:
            for message in consumer.consume(500, timeout=1.0):
                if message.error():
                    continue
                datum = serde.decode(message.value()) if message.value() else None
                key = message.key().decode()
                if datum is None:
                    latest.pop(key, None)
                else:
                    latest[key] = datum
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
    finally:
        consumer.close()
    return latest


@held_app.command("list")
def held_list() -> None:
    """Documents in the held queue (document, reason, since, detail)."""
    from salesledger.config import get_settings

    rows = [d for d in read_held(get_settings()).values() if d["status"] == "held"]
    for d in sorted(rows, key=lambda d: d["document_key"]):
        since = d["since"].isoformat() if d["since"] else "-"
        typer.echo(f"{d['document_key']}\t{d['reason']}\t{since}\t{d['detail']}")
    typer.echo(f"{len(rows)} held")


@held_app.command("release")
def held_release(document: str = typer.Argument(..., help="Document key '<type>:<number>'."),
                 by: str = typer.Option(None, "--by", help="Who releases (default: the OS user).")
                 ) -> None:
    """Release a held document into the first open day."""
    if ":" not in document:
        raise typer.BadParameter("expected '<type>:<number>', e.g. invoice:INV-10")
    datum = _send_action("release", document_key=document, by=by)
    typer.echo(f"release of {document} requested by {datum['actor']}")


def register(root: typer.Typer) -> None:
    """Mount ``period`` and ``held``."""
    root.add_typer(app, name="period")
    root.add_typer(held_app, name="held")
