"""`hub ui` and `hub demo` take their children (the Streamlit server and the fine-tune worker)
down with them: SIGTERM or SIGHUP to the parent alone is passed on, a Ctrl-C of the whole
process group ends them without a traceback, and a parent killed with SIGKILL leaves no
child behind (PR_SET_PDEATHSIG). Children that ignore SIGTERM are killed after the grace period.

Each test starts its processes in a session of their own and kills that whole process
group when it ends, pass or fail. Nothing here depends on the registry's database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [
    pytest.mark.one_backend,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Served:
    """A ``hub ui`` or ``hub demo`` process, its children, and what it printed (read as it comes)."""

    def __init__(self, args: tuple[str, ...]) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "hub", *args, "--port", str(self.port)], cwd=ROOT,
                                        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()
        self.children: list[int] = []

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def serving(self) -> bool:
        assert self.process.poll() is None, f"{self.process.args} exited {self.process.returncode}: {self.output}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stcore/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def ended(self) -> str:
        """All it printed, once it has exited."""
        self.reader.join(30)
        return self.output


@pytest.fixture
def start():
    """Start ``python -m hub ARGS --port FREE`` in a session of its own; return it once the web UI
    answers. Whatever is left of its process group is killed at the end of the test."""
    started: list[Served] = []

    def run(*args: str) -> Served:
        served = Served(args)
        started.append(served)
        wait_for(served.serving, 120, f"hub {' '.join(args)} to serve")
        served.children = children_of(served.process.pid)
        assert len(served.children) == 2, served.children  # the Streamlit server and the fine-tune worker
        return served

    yield run
    for served in started:
        try:
            os.killpg(served.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        served.process.wait()


def gone(children: list[int], timeout: float = 5.0) -> None:
    wait_for(lambda: not any(map(alive, children)), timeout, f"children {children} to end")


def test_sigterm_to_hub_ui_alone_stops_its_server_and_worker(start):
    ui = start("ui")
    ui.process.send_signal(signal.SIGTERM)  # `kill PID`, as a service manager stops it
    assert ui.process.wait(30) == 0
    gone(ui.children)
    assert "Traceback" not in ui.ended()


def test_hub_ui_killed_with_sigkill_leaves_no_child_behind(start):
    ui = start("ui")
    ui.process.kill()
    ui.process.wait(10)
    gone(ui.children)


def test_ctrl_c_of_the_process_group_stops_hub_ui_and_its_children_quietly(start):
    ui = start("ui")
    wait_for(lambda: "polling every 1 s, until stopped" in ui.output, 60, "its worker to say it started")  # and idles
    os.killpg(ui.process.pid, signal.SIGINT)  # a terminal's Ctrl-C: every process of the group gets it
    assert ui.process.wait(30) == 0
    gone(ui.children)
    output = ui.ended()
    assert "Traceback" not in output and "Exception ignored" not in output, output


def test_sighup_to_hub_demo_stops_its_server_and_worker(start):
    demo = start("demo", "--no-minilm")
    demo.process.send_signal(signal.SIGHUP)  # its terminal closed
    assert demo.process.wait(30) == 0
    gone(demo.children)


STUBBORN_PARENT = """
import signal, sys
from hub.processes import Children

with Children(grace=float(sys.argv[1])) as children:
    for _ in range(2):
        child = children.start([sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                "print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        print(child.pid, flush=True)
    print("started", flush=True)
    children.wait(child)
"""


def test_children_that_ignore_sigterm_are_killed_after_the_grace_period():
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess\n" + textwrap.dedent(STUBBORN_PARENT), "1"], cwd=ROOT,
                              start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        children = [int(parent.stdout.readline()) for _ in range(2)]
        assert parent.stdout.readline() == "started\n"
        asked = time.monotonic()
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(30) == 0
        assert 1 <= time.monotonic() - asked < 5  # SIGTERM, a second of grace, then SIGKILL
        gone(children, timeout=1)
    finally:
        try:
            os.killpg(parent.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        parent.communicate()
