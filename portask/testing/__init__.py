"""Portask for tests: ``Broker`` starts ``portask serve`` on free ports; the pytest
plugin (``portask.testing.pytest_plugin``) gives it to tests as fixtures."""

from portask.testing.broker import Broker, BrokerError

__all__ = ["Broker", "BrokerError"]
