"""Fencing of fine-tuning workers, on SQLite and PostgreSQL: a worker stopped (SIGSTOP) past
FINETUNE_STALE_SECONDS and taken over by another writes nothing more for that job when it
resumes (no event, metric, checkpoint, version or final state), logs that it lost its claim
and goes on with the next job; one job gives one version. Bad FINETUNE_STALE_SECONDS values
are refused at start, and a run on two torchrun nodes publishes once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import finetune
import hub
from conftest import DIGIT_PIXELS, ROOT, digits_job_data
from finetune.jobs import JobStore
from hub.errors import ConfigError

pytest.importorskip("sklearn.datasets")
PIXELS = DIGIT_PIXELS
STALE = "1"  # seconds: the workers here beat every third of it

# A `finetune ARGS` process that stops itself with SIGSTOP on entering METHOD for the COUNT-th
# time (outside any transaction), touching MARKER first; the test sends SIGCONT.
PAUSING_WORKER = r"""
import os, signal, sys
from pathlib import Path

where, count, marker = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
if where == "add_version":
    from hub.registry.store import RegistryStore as owner
else:
    from finetune.jobs import JobStore as owner
original, calls = getattr(owner, where), []

def paused(*args, **kwargs):
    calls.append(1)
    if len(calls) == count:
        marker.touch()
        os.kill(os.getpid(), signal.SIGSTOP)
    return original(*args, **kwargs)

setattr(owner, where, paused)
from finetune.cli import main
sys.exit(main(sys.argv[4:]))
"""


@pytest.fixture
def digits(tmp_path) -> Path:
    """200 of scikit-learn's digits as CSV (160 train, 40 validation: 5 steps an epoch)."""
    return digits_job_data(tmp_path, 200)


