"""portask.testing and its pytest plugin, as a user's test suite uses them: a pytest run
(pytester, in a subprocess) whose tests talk to the broker with real clients."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest
from confluent_kafka import Consumer, Producer

from portask.testing import Broker, BrokerError

pytest_plugins = ["pytester"]

USER_TESTS = '''
import pika
from confluent_kafka import Consumer, Producer


def test_kafka_round_trip(portask, portask_topic_prefix):
    topic = portask_topic_prefix + "orders"
    producer = Producer({"bootstrap.servers": portask.kafka_bootstrap})
    producer.produce(topic, b"order-1")
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": portask.kafka_bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    message = None
    for _ in range(100):
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            break
    consumer.close()
    assert message.value() == b"order-1"


def test_amqp_round_trip(portask, portask_topic_prefix):
    connection = pika.BlockingConnection(pika.URLParameters(portask.amqp_url))
    channel = connection.channel()
    queue = portask_topic_prefix + "jobs"
    channel.queue_declare(queue)
    channel.basic_publish("", queue, b"job-1")
    assert channel.basic_get(queue, auto_ack=True)[2] == b"job-1"
    connection.close()


SEEN = []


def test_prefix_is_new(portask_topic_prefix):
    assert portask_topic_prefix not in SEEN
    SEEN.append(portask_topic_prefix)
'''


CONTROL_TESTS = '''
import pika
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient


def test_a_leaves_a_queue_behind(portask):
    connection = pika.BlockingConnection(pika.URLParameters(portask.amqp_url))
    connection.channel().queue_declare("left-behind")
    connection.close()
    portask.wait_queue("left-behind", messages=0)


def test_b_starts_clean(portask_reset):
    connection = pika.BlockingConnection(pika.URLParameters(portask_reset.amqp_url))
    channel = connection.channel()
    try:
        channel.queue_declare("left-behind", passive=True)
        raise AssertionError("the queue of the earlier test is still there")
    except pika.exceptions.ChannelClosedByBroker as closed:
        assert closed.reply_code == 404


def test_c_injects_a_retriable_error(portask_faults):
    portask_faults.add_fault(action="error", api="Produce", error="NOT_LEADER_OR_FOLLOWER",
                             times=1)
    portask_faults.add_fault(action="delay", api="Metadata", delay_ms=1)  # left for cleanup
    producer = Producer({"bootstrap.servers": portask_faults.kafka_bootstrap})
    producer.produce("orders", b"o1")
    assert producer.flush(15) == 0
    portask_faults.refuse_connections("amqp", 60000)  # left for cleanup too


def test_d_faults_were_cleared(portask):
    assert portask.faults() == []
    pika.BlockingConnection(pika.URLParameters(portask.amqp_url)).close()
'''


def test_reset_and_fault_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=CONTROL_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_fixtures_serve_real_clients(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_one_broker_per_xdist_worker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS + '''

def test_worker_has_its_own_broker(portask, worker_id):
    import pathlib
    marker = pathlib.Path(__file__).parent / f"port-{portask.ports['kafka']}"
    assert not marker.exists() or marker.read_text() == worker_id
    marker.write_text(worker_id)
''')
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    markers = list(pytester.path.glob("port-*"))
    assert {m.read_text() for m in markers} <= {"gw0", "gw1"} and len(markers) >= 1


def test_portask_url_points_at_a_running_broker(pytester: pytest.Pytester) -> None:
    with Broker() as running:
        kafka, amqp = running.ports["kafka"], running.ports["amqp"]
        pytester.makepyfile(test_user=f'''
def test_same_broker(portask):
    assert portask.kafka_bootstrap.endswith(":{kafka}")
    assert portask.amqp_url.endswith(":{amqp}/")
''')
        result = pytester.runpytest_subprocess("--portask-url", running.http_url,
                                               "-p", "no:randomly")
        result.assert_outcomes(passed=1)


VHOST_TESTS = '''
import pathlib
import time

import pika
import pytest


@pytest.mark.parametrize("n", range(6))
def test_same_queue_name_in_each_vhost(portask_vhost, n):
    connection = pika.BlockingConnection(pika.URLParameters(portask_vhost.amqp_url))
    channel = connection.channel()
    channel.queue_declare("jobs", durable=True)  # the same name in every test
    channel.basic_publish("", "jobs", f"job-{n}".encode())
    time.sleep(0.1)  # overlap with the tests of the other worker
    portask_vhost_queue = channel.queue_declare("jobs", passive=True)
    assert portask_vhost_queue.method.message_count == 1
    assert channel.basic_get("jobs", auto_ack=True)[2] == f"job-{n}".encode()
    connection.close()
    (pathlib.Path(__file__).parent / f"vhost-{n}").write_text(portask_vhost.amqp_url)
'''


def test_portask_vhost_isolates_parallel_xdist_tests(pytester: pytest.Pytester) -> None:
    with Broker() as running:
        pytester.makepyfile(test_user=VHOST_TESTS)
        result = pytester.runpytest_subprocess("-n", "2", "--portask-url", running.http_url,
                                               "-p", "no:randomly", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=6)
        urls = {p.read_text() for p in pytester.path.glob("vhost-*")}
        assert len(urls) == 6  # one vhost per test
        # Every test's vhost went with its test: connecting to one is refused now.
        for url in urls:
            with pytest.raises(pika.exceptions.AMQPConnectionError):
                pika.BlockingConnection(pika.URLParameters(url))


def test_broker_context_manager_with_settings() -> None:
    with Broker(settings={"kafka.num_partitions": 3, "amqp.enabled": False}) as broker:
        assert "amqp" not in broker.ports
        producer = Producer({"bootstrap.servers": broker.kafka_bootstrap})
        producer.produce("three", b"x")
        assert producer.flush(10) == 0
        metadata = Consumer({"bootstrap.servers": broker.kafka_bootstrap,
                             "group.id": "g"}).list_topics("three", timeout=10)
        assert len(metadata.topics["three"].partitions) == 3
        with pytest.raises(BrokerError, match="no amqp listener"):
            pika.URLParameters(broker.amqp_url)
        data_dir = broker.data_dir
        assert data_dir is not None and data_dir.exists()
    assert not data_dir.exists()


def test_a_bad_setting_is_reported_with_the_brokers_words() -> None:
    with pytest.raises(BrokerError, match=r"kafka\.port"):
        Broker(settings={"kafka.port": "many"}).start()
