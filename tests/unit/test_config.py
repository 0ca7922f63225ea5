from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from portask.config import (
    ConfigError,
    Settings,
    describe_keys,
    environment_warnings,
    load_settings,
    to_yaml,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_without_any_layer() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert (s.kafka.port, s.amqp.port, s.http.port) == (9092, 5672, 8080)
    assert s.server.host == "127.0.0.1"
    assert s.server.data_dir == Path("data")


def test_layers_apply_in_order_file_env_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  port: 1000\n  num_partitions: 3\nhttp:\n  port: 1001\n")
    s = load_settings(
        cfg,
        environ={"PORTASK_KAFKA_PORT": "2000", "PORTASK_AMQP_PORT": "2001"},
        overrides=[("kafka.port", "3000")],
    )
    assert s.kafka.port == 3000  # flag beats env beats file
    assert s.amqp.port == 2001  # env beats default
    assert s.http.port == 1001  # file beats default
    assert s.kafka.num_partitions == 3


def test_units_for_sizes_and_durations() -> None:
    s = load_settings(
        environ={
            "PORTASK_STORAGE_SEGMENT_BYTES": "64MiB",
            "PORTASK_STORAGE_RETENTION_MS": "7d",
            "PORTASK_STORAGE_FLUSH_MS": "250ms",
            "PORTASK_STORAGE_RETENTION_BYTES": "1GB",
        }
    )
    assert s.storage.segment_bytes == 64 * 1024 * 1024
    assert s.storage.retention_ms == 7 * 86_400_000
    assert s.storage.flush_ms == 250
    assert s.storage.retention_bytes == 10**9


def test_null_turns_optional_settings_off() -> None:
    s = load_settings(environ={"PORTASK_STORAGE_FLUSH_MS": "null"})
    assert s.storage.flush_ms is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PORTASK_KAFKA_PORT": "70000"}, "kafka.port: '70000' is not valid"),
        ({"PORTASK_KAFKA_PORT": "abc"}, "between 0 and 65535"),
        ({"PORTASK_SERVER_LOG_LEVEL": "loud"}, "one of 'debug', 'info'"),
        ({"PORTASK_STORAGE_SEGMENT_BYTES": "12parsecs"}, "storage.segment_bytes"),
        ({"PORTASK_STORAGE_FSYNC": "sometimes"}, "one of 'always', 'policy'"),
        ({"PORTASK_KAFKA_AUTO_CREATE_TOPICS": "maybe"}, "true or false"),
        ({"PORTASK_KAFKA_NUM_PARTITIONS": "null"}, "kafka.num_partitions"),
    ],
)
def test_bad_environment_values_name_key_value_and_source(
    env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert expected in str(err.value)
    assert "environment PORTASK_" in str(err.value)


def test_bad_file_values_name_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("storage:\n  segment_bytes: -5\n")
    with pytest.raises(
        ConfigError, match=r"storage\.segment_bytes: -5 is not valid \(from .*bad\.yaml\)"
    ):
        load_settings(cfg, environ={})


def test_unknown_section_and_key_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafak:\n  port: 1\n")
    with pytest.raises(ConfigError, match="kafak: unknown section"):
        load_settings(cfg, environ={})
    cfg.write_text("kafka:\n  prot: 1\n")
    with pytest.raises(
        ConfigError, match=r"kafka\.prot: unknown key.*keys of kafka: enabled, port"
    ):
        load_settings(cfg, environ={})


def test_yaml_syntax_error_says_where(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  port: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_settings(cfg, environ={})


def test_booleans_are_not_numbers(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  port: true\n")
    with pytest.raises(ConfigError, match=r"kafka\.port: True is not valid"):
        load_settings(cfg, environ={})


def test_effective_yaml_round_trips(tmp_path: Path) -> None:
    s = load_settings(environ={"PORTASK_KAFKA_PORT": "1234"})
    cfg = tmp_path / "out.yaml"
    cfg.write_text(to_yaml(s))
    assert load_settings(cfg, environ={}) == s


def test_documented_yaml_lists_every_key_with_its_default() -> None:
    doc = yaml.safe_load((ROOT / "configs" / "portask.yaml").read_text())
    documented = {f"{sec}.{key}": value for sec, body in doc.items() for key, value in body.items()}
    expected = {dotted: default for dotted, default, _ in describe_keys()}
    assert documented == expected


@pytest.mark.parametrize("profile", ["portask", "high_throughput", "low_latency", "dev"])
def test_shipped_profiles_are_valid(profile: str) -> None:
    load_settings(ROOT / "configs" / f"{profile}.yaml", environ={})


def test_variables_that_name_no_setting_are_ignored_with_one_warning_line() -> None:
    # What Kubernetes injects for a Service named "portask", a wrapper's own variable,
    # and near misses of real keys.
    env = {
        "PORTASK_PORT": "tcp://10.0.0.5:9092",
        "PORTASK_SERVICE_HOST": "10.0.0.5",
        "PORTASK_PORT_9092_TCP_ADDR": "10.0.0.5",
        "PORTASK_HOME": "/opt/portask",
        "PORTASK_KAFKA_PROT": "1234",
        "PORTASK_KAFKA_NOPE": "1",
        "PORTASK_AMQP_PORT": "2001",
    }
    settings = load_settings(environ=env)
    assert settings.amqp.port == 2001
    assert settings.kafka.port == Settings().kafka.port
    [line] = environment_warnings(env)
    for name in env.keys() - {"PORTASK_AMQP_PORT"}:
        assert name in line
    assert "PORTASK_AMQP_PORT" not in line.split(";")[0]
    assert "PORTASK_KAFKA_PROT -> PORTASK_KAFKA_PORT?" in line
    assert "PORTASK_HOME ->" not in line
    assert environment_warnings({"PORTASK_KAFKA_PORT": "1", "HOME": "/root"}) == []


def test_tls_is_off_by_default_and_no_tls_listener_is_bound() -> None:
    from portask.listeners import bind_all

    settings = load_settings(environ={}, overrides=[
        ("kafka.port", 0), ("amqp.port", 0), ("http.port", 0), ("http.management_port", 0)])
    assert not settings.tls.enabled
    listeners = bind_all(settings)
    try:
        assert [lst.name for lst in listeners] == ["kafka", "amqp", "http"]
        assert all(lst.tls is None for lst in listeners)
    finally:
        for lst in listeners:
            lst.sock.close()


@pytest.mark.parametrize(("overrides", "message"), [
    ([("tls.cert_file", "server.pem")],
     "tls.cert_file='server.pem' and tls.key_file=null: set both"),
    ([("tls.key_file", "server.key")],
     "tls.cert_file=null and tls.key_file='server.key': set both"),
    ([("tls.cert_file", "s.pem"), ("tls.key_file", "s.key"), ("tls.client_auth", "required")],
     "tls.client_auth: 'required' needs tls.ca_file"),
    ([("tls.client_auth", "optional")], "tls.client_auth: 'optional' needs TLS on"),
    ([("tls.dev", "true"), ("tls.cert_file", "s.pem")],
     "tls.dev: true creates its own certificates; it cannot be combined with "
     "tls.cert_file='s.pem'"),
    ([("kafka.ssl_principal_mapping_rules", "RULE:^CN=(.*$/$1/")],
     "kafka.ssl_principal_mapping_rules: 'RULE:^CN=(.*$/$1/' is not valid"),
    ([("kafka.ssl_principal_mapping_rules", "CN")],
     "kafka.ssl_principal_mapping_rules: 'CN' is not valid: cannot read a rule at 'CN'"),
    ([("tls.min_version", "TLSv1.1")], "tls.min_version: 'TLSv1.1' is not valid"),
    ([("tls.client_auth", "maybe")], "tls.client_auth: 'maybe' is not valid"),
    ([("tls.only", "true")], "tls.only: true needs TLS on: set tls.cert_file and "
     "tls.key_file, or tls.dev"),
    ([("tls.only", "true"), ("tls.dev", "true"), ("amqp.tls_port", "null")],
     "tls.only: true with amqp.tls_port: null leaves that protocol no listener"),
    ([("tls.only", "true"), ("tls.dev", "true"),
      ("kafka.listeners", "INSIDE://:9092,OUTSIDE://:29092"),
      ("kafka.listener_security_protocol_map", "INSIDE:SSL,OUTSIDE:PLAINTEXT")],
     "tls.only: true with kafka.listeners: 'INSIDE://:9092,OUTSIDE://:29092': listener "
     "'OUTSIDE' is not SSL or SASL_SSL"),
])
def test_tls_settings_that_do_not_fit_name_the_keys_and_values(
    overrides: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={}, overrides=overrides)
    assert message in str(err.value)


def test_tls_settings_from_a_file(tmp_path: Path) -> None:
    cfg = tmp_path / "tls.yaml"
    cfg.write_text("tls:\n  cert_file: /etc/portask/server.pem\n"
                   "  key_file: /etc/portask/server.key\n  ca_file: /etc/portask/ca.pem\n"
                   "  client_auth: required\n  min_version: TLSv1.3\n")
    tls = load_settings(cfg, environ={}).tls
    assert tls.enabled and tls.client_auth == "required" and tls.min_version == "TLSv1.3"
    assert tls.cert_file == Path("/etc/portask/server.pem")