def wait_for(condition, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def job_writes(job_id: str) -> tuple:
    """Everything a worker writes for a job: its row, events and metrics."""
    return finetune.get_job(job_id).to_dict(), finetune.job_events(job_id), finetune.job_metrics(job_id)


# --- a worker stopped past the stale limit, taken over, resumed -------------------------------------


@pytest.mark.parametrize("where, count, config", [
    # stopped after its last evaluation, about to reserve its version number
    pytest.param("add_version", 1, {"epochs": 1}, id="before-publishing"),
    # stopped mid-training, about to record its second checkpoint
    pytest.param("save_checkpoint", 2, {"epochs": 3, "checkpoint_every": 4}, id="mid-training"),
])
def test_a_worker_taken_over_while_stopped_writes_nothing_more_and_goes_on(digits, tmp_path, monkeypatch, where, count, config):
    monkeypatch.setenv("FINETUNE_STALE_SECONDS", STALE)
    job = finetune.submit("acme/digits-cnn", digits, output="me/fenced", config={**config, "seed": 1})
    marker = tmp_path / "stopped"
    first = subprocess.Popen([sys.executable, "-c", PAUSING_WORKER, where, str(count), str(marker), "worker", "--max-jobs", "2", "--poll", "0.1"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: marker.exists() or first.poll() is not None)
        assert first.poll() is None, first.communicate()[1][-3000:]
        wait_for(lambda: os.waitid(os.P_PID, first.pid, os.WEXITED | os.WSTOPPED | os.WNOHANG | os.WNOWAIT))  # really stopped
        time.sleep(float(STALE) + 0.2)

        assert finetune.work(once=True) == 1  # a second worker (this process) takes the job over and ends it
        done = finetune.get_job(job.id)
        assert done.status == "succeeded" and done.attempts == 2 and done.result == "me/fenced:1", done
        after_takeover = job_writes(job.id)
        following = finetune.submit("acme/digits-cnn", digits, output="me/following", config={"epochs": 1})

        first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
            first.communicate()
    assert first.returncode == 0, err[-3000:]
    assert f"job {job.id}: claim lost to another worker (attempt 1" in err and "abandoning" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]

    assert [v.ref for v in hub.list_versions("me/fenced")] == ["me/fenced:1"]  # one job, one version
    assert job_writes(job.id) == after_takeover  # the resumed worker wrote nothing more for the job
    assert hub.verify().problems == ()
    ran_next = finetune.get_job(following.id)  # ... and went on with the next job
    assert ran_next.status == "succeeded" and ran_next.worker.endswith(f":{first.pid}") and ran_next.result == "me/following:1"


def test_every_job_write_needs_the_claim(digits):
    job = finetune.submit("acme/digits-cnn", digits, output="me/claims", config={"epochs": 1})
    store = JobStore(hub.default_hub().db)
    stale = store.claim("w1")
    store.save_checkpoint(stale.id, "w1", {"digest": "0" * 64, "step": 2, "blobs": []}, attempt=stale.attempts)
    with store.db.engine.begin() as connection:  # as if its heartbeat had gone stale: another worker takes over
        connection.exec_driver_sql("UPDATE finetune_jobs SET heartbeat_at_ms = 0")
    current = store.claim("w2")
    assert (current.id, current.attempts, current.worker) == (job.id, 2, "w2")
    before = job_writes(job.id)
    writes = {
        "heartbeat": lambda: store.heartbeat(job.id, "w1", attempt=1, step=3),
        "record": lambda: store.record(job.id, "w1", attempt=1, events=[("info", "late")], metrics=[(3, 0.5, "train", {"loss": 1.0})]),
        "save_checkpoint": lambda: store.save_checkpoint(job.id, "w1", {"digest": "1" * 64, "step": 3, "blobs": []}, attempt=1),
        "finish": lambda: store.finish(job.id, "w1", "succeeded", attempt=1, result="me/claims:1"),
        "same worker, old attempt": lambda: store.finish(job.id, "w2", "failed", attempt=1, error=("X", "y")),
    }
    for name, write in writes.items():
        with pytest.raises(finetune.ClaimLostError, match=rf"job {job.id}: claim lost to another worker \(attempt 1"):
            write()
    assert job_writes(job.id) == before, name
    assert store.heartbeat(job.id, "w2", attempt=2, step=1) is False
    assert store.finish(job.id, "w2", "cancelled", attempt=2).status == "cancelled"


# --- FINETUNE_STALE_SECONDS -------------------------------------------------------------------------


BAD_TIMING = [
    ({"FINETUNE_STALE_SECONDS": "abc"}, "FINETUNE_STALE_SECONDS='abc' is not a positive number of seconds"),
    ({"FINETUNE_STALE_SECONDS": "nan"}, "FINETUNE_STALE_SECONDS='nan' is not a positive number of seconds"),
    ({"FINETUNE_STALE_SECONDS": "inf"}, "FINETUNE_STALE_SECONDS='inf' is not a positive number of seconds"),
    ({"FINETUNE_STALE_SECONDS": "0"}, "FINETUNE_STALE_SECONDS='0' is not a positive number of seconds"),
    ({"FINETUNE_STALE_SECONDS": "-1"}, "FINETUNE_STALE_SECONDS='-1' is not a positive number of seconds"),
    ({"FINETUNE_STALE_SECONDS": ""}, "FINETUNE_STALE_SECONDS='' is not a positive number of seconds"),
    ({"FINETUNE_HEARTBEAT_SECONDS": "nan"}, "FINETUNE_HEARTBEAT_SECONDS='nan' is not a positive number of seconds"),
    ({"FINETUNE_STALE_SECONDS": "2", "FINETUNE_HEARTBEAT_SECONDS": "5"},
     "FINETUNE_STALE_SECONDS=2 is not longer than the heartbeat interval (FINETUNE_HEARTBEAT_SECONDS=5)"),
]


@pytest.mark.one_backend
def test_bad_stale_seconds_are_refused_at_start_in_one_line(digits, monkeypatch):
    commands = {"worker": ["worker", "--once"],
                "run": ["run", "acme/digits-cnn", str(digits), "-o", "me/never", "--epochs", "1"]}
    started = []
    for variables, expected in BAD_TIMING:
        env = {**os.environ, **variables}
        for command in commands.values():
            started.append((variables, expected, subprocess.Popen([sys.executable, "-m", "finetune", *command], cwd=ROOT, env=env,
                                                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for variables, expected, process in started:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 1, (variables, err)
        assert err.startswith("finetune: error: " + expected) and err.count("\n") == 1, (variables, err)
        assert "set FINETUNE_" in err, err  # it says what to set
    assert finetune.list_jobs() == []  # `finetune run` queued nothing
    for variables, expected in BAD_TIMING:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match="is not"):
            finetune.work(once=True)
        for name in variables:
            monkeypatch.delenv(name)


@pytest.mark.one_backend
def test_good_stale_seconds_set_the_heartbeat(monkeypatch):
    from finetune.jobs import timing

    assert timing() == (60.0, 5.0)
    monkeypatch.setenv("FINETUNE_STALE_SECONDS", "0.3")
    assert timing() == pytest.approx((0.3, 0.1))  # a third of a short limit: healthy workers keep their jobs
    monkeypatch.setenv("FINETUNE_HEARTBEAT_SECONDS", "0.2")
    assert timing() == (0.3, 0.2)


# --- one run on two nodes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_run_on_two_nodes_trains_data_parallel_and_publishes_once(digits):
    port = free_port()
    nodes = [
        subprocess.Popen([sys.executable, "-m", "finetune", "run", "acme/digits-cnn", str(digits), "-o", "me/two-node", "--epochs", "1",
                          "--device", "cpu", "--nproc", "1",
                          "--torchrun", f"--nnodes 2 --node-rank {rank} --master-addr 127.0.0.1 --master-port {port}"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    try:
        results = [node.communicate(timeout=240) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], [err[-3000:] for _, err in results]
    assert "published me/two-node:1 (parent acme/digits-cnn:1) with 2 processes" in results[0][0], results[0]
    assert "published" not in results[1][0], results[1]  # node 1 trains and writes nothing
    assert [v.ref for v in hub.list_versions("me/two-node")] == ["me/two-node:1"]
    [job] = finetune.list_jobs()
    assert job.status == "succeeded" and job.result == "me/two-node:1" and job.config["nproc"] == 2
    assert job.total_steps == 3  # 160 training rows: 80 a node, 32 a batch
    messages = [e.message for e in finetune.job_events(job.id)]
    assert "data-parallel over 2 processes (gloo)" in messages
    assert sum(m.startswith("published") for m in messages) == 1 and sum(m.startswith("data:") for m in messages) == 1
