"""The topic names Kafka reserves for its own coordinators (Kafka's ``Topic.INTERNAL_TOPICS``).

Kafka keeps committed offsets and group metadata in ``__consumer_offsets`` and the
transaction log in ``__transaction_state``, in its own key/value schemas. Portask keeps
that state in its definitions store instead, so these names are never topics here: a
Metadata request does not auto-create them (it answers UNKNOWN_TOPIC_OR_PARTITION with
``is_internal`` set, as Kafka does for an internal topic not yet created), and
CreateTopics refuses them, so a client can never mistake a user topic for the real one.
"""

from __future__ import annotations

GROUP_METADATA_TOPIC = "__consumer_offsets"
TRANSACTION_STATE_TOPIC = "__transaction_state"
INTERNAL_TOPICS = frozenset((GROUP_METADATA_TOPIC, TRANSACTION_STATE_TOPIC))
