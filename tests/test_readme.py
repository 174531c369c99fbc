"""Every command in README.md runs, in order, on a fresh hub: the README can't drift.

The fenced ``bash`` and ``python`` blocks run top to bottom in one temporary working
folder (with ``samples/``, ``bench/`` and ``.venv`` linked in) and one ``HUB_HOME``
(the opening illustration, before "Get going", on a hub of its own).
The blocks marked ``# setup`` and ``# test`` are CI's own (``.ci/run`` runs them on a
clean clone). Commands that serve until stopped (``hub demo``, ``hub ui``) run in the
background until their web UI answers, then get Ctrl-C. The PostgreSQL block runs
against the test's own PostgreSQL schema, where one is configured.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import POSTGRES_URL, ROOT, _postgres, _postgres_schema_url, is_sqlite

README = ROOT / "README.md"
CI_BLOCKS = ("# setup", "# test")
SERVING = re.compile(r"^(?:\.venv/bin/)?hub (?:demo|ui)\b")
BACKGROUND = re.compile(r"^(?P<command>[^#]*?)\s*&\s*(?:#.*)?$")  # `hub serve --port 8765 &   # ...`
POSTGRES_IN_README = "postgresql+psycopg://postgres@127.0.0.1:5432/modelhub"


def readme_blocks() -> list[tuple[str, str, bool]]:
    """``(language, code, in the preface)`` of every fenced block, in order; the preface is what
    comes before the "Get going" section (an illustration, run on a hub of its own)."""
    text = README.read_text()
    start = text.index("## Get going")
    return [(m.group(1), m.group(2), m.start() < start) for m in re.finditer(r"^```(\w+)\n(.*?)^```", text, re.M | re.S)]


def commands(code: str) -> list[str]:
    """A bash block's commands, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def serve_then_stop(command: str, env: dict, cwd: Path) -> str:
    """Run a command that serves the web UI until its port answers, then stop it with Ctrl-C."""
    port = re.search(r"--port (\d+)", command)
    url = f"http://127.0.0.1:{port.group(1) if port else 8501}/_stcore/health"
    with socket.socket() as probe:  # else another process's web UI would answer for this one
        assert probe.connect_ex(("127.0.0.1", int(port.group(1)) if port else 8501)) != 0, f"`{command}`: its port is taken"
    process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, f"`{command}` exited {process.returncode}: {process.stdout.read()}"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"`{command}` never served {url}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        try:  # whatever is left of its process group (its server and worker), pass or fail
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return output


def start_in_background(command: str, env: dict, cwd: Path) -> subprocess.Popen:
    """Start a command the README runs with ``&`` (``hub serve``, ``hub serve-models``, ``finetune worker``) in
    a session of its own; for a server, return once it answers (``/healthz``; ``/v2/health/ready``)."""
    port = re.search(r"^(?:\.venv/bin/)?hub serve(?P<models>-models)?\b.*--port (?P<port>\d+)", command)
    if port:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(port.group("port")))) != 0, f"`{command}`: its port is taken"
    with open(cwd / f"background-{len(list(cwd.glob('background-*')))}.log", "w") as log:
        process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    if port:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"`{command}` exited {process.returncode}: {Path(log.name).read_text()}"
            try:
                health = "/v2/health/ready" if port.group("models") else "/healthz"  # hub serve-models: once its models loaded
                with urllib.request.urlopen(f"http://127.0.0.1:{port.group('port')}{health}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, f"`{command}` never answered: {Path(log.name).read_text()}"
                time.sleep(0.2)
    return process


def stop(processes: list[subprocess.Popen]) -> None:
    """Ctrl-C to each background command's process group, then SIGKILL to what is left."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def background():
    """The README's ``&`` commands, stopped when the test ends, pass or fail."""
    started: list[subprocess.Popen] = []
    yield started
    stop(started)


@pytest.fixture
def workdir(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("samples", "bench"):
        (folder / name).symlink_to(ROOT / name)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def test_every_readme_command_runs(workdir, hub_home, background):
    if not is_sqlite():
        pytest.skip("runs once, on the README's own default (SQLite); its PostgreSQL block uses a schema of its own")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "MPLBACKEND": "Agg", "HUB_TEST_README": "1"}
    env.pop("HUB_REGISTRY_URL")  # the README's commands run on the default registry in HUB_HOME
    ran: list[str] = []
    for number, (language, code, preface) in enumerate(readme_blocks()):
        if language == "python":
            block_env = {**env, "HUB_HOME": str(workdir.parent / "preface-hub")} if preface else env
            result = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=block_env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"README python block {number} failed:\n{code}\n{result.stderr[-3000:]}"
            ran.append(f"python block {number}")
            continue
        if language != "bash" or code.startswith(CI_BLOCKS):
            continue
        block_env = dict(env)
        if "HF_ENDPOINT=http://127.0.0.1" in code:  # Hugging Face clients of the README's own server: online, to it alone
            for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
                block_env.pop(name, None)
        if POSTGRES_IN_README in code:
            if POSTGRES_URL is None:  # CI sets it; run locally with HUB_TEST_POSTGRES_URL to cover this block
                continue
            schema = f"readme_{os.getpid()}"
            _postgres(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
            code = code.replace(POSTGRES_IN_README, _postgres_schema_url(schema))
        serving = [c for c in commands(code) if SERVING.match(c)]
        for command in serving:
            output = serve_then_stop(command, block_env, workdir)
            ran.append(command)
            assert "Traceback" not in output, output
        for command in commands(code):
            if match := BACKGROUND.match(command):
                background.append(start_in_background(match.group("command"), block_env, workdir))
                ran.append(command)
        script = "\n".join(c for c in commands(code) if not SERVING.match(c) and not BACKGROUND.match(c))
        if script:
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, env=block_env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"README bash block {number} failed:\n{script}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            ran.extend(commands(code))
    assert any("hub demo" in c for c in ran) and any(c.startswith("finetune run") for c in ran)
    assert any(c.startswith("hub serve") for c in ran) and any(c.startswith("finetune logs --follow") for c in ran)
