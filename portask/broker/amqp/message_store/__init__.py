"""Where a queue's ready messages wait: in memory, or in the queue's own segment log.

Both stores answer the same questions (push, pop, requeue, ack, fetch, purge) and hand
out an opaque *ref* per message that the channel keeps while the message is unacked.

``MemoryStore`` (``memory.py``) is a deque of small entries; non-durable queues use it.

``LogStore`` (``log_store.py``: the commit point and write failures are described
there) is one FIFO lane of a durable queue; ``QueueStorage``
(``queue_storage.py``) opens the lanes and stream logs and runs the commit point; the
message and the record codec are ``message.py``.
"""

from portask.broker.amqp.message_store.log_store import READ_AHEAD_BYTES, LogStore
from portask.broker.amqp.message_store.memory import MemoryStore
from portask.broker.amqp.message_store.message import (
    FLAG_PERSISTENT,
    RECORD_HEADER,
    Message,
    MessageStore,
    Publisher,
    StoreFailed,
    decode_deadline,
    decode_record,
    encode_record,
    record_body_size,
)
from portask.broker.amqp.message_store.queue_storage import QueueStorage

__all__ = [
    "FLAG_PERSISTENT", "READ_AHEAD_BYTES", "RECORD_HEADER", "LogStore", "MemoryStore",
    "Message", "MessageStore", "Publisher", "QueueStorage", "StoreFailed", "decode_deadline",
    "decode_record", "encode_record", "record_body_size",
]
