"""What fine-tuning workers say, on SQLite and PostgreSQL: `finetune worker` logs one line on
stderr when it starts, claims a job, and the job succeeds or fails; `--once` with nothing to
claim (another worker, such as `hub demo`'s, took the job) says which worker runs it and
exits 0, and `--once --wait SECONDS` runs a job queued while it waits."""

from __future__ import annotations

import logging
import re
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

pytest.importorskip("sklearn.datasets")
PIXELS = DIGIT_PIXELS
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  (INFO|WARNING|ERROR) +(.*)$")
OTHER = "demo-host:4242"  # a worker that is not the one under test, as `hub demo`'s would be


@pytest.fixture
def digits(tmp_path) -> Path:
    """160 of scikit-learn's digits as CSV (a one-epoch job is a few steps), and a base to tune."""
    return digits_job_data(tmp_path, 160)


def finetune_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finetune", *args], capture_output=True, text=True, timeout=180, cwd=ROOT)


def log_lines(stderr: str) -> list[tuple[str, str]]:
    """``(level, message)`` of each log line, in order."""
    return [m.groups() for m in map(LOG_LINE.match, stderr.splitlines()) if m]


def test_a_worker_logs_its_start_each_claim_and_how_each_job_ended(digits, tmp_path):
    spoiled = tmp_path / "spoiled.csv"
    spoiled.write_bytes(digits.read_bytes())
    good = finetune.submit("acme/digits-cnn", digits, output="me/good", config={"epochs": 1})
    bad = finetune.submit("acme/digits-cnn", spoiled, output="me/bad", config={"epochs": 1})
    spoiled.write_text(",".join([*PIXELS, "label"]) + "\n")  # emptied after it was queued: the job fails
    result = finetune_cli("worker", "--max-jobs", "2", "--poll", "0.1")
    assert result.returncode == 0, result.stderr
    lines = log_lines(result.stderr)
    assert [level for level, _ in lines] == ["INFO", "INFO", "INFO", "INFO", "ERROR", "INFO"], result.stderr
    messages = [message for _, message in lines]
    registry = hub.default_hub().db.shown_url
    assert re.fullmatch(rf"worker {re.escape(socket.gethostname())}:\d+ started: registry {re.escape(registry)}, "
                        r"polling every 0\.1 s, at most 2 job\(s\)", messages[0]), messages[0]
    worker = messages[0].split()[1]
    assert messages[1] == f"claimed {good.id}: acme/digits-cnn:1 -> me/good (classification), attempt 1"
    assert re.fullmatch(rf"{good.id} succeeded in \d+\.\d s: published me/good:1", messages[2]), messages[2]
    assert messages[3] == f"claimed {bad.id}: acme/digits-cnn:1 -> me/bad (classification), attempt 1"
    assert re.fullmatch(rf"{bad.id} failed after \d+\.\d s: EmptyDataError: .*spoiled\.csv.*", messages[4]), messages[4]
    assert messages[5] == f"worker {worker} stopped after 2 job(s)"
    assert finetune.get_job(good.id).worker == finetune.get_job(bad.id).worker == worker
    assert result.stdout.splitlines()[0].startswith(f"{good.id}  succeeded") and f"{bad.id}  failed" in result.stdout


def test_once_says_which_worker_took_the_job_and_exits_0(digits, caplog):
    job = finetune.submit("acme/digits-cnn", digits, output="me/taken", config={"epochs": 1})
    store = JobStore(hub.default_hub().db)
    assert store.claim(OTHER).id == job.id  # taken first by another worker (a `hub demo` running beside)
    result = finetune_cli("worker", "--once")
    assert result.returncode == 0 and result.stdout == "", result.stderr
    warnings = [message for level, message in log_lines(result.stderr) if level == "WARNING"]
    expected = (f"no job waiting; 1 job(s) running under other workers: {job.id} (worker {OTHER}). A worker started by "
                f"`hub demo` or `hub ui` may have taken yours; `finetune status {job.id}` shows it")
    assert warnings == [expected], result.stderr

    with caplog.at_level(logging.INFO, logger="finetune.worker"):  # the API says the same, as a warning
        assert finetune.work(once=True) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [expected]

    store.finish(job.id, OTHER, "succeeded", attempt=1, result="me/taken:1")  # the other worker finished it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="finetune.worker"):
        assert finetune.work(once=True) == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"no job waiting; the newest job, {job.id}, succeeded under worker {OTHER} (`finetune status {job.id}` shows it)"]
    assert finetune.get_job(job.id).attempts == 1  # nobody but the other worker ran it


def test_once_wait_runs_a_job_queued_while_it_waits(digits, caplog):
    worker = subprocess.Popen([sys.executable, "-m", "finetune", "worker", "--once", "--wait", "120", "--poll", "0.1"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = ""
        while " started: " not in started:  # it found nothing, and waits
            started = worker.stderr.readline()
            assert started, worker.communicate(timeout=30)
        assert "one job, waiting up to 120 s for one" in started
        time.sleep(0.3)
        job = finetune.submit("acme/digits-cnn", digits, output="me/waited", config={"epochs": 1})
        out, err = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    ran = finetune.get_job(job.id)
    assert ran.status == "succeeded" and ran.worker.endswith(f":{worker.pid}") and out.startswith(f"{job.id}  succeeded")
    assert f"claimed {job.id}" in err and "WARNING" not in err

    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="finetune.worker"):
        assert finetune.work(once=True, wait=0.5, poll_seconds=0.1) == 0  # waits, then says why it ran nothing
    assert time.monotonic() - began >= 0.5
    assert [r.getMessage() for r in caplog.records] == [
        f"no job waiting; the newest job, {job.id}, succeeded under worker {ran.worker} (`finetune status {job.id}` shows it)"]


@pytest.mark.one_backend
def test_wait_without_once_or_not_a_number_of_seconds_is_a_usage_error():
    for args, expected in ((["--wait", "5"], "--wait goes with --once"),
                           (["--once", "--wait", "-1"], "argument --wait: '-1' is not a number of seconds"),
                           (["--once", "--wait", "nan"], "argument --wait: 'nan' is not a number of seconds")):
        result = finetune_cli("worker", *args)
        assert result.returncode == 2 and result.stderr.startswith(f"finetune: error: {expected}"), (args, result.stderr)
        assert result.stderr.count("\n") == 1
    assert finetune.list_jobs() == []
