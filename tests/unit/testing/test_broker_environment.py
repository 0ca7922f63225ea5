"""The environment ``portask.testing`` gives a broker child."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from portask.testing.broker import bytecode_cache_dir, clean_environment


def test_without_bytecode_writing_the_child_caches_bytecode_in_the_users_cache(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PORTASK_KAFKA_PORT", "9999")
    env = clean_environment({"EXTRA": "x"})
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPYCACHEPREFIX"] == str(tmp_path / "portask" / "pycache")
    assert bytecode_cache_dir() == tmp_path / "portask" / "pycache"
    assert "PORTASK_KAFKA_PORT" not in env and env["EXTRA"] == "x"
    # The child writes its bytecode there, and nowhere near the source.
    module = tmp_path / "src" / "probe_module.py"
    module.parent.mkdir()
    module.write_text("VALUE = 1\n")
    subprocess.run([sys.executable, "-c", "import probe_module"], cwd=module.parent,
                   env=env, check=True)
    assert not (module.parent / "__pycache__").exists()
    assert list((tmp_path / "portask" / "pycache").rglob("probe_module.*.pyc"))


def test_a_pycache_prefix_or_bytecode_writing_the_user_chose_is_kept(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path))
    env = clean_environment()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONPYCACHEPREFIX"] == str(tmp_path)
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX")
    env = clean_environment()
    assert "PYTHONPYCACHEPREFIX" not in env and "PYTHONDONTWRITEBYTECODE" not in env
