"""AMQP queue kinds: one interface (``base.AmqpQueue``), one module per kind.

    base.py      AmqpQueue (what every kind answers) and Consumer
    classic.py   Queue: classic and quorum queues, in memory or on disk
    priority.py  PriorityStore: x-max-priority, one store lane per level
    stream.py    StreamQueue: a record log read from an offset per consumer
    topic_stream.py TopicStreamQueue: a Kafka topic partition read and written as a stream
"""

from portask.broker.amqp.message_store import Message
from portask.broker.amqp.queues.base import AmqpQueue, Consumer
from portask.broker.amqp.queues.classic import Queue
from portask.broker.amqp.queues.priority import PriorityStore
from portask.broker.amqp.queues.stream import StreamQueue
from portask.broker.amqp.queues.topic_stream import RecordMessages, TopicPartition, TopicStreamQueue

__all__ = ["AmqpQueue", "Consumer", "Message", "PriorityStore", "Queue", "RecordMessages",
           "StreamQueue", "TopicPartition", "TopicStreamQueue"]
