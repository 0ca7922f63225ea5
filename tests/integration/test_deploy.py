"""deploy/docker-compose.yml, deploy/kubernetes.yaml and the Dockerfile, as far as they
can be tested without Docker or a cluster: they parse, every Portask setting they name
is a real one, the ports they publish are the ones Portask listens on with their
settings, and Portask started with exactly their environment and the image's CMD
(ports remapped to free ones, the data dir to a temporary one) serves what they promise.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from confluent_kafka.admin import AdminClient

from portask import cli
from portask.config import Settings, environment_warnings, load_settings
from portask.listeners import kafka_listener_specs
from tests.broker_process import free_port, start_broker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
KUBERNETES = ROOT / "deploy" / "kubernetes.yaml"
DOCKERFILE = ROOT / "Dockerfile"


def _instruction(name: str) -> str:
    """The arguments of a Dockerfile instruction of the final stage, continuation lines
    joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = [line.split(None, 1)[1] for line in text.splitlines()
             if line.startswith(f"{name} ")]
    assert found, name
    return found[-1]


def image_cmd() -> list[str]:
    return list(json.loads(_instruction("CMD")))


def settings_of(env: dict[str, str], cmd: list[str]) -> Settings:
    """What Portask runs with under this environment and command line."""
    assert cmd[:2] == ["portask", "serve"]
    args = cli._parser().parse_args(cmd[1:])
    return load_settings(args.config, environ=env, overrides=cli._overrides(args))


def listening_ports(settings: Settings) -> dict[str, int]:
    ports = {name: spec.port for name, spec in kafka_listener_specs(settings, tls=False)}
    ports.update(amqp=settings.amqp.port, http=settings.http.port,
                 management=settings.http.management_port)
    return ports


def local_run(cmd: list[str], data_dir: Path) -> list[str]:
    """The image's CMD arguments after `portask serve`, with this test's data dir."""
    args = cmd[2:]
    at = args.index("--data-dir")
    return [*args[:at + 1], str(data_dir), *args[at + 2:]]


def remap_ports(value: str, ports: dict[int, int]) -> str:
    return re.sub(r":(\d+)\b", lambda m: f":{ports.get(int(m.group(1)), int(m.group(1)))}",
                  value)


def healthcheck(http_port: int) -> None:
    """The Dockerfile's HEALTHCHECK command, against this broker's HTTP port."""
    command = json.loads(_instruction("HEALTHCHECK").split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"] and ":8080/health" in command[2]
    probe = command[2].replace(":8080/", f":{http_port}/")
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=30)


def metadata_brokers(port: int) -> list[tuple[str, int]]:
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    return [(b.host, b.port) for b in admin.list_topics(timeout=10).brokers.values()]


# -- the Dockerfile --------------------------------------------------------------------


def test_dockerfile_exposes_every_default_port_and_serves_as_the_smoke_script_does() -> None:
    exposed = sorted(int(p) for p in _instruction("EXPOSE").split())
    d = Settings()
    defaults = [d.kafka.port, d.kafka.tls_port, d.amqp.port, d.amqp.tls_port, d.http.port,
                d.http.tls_port, d.http.management_port, d.http.management_tls_port]
    assert exposed == sorted(defaults)
    assert image_cmd() == ["portask", "serve", "--host", "0.0.0.0", "--data-dir", "/data"]
    # tools/install_smoke.sh (run by `make test`) runs the image's steps without Docker:
    # the same wheel build, serve, and HEALTHCHECK probe.
    smoke = (ROOT / "tools" / "install_smoke.sh").read_text()
    assert "pip wheel" in smoke and '"$work/venv/bin/portask" serve' in smoke
    probe = json.loads(_instruction("HEALTHCHECK").split("CMD", 1)[1])[2]
    assert probe.replace("http://127.0.0.1:8080/", "http://127.0.0.1:$port/") in smoke


# -- docker-compose --------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def test_compose_names_real_settings_and_publishes_the_ports_portask_listens_on() -> None:
    compose = _compose()
    assert set(compose["services"]) == {"portask", "app"}
    portask = compose["services"]["portask"]
    env = {k: str(v) for k, v in portask["environment"].items()}
    assert environment_warnings(env) == []
    settings = settings_of(env, image_cmd())
    listening = listening_ports(settings)
    assert listening == {"kafka_internal": 9092, "kafka_host": 29092, "amqp": 5672,
                         "http": 8080, "management": 15672}
    published = {}
    for mapping in portask["ports"]:
        host_port, _, container_port = str(mapping).partition(":")
        published[int(container_port)] = int(host_port)
    assert set(published) <= set(listening.values())
    specs = {spec.name: spec for _, spec in kafka_listener_specs(settings, tls=False)}
    # The host's listener tells clients an address the host reaches: the published port.
    host = specs["HOST"]
    assert host.host == "0.0.0.0" and published[host.port] == host.advertised_port
    assert host.advertised_host == "localhost"
    # The app is pointed at the internal listener, under the service's name.
    internal = specs["INTERNAL"]
    assert internal.port not in published  # containers only
    app = compose["services"]["app"]
    assert app["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == (
        f"{internal.advertised_host}:{internal.advertised_port}")
    assert internal.advertised_host in compose["services"]
    amqp = urlparse(app["environment"]["AMQP_URL"])
    assert (amqp.hostname, amqp.port) == ("portask", settings.amqp.port)
    assert app["depends_on"]["portask"]["condition"] == "service_healthy"
    script = app["volumes"][0].split(":")[0]
    assert (COMPOSE.parent / script).is_file()
    assert portask["volumes"] == ["portask-data:/data"] and "portask-data" in compose["volumes"]
    assert settings.server.data_dir == Path("/data")


