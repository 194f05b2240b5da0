"""A minimal Faust app for CDC-17, run as a real `faust worker` process by the test.

It forwards every record of ``CDC17_SOURCE`` to ``CDC17_SINK`` with ``|faust`` appended. The
consumer group is the app id ``CDC17_APP_ID``; the broker is ``CDC17_BOOTSTRAP``.
"""

import os

import faust

app = faust.App(
    os.environ["CDC17_APP_ID"],
    broker=f"kafka://{os.environ['CDC17_BOOTSTRAP']}",
    store="memory://",
    topic_replication_factor=1,
    topic_partitions=1,
    web_enabled=False,
    broker_commit_every=1,
    broker_commit_interval=1.0,
)
source = app.topic(os.environ["CDC17_SOURCE"], value_type=bytes, value_serializer="raw",
                   key_type=bytes, key_serializer="raw")
sink = app.topic(os.environ["CDC17_SINK"], value_type=bytes, value_serializer="raw",
                 key_type=bytes, key_serializer="raw")


@app.agent(source)
async def forward(stream):
    """Forward each value to the sink topic with the same key."""
    async for key, value in stream.items():
        await sink.send(key=key, value=value + b"|faust")
