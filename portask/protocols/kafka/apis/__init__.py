"""The index of the Kafka APIs this broker serves: key -> module -> handler, by key.

One module per API or per tight family, named after it; each opens with the versions
it serves and what each version added, and registers its handler with
``registry.api(key, versions)``, which refuses a key registered twice. Importing this
package imports them all, which is what registers the handlers: the composition root
(portask/app.py) does it before the Kafka listener starts. The table below is for
readers (a handler is named after its API); tests/unit/protocols/kafka/test_index.py
checks that it matches the registry
and what ApiVersions advertises.
"""

from __future__ import annotations

from types import ModuleType

from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.apis import (
    api_versions,
    classic_group,
    configs,
    consumer_group_describe,
    consumer_group_heartbeat,
    create_acls,
    delete_acls,
    describe_acls,
    describe_cluster,
    describe_topic_partitions,
    describe_transactions,
    elect_leaders,
    fetch,
    find_coordinator,
    group_admin,
    init_producer_id,
    list_offsets,
    log_dirs,
    metadata,
    offset_commit,
    offset_delete,
    offset_fetch,
    offset_for_leader_epoch,
    partition_reassignments,
    produce,
    sasl,
    scram_credentials,
    topic_admin,
    transactions,
)

# (key, module, handler name in that module), in key order.
INDEX: tuple[tuple[ApiKey, ModuleType, str], ...] = (
    (ApiKey.PRODUCE,                    produce,                  "produce"),
    (ApiKey.FETCH,                      fetch,                    "fetch"),
    (ApiKey.LIST_OFFSETS,               list_offsets,             "list_offsets"),
    (ApiKey.METADATA,                   metadata,                 "metadata"),
    (ApiKey.OFFSET_COMMIT,              offset_commit,            "offset_commit"),
    (ApiKey.OFFSET_FETCH,               offset_fetch,             "offset_fetch"),
    (ApiKey.FIND_COORDINATOR,           find_coordinator,         "find_coordinator"),
    (ApiKey.JOIN_GROUP,                 classic_group,            "join_group"),
    (ApiKey.HEARTBEAT,                  classic_group,            "heartbeat"),
    (ApiKey.LEAVE_GROUP,                classic_group,            "leave_group"),
    (ApiKey.SYNC_GROUP,                 classic_group,            "sync_group"),
    (ApiKey.DESCRIBE_GROUPS,            group_admin,              "describe_groups"),
    (ApiKey.LIST_GROUPS,                group_admin,              "list_groups"),
    (ApiKey.SASL_HANDSHAKE,             sasl,                     "sasl_handshake"),
    (ApiKey.API_VERSIONS,               api_versions,             "api_versions"),
    (ApiKey.CREATE_TOPICS,              topic_admin,              "create_topics"),
    (ApiKey.DELETE_TOPICS,              topic_admin,              "delete_topics"),
    (ApiKey.DELETE_RECORDS,             topic_admin,              "delete_records"),
    (ApiKey.INIT_PRODUCER_ID,           init_producer_id,         "init_producer_id"),
    (ApiKey.OFFSET_FOR_LEADER_EPOCH,    offset_for_leader_epoch,  "offset_for_leader_epoch"),
    (ApiKey.ADD_PARTITIONS_TO_TXN,      transactions,             "add_partitions_to_txn"),
    (ApiKey.ADD_OFFSETS_TO_TXN,         transactions,             "add_offsets_to_txn"),
    (ApiKey.END_TXN,                    transactions,             "end_txn"),
    (ApiKey.TXN_OFFSET_COMMIT,          transactions,             "txn_offset_commit"),
    (ApiKey.DESCRIBE_ACLS,              describe_acls,            "describe_acls"),
    (ApiKey.CREATE_ACLS,                create_acls,              "create_acls"),
    (ApiKey.DELETE_ACLS,                delete_acls,              "delete_acls"),
    (ApiKey.DESCRIBE_CONFIGS,           configs,                  "describe_configs"),
    (ApiKey.ALTER_CONFIGS,              configs,                  "alter_configs"),
    (ApiKey.ALTER_REPLICA_LOG_DIRS,     log_dirs,                 "alter_replica_log_dirs"),
    (ApiKey.DESCRIBE_LOG_DIRS,          log_dirs,                 "describe_log_dirs"),
    (ApiKey.SASL_AUTHENTICATE,          sasl,                     "sasl_authenticate"),
    (ApiKey.CREATE_PARTITIONS,          topic_admin,              "create_partitions"),
    (ApiKey.DELETE_GROUPS,              group_admin,              "delete_groups"),
    (ApiKey.ELECT_LEADERS,              elect_leaders,            "elect_leaders"),
    (ApiKey.INCREMENTAL_ALTER_CONFIGS,  configs,                  "incremental_alter_configs"),
    (ApiKey.ALTER_PARTITION_REASSIGNMENTS, partition_reassignments,
     "alter_partition_reassignments"),
    (ApiKey.LIST_PARTITION_REASSIGNMENTS, partition_reassignments,
     "list_partition_reassignments"),
    (ApiKey.OFFSET_DELETE,              offset_delete,            "offset_delete"),
    (ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, scram_credentials,
     "describe_user_scram_credentials"),
    (ApiKey.ALTER_USER_SCRAM_CREDENTIALS, scram_credentials, "alter_user_scram_credentials"),
    (ApiKey.DESCRIBE_CLUSTER,           describe_cluster,         "describe_cluster"),
    (ApiKey.DESCRIBE_TRANSACTIONS,      describe_transactions,    "describe_transactions"),
    (ApiKey.LIST_TRANSACTIONS,          describe_transactions,    "list_transactions"),
    (ApiKey.CONSUMER_GROUP_HEARTBEAT,   consumer_group_heartbeat, "consumer_group_heartbeat"),
    (ApiKey.CONSUMER_GROUP_DESCRIBE,    consumer_group_describe,  "consumer_group_describe"),
    (ApiKey.DESCRIBE_TOPIC_PARTITIONS,  describe_topic_partitions, "describe_topic_partitions"),
)