def test_portask_as_the_compose_file_starts_it_serves_the_app_and_the_host(
        tmp_path: Path) -> None:
    portask = _compose()["services"]["portask"]
    ports = {9092: free_port(), 29092: free_port()}
    env = {k: remap_ports(str(v), ports) for k, v in portask["environment"].items()}
    proc = start_broker(tmp_path / "data", *local_run(image_cmd(), tmp_path / "data"),
                        env=env, management=True,
                        expect=("kafka_internal", "kafka_host", "amqp", "http"))
    try:
        assert proc.ports["kafka_internal"] == ports[9092]
        # Containers are sent to portask:9092, the host to localhost:29092.
        assert metadata_brokers(ports[9092]) == [("portask", ports[9092])]
        assert metadata_brokers(ports[29092]) == [("localhost", ports[29092])]
        # The app container's program, run from the host through the host's listener.
        app_env = {"KAFKA_BOOTSTRAP_SERVERS": f"localhost:{ports[29092]}",
                   "AMQP_URL": f"amqp://guest:guest@localhost:{proc.amqp_port}/%2F"}
        app = subprocess.run([sys.executable, str(COMPOSE.parent / "example_app.py")],
                             env={**_child_env(), **app_env}, capture_output=True, text=True,
                             timeout=120)
        assert app.returncode == 0, app.stdout + app.stderr
        assert app.stdout.strip() == "kafka: hello over Kafka; amqp: hello over AMQP"
        healthcheck(proc.http_port)
    finally:
        assert proc.stop() == 0
    assert "Traceback" not in proc.stderr_text()


def _child_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PORTASK_")}


# -- Kubernetes ------------------------------------------------------------------------


def _manifests() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(KUBERNETES.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs) == 3
    return by_kind


def _container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def service_links(service: dict[str, Any], cluster_ip: str) -> dict[str, str]:
    """The variables Kubernetes puts into every pod of the namespace for this Service."""
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    ports = service["spec"]["ports"]
    first = ports[0]["port"]
    env = {f"{prefix}_SERVICE_HOST": cluster_ip, f"{prefix}_SERVICE_PORT": str(first),
           f"{prefix}_PORT": f"tcp://{cluster_ip}:{first}"}
    for p in ports:
        name, port = p["name"].upper().replace("-", "_"), p["port"]
        env[f"{prefix}_SERVICE_PORT_{name}"] = str(port)
        base = f"{prefix}_PORT_{port}_TCP"
        env.update({base: f"tcp://{cluster_ip}:{port}", f"{base}_PROTO": "tcp",
                    f"{base}_PORT": str(port), f"{base}_ADDR": cluster_ip})
    return env


def test_kubernetes_manifest_wires_ports_probes_and_the_volume_to_portask() -> None:
    manifests = _manifests()
    deployment, service, claim = (manifests[k] for k in
                                  ("Deployment", "Service", "PersistentVolumeClaim"))
    container = _container(manifests)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert environment_warnings(env) == []
    settings = settings_of(env, image_cmd())
    assert settings.kafka.advertised_host == service["metadata"]["name"]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container_ports == {"kafka": settings.kafka.port, "amqp": settings.amqp.port,
                               "http": settings.http.port,
                               "management": settings.http.management_port}
    for port in service["spec"]["ports"]:
        assert container_ports[port["targetPort"]] == port["port"]
    # Clients reach the Kafka port under the advertised name, on the advertised port.
    kafka = next(p for p in service["spec"]["ports"] if p["targetPort"] == "kafka")
    assert kafka["port"] == (settings.kafka.advertised_port or settings.kafka.port)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        template["metadata"]["labels"].items())
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    (mount,) = container["volumeMounts"]
    assert Path(mount["mountPath"]) == settings.server.data_dir
    (volume,) = template["spec"]["volumes"]
    assert volume["name"] == mount["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    uid = re.search(r"useradd .*--uid (\d+)", DOCKERFILE.read_text())
    assert uid is not None
    assert template["spec"]["securityContext"]["runAsUser"] == int(uid.group(1))
    # One pod at a time: the data directory is locked by the process that uses it.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_portask_in_the_pod_environment_starts_and_advertises_the_service(
        tmp_path: Path) -> None:
    manifests = _manifests()
    container = _container(manifests)
    links = service_links(manifests["Service"], "10.0.0.5")
    env = {**{e["name"]: e["value"] for e in container["env"]}, **links}
    proc = start_broker(tmp_path / "data", *local_run(image_cmd(), tmp_path / "data"),
                        env=env, management=True)
    try:
        # The readiness and liveness probes' request.
        probe = container["readinessProbe"]["httpGet"]["path"]
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.http_port}{probe}",
                                    timeout=5) as answer:
            assert answer.status == 200
        assert metadata_brokers(proc.kafka_port) == [("portask", proc.kafka_port)]
    finally:
        assert proc.stop() == 0
    # The injected service links are ignored with one warning line naming them.
    warnings = [line for line in proc.stderr_text().splitlines()
                if "not Portask settings" in line]
    assert len(warnings) == 1
    assert all(name in warnings[0] for name in links)


def test_the_readme_shows_the_compose_file_as_it_is_and_links_the_manifest() -> None:
    readme = (ROOT / "README.md").read_text()
    # Shown whole, indented as a code block, so that what users copy is what is tested.
    shown = "\n".join(("    " + line) if line else "" for line in COMPOSE.read_text().splitlines())
    assert shown in readme, "README.md does not show deploy/docker-compose.yml as it is"
    assert "(deploy/kubernetes.yaml)" in readme and "(deploy/docker-compose.yml)" in readme
