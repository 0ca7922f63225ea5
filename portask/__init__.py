"""Portask: one broker process for Kafka and AMQP 0-9-1 clients."""

__version__ = "0.1.0"
