"""Portask for tests: ``Broker`` starts ``portask serve`` on free ports; the pytest
plugin (``portask.testing.pytest_plugin``) gives it to tests as fixtures."""

from portask.testing.broker import Broker, BrokerError
from portask.testing.control import ControlClient, ControlError, WaitTimeout

__all__ = ["Broker", "BrokerError", "ControlClient", "ControlError", "WaitTimeout"]
