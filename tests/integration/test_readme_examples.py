"""The README's testing examples run as written: the unittest class against a broker it
starts itself, and the Node control-API script against one started here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess

README = Path(__file__).resolve().parents[2] / "README.md"


def _example(name: str) -> str:
    found = re.search(rf"<!-- example: {name} -->\n```\w+\n(.*?)```", README.read_text(),
                      re.S)
    assert found, f"README has no example {name!r}"
    return found.group(1)


def test_the_unittest_example_passes(tmp_path: Path) -> None:
    script = tmp_path / "test_jobs.py"
    script.write_text(_example("unittest"))
    ran = subprocess.run([sys.executable, "-m", "unittest", "-v", "test_jobs"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert re.search(r"test_a_job_waits_in_its_queue \(.*\) \.\.\. ok", ran.stderr)
    assert "Ran 1 test" in ran.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_example_drives_the_control_api(broker: BrokerProcess) -> None:
    url = f"http://127.0.0.1:{broker.http_port}"
    ran = subprocess.run(["node", "--input-type=module", "-e", _example("node")],
                         env={**os.environ, "PORTASK_HTTP": url},
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    assert answer["faults"] == 1 and answer["rule"] >= 1
    from portask.testing import ControlClient

    assert ControlClient(url).faults() == []  # the script cleared its rule
