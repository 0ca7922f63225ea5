"""AMQP virtual hosts.

    registry.py     VirtualHosts: the vhosts that exist, restored from definitions at start-up
    vhost.py        VirtualHost: one namespace of exchanges, queues and bindings; routing
    persistence.py  VhostDefinitions: what a vhost writes to the durable definitions store
    metrics.py      lifetime totals and the Prometheus series of exchanges and queues
"""

from portask.broker.amqp.vhosts.metrics import QueueTotals, queue_totals
from portask.broker.amqp.vhosts.registry import VirtualHosts
from portask.broker.amqp.vhosts.vhost import AnyQueue, VirtualHost

__all__ = ["AnyQueue", "QueueTotals", "VirtualHost", "VirtualHosts", "queue_totals"]
