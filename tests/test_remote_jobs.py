"""Fine-tuning over HTTP, on SQLite and PostgreSQL: a real ``hub serve`` process, a real
``finetune worker`` on the server's hub, and clients (the ``finetune`` CLI in processes of their
own, and the Python API) holding only ``HUB_ENDPOINT``, ``HUB_TOKEN`` and a ``HUB_HOME`` of their own.

A job submitted with its data file runs on the server and publishes a version whose parent is the
base and whose author is the token's user; ``finetune logs --follow`` watches it to the end; a
queued job is cancelled, and ``hub gc`` keeps its uploaded data until then; anonymous callers get
401, read tokens 403, another user's job is a 404 (until its user is made a writer of the output's
namespace); bad submissions are refused with typed errors and leave nothing behind.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

import finetune
import hub
from conftest import BACKENDS, DIGIT_PIXELS, POSTGRES_URL, ROOT, _postgres, _postgres_schema_url
from finetune.jobs import JobStore
from hub.errors import (AuthenticationError, ColumnNotFoundError, InvalidArgumentError, JobNotFoundError, JobStateError,
                        ModelNotFoundError, PermissionDeniedError)
from server_process import Server, start_server

pytest.importorskip("sklearn.datasets")
pytest.importorskip("fastapi")

BASE = "acme/digits-cnn"
ROWS = 160  # a one-epoch job is 5 steps
UPLOAD_LIMIT_MB = 1  # the server's FINETUNE_MAX_UPLOAD_MB, so that a 413 costs little


@dataclass
class Served:
    """A hub server with its own home and registry, the users' tokens, and the data to send."""

    server: Server
    hub: hub.Hub
    tokens: dict[str, str]
    data: Path
    folder: Path
    schema: str | None

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process on the server's side (a worker)."""
        drop = ("HUB_ENDPOINT", "HUB_TOKEN", "HUB_OFFLINE")
        return {**{k: v for k, v in os.environ.items() if k not in drop},
                "HUB_HOME": str(self.hub.home), "HUB_REGISTRY_URL": self.server.registry_url}

    def client_env(self, user: str | None) -> dict[str, str]:
        """A client's whole environment: the endpoint, the user's token, a home of its own; no registry."""
        env = {"PATH": os.environ["PATH"], "HOME": str(self.folder / "client"), "HUB_HOME": str(self.folder / "client"),
               "HUB_ENDPOINT": self.server.url, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        return {**env, **({"HUB_TOKEN": self.tokens[user]} if user else {})}

    def uploads(self) -> list[str]:
        """Every file and folder under the server's uploads."""
        folder = self.hub.home / "uploads"
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []

    def close(self) -> None:
        self.server.stop()
        self.hub.close()
        if self.schema is not None:
            _postgres(f"DROP SCHEMA {self.schema} CASCADE")


def _digits_csv(path: Path, rows: int) -> Path:
    from sklearn.datasets import load_digits

    data = load_digits()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*DIGIT_PIXELS, "label"])
        writer.writerows([*map(int, x), int(y)] for x, y in zip(data.data[:rows], data.target[:rows]))
    return path


def _start(backend: str, folder: Path) -> Served:
    """The server's hub: a base anyone may read (public ``acme``), a private model of another namespace,
    the users' tokens; then ``hub serve`` over it."""
    home, schema = folder / "server-home", None
    if backend == "sqlite":
        url = f"sqlite:///{home / 'registry.db'}"
    else:
        schema = f"t_{os.urandom(6).hex()}"
        _postgres(f"CREATE SCHEMA {schema}")
        url = _postgres_schema_url(schema)
    served_hub = hub.Hub(home, url)
    served_hub.db.ensure_schema()
    torch.manual_seed(0)
    served_hub.publish(hub.create("convnet", in_channels=1, image_size=8, num_classes=10), BASE)
    served_hub.publish(hub.create("convnet", in_channels=1, image_size=8, num_classes=10), "hidden/base")
    from hub.access import Access

    access = Access(served_hub.db)
    tokens = {"root": access.create_token("root", "admin")[0]}
    access.create_namespace("acme", owners=["root"], visibility="public")
    access.create_namespace("hidden", owners=["root"], visibility="private")
    tokens.update(alice=access.create_token("alice", "write")[0], reader=access.create_token("alice", "read")[0],
                  bob=access.create_token("bob", "write")[0])
    server = start_server(home, url, env={"FINETUNE_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB), "HUB_USER": "server-account"})
    return Served(server, served_hub, tokens, _digits_csv(folder / "digits.csv", ROWS), folder, schema)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The module's servers, one per backend, started when a test first asks for it."""
    running: dict[str, Served] = {}
    yield running, tmp_path_factory
    for served in running.values():
        served.close()


@pytest.fixture
def served(servers, registry_url) -> Served:
    running, factory = servers
    backend = "sqlite" if registry_url.startswith("sqlite") else "postgresql"
    if backend not in running:
        running[backend] = _start(backend, factory.mktemp(f"served-{backend}"))
    return running[backend]


@pytest.fixture
def as_user(served, monkeypatch):
    """``as_user(name)``: make this process a client of the server as ``name`` (None: anonymous), with a
    home of its own and no registry."""

    def become(user: str | None) -> None:
        monkeypatch.delenv("HUB_REGISTRY_URL", raising=False)
        monkeypatch.setenv("HUB_HOME", str(served.folder / "client"))
        monkeypatch.setenv("HUB_ENDPOINT", served.server.url)
        if user is None:
            monkeypatch.delenv("HUB_TOKEN", raising=False)
        else:
            monkeypatch.setenv("HUB_TOKEN", served.tokens[user])

    return become


def finetune_cli(served: Served, user: str | None, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finetune", *args], env=served.client_env(user), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _api(served: Served, user: str, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {served.tokens[user]}"} if user else {}
    return httpx.request(method, f"{served.server.url}/api/v1{path}", headers=headers, timeout=30, **kwargs)


def _cancel_unfinished(served: Served) -> None:
    """Cancel the jobs a test left queued (a later test's worker would run them)."""
    jobs = JobStore(served.hub.db)
    for job in jobs.unfinished():
        jobs.request_cancel(job.id)


def test_a_job_sent_over_http_runs_on_the_server_and_publishes_as_its_user(served, as_user):
    submitted = finetune_cli(served, "alice", "submit", BASE, str(served.data), "--output", "alice/digits-ft",
                             "--epochs", "1", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert (job["status"], job["created_by"], job["base"]) == ("queued", "alice", f"{BASE}:1")
    assert (served.hub.home / job["data"]["train"]).read_bytes() == served.data.read_bytes()  # kept in the uploads

    worker = subprocess.Popen([sys.executable, "-m", "finetune", "worker", "--once", "--wait", "60", "--poll", "0.2"],
                              env=served.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        logs = finetune_cli(served, "alice", "logs", "--follow", job["id"])  # polls until the job ends
        out, err = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert worker.returncode == 0 and f"claimed {job['id']}" in err, err
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert "queued: fine-tune acme/digits-cnn:1 on digits.csv (classification) into alice/digits-ft" in lines[0]
    assert lines[-1].endswith("succeeded") and any("published alice/digits-ft:" in line for line in lines), logs.stdout

    status = finetune_cli(served, "alice", "status", job["id"], "--json")
    assert status.returncode == 0, status.stderr
    done = json.loads(status.stdout)
    assert (done["status"], done["created_by"], done["step"], done["total_steps"]) == ("succeeded", "alice", 5, 5)
    listed = finetune_cli(served, "alice", "list")
    assert job["id"] in listed.stdout and "succeeded" in listed.stdout, listed.stderr

    as_user("alice")  # the Python API, in this process, over HTTP
    assert finetune.get_job(job["id"]).result == done["result"]
    train = finetune.job_metrics(job["id"], split="train")
    assert [m.step for m in train] == [1, 2, 3, 4, 5] and all(m.values["loss"] > 0 for m in train)
    assert [set(m.values) >= {"loss", "accuracy"} for m in finetune.job_metrics(job["id"], split="eval")] == [True]
    events = finetune.job_events(job["id"])
    assert [e.message for e in finetune.job_events(job["id"], after_id=events[-2].id)] == ["succeeded"]

    name, number = done["result"].split(":")
    version = _api(served, "alice", "GET", f"/models/{name}/-/versions/{number}").json()
    assert version["parent"] == f"{BASE}:1" and version["metadata"]["finetune_job"] == job["id"]
    manifest = _api(served, "alice", "GET", f"/models/{name}/-/versions/{number}/manifest").json()
    assert manifest["created_by"] == "alice"  # the token's user, not the worker's or the server's account


def test_a_queued_job_is_cancelled_and_gc_keeps_its_data_until_then(served, as_user):
    as_user("alice")
    job = finetune.submit(BASE, served.data, output="alice/cancelled", config={"epochs": 1})
    assert job.status == "queued" and job.created_by == "alice"
    data = served.hub.home / job.data["train"]
    served.hub.gc(min_age_seconds=0)
    assert data.is_file()  # a queued job reads it: gc keeps it

    cancelled = finetune.cancel(job.id)
    assert cancelled.status == "cancelled" and finetune.get_job(job.id).status == "cancelled"
    assert finetune.job_events(job.id)[-1].message == "cancelled before it started"
    with pytest.raises(JobStateError, match="has already cancelled"):
        finetune.cancel(job.id)
    served.hub.gc(min_age_seconds=0)
    assert not data.exists()  # no job needs it now


def test_who_may_submit_see_and_cancel_jobs(served, as_user):
    anonymous = _api(served, None, "POST", "/jobs", data={"request": json.dumps({"base": BASE, "output": "x/y"})},
                     files={"data": ("digits.csv", served.data.read_bytes())})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert anonymous.json()["error"]["type"] == "AuthenticationError"
    cli = finetune_cli(served, None, "submit", BASE, str(served.data), "--output", "alice/x")
    assert cli.returncode == 1 and cli.stderr.startswith("finetune: error: fine-tuning jobs belong to users"), cli.stderr
    as_user(None)
    with pytest.raises(AuthenticationError):
        finetune.list_jobs()
    as_user("reader")
    with pytest.raises(PermissionDeniedError, match="read scope"):
        finetune.submit(BASE, served.data, output="alice/x")

    as_user("alice")
    job = finetune.submit(BASE, served.data, output="alice/watched", config={"epochs": 1})  # claims namespace alice
    try:
        as_user("bob")
        with pytest.raises(PermissionDeniedError, match="not an owner or writer of namespace 'alice'"):
            finetune.submit(BASE, served.data, output="alice/bobs")
        as_user("reader")  # alice's own job, with a read token: seen, not cancelled
        assert finetune.get_job(job.id).id == job.id
        with pytest.raises(PermissionDeniedError, match="read scope"):
            finetune.cancel(job.id)
        as_user("bob")
        missing = _api(served, "bob", "GET", "/jobs/ftjob-20000101-00000000").json()
        assert _api(served, "bob", "GET", f"/jobs/{job.id}").json()["error"]["message"] == missing["error"]["message"].replace(
            "ftjob-20000101-00000000", job.id)  # the same answer as for a job that is not there
        for call in (finetune.get_job, finetune.cancel, finetune.job_events, finetune.job_metrics):
            with pytest.raises(JobNotFoundError):
                call(job.id)
        assert job.id not in [j.id for j in finetune.list_jobs(limit=1000)]
        as_user("root")
        assert job.id in [j.id for j in finetune.list_jobs("queued")]

        from hub.access import Access

        Access(served.hub.db).update_namespace("alice", add_writers=["bob"])  # now bob writes alice's models
        as_user("bob")
        assert job.id in [j.id for j in finetune.list_jobs()]
        cancelled = finetune_cli(served, "bob", "cancel", job.id)
        assert (cancelled.returncode, cancelled.stdout) == (0, f"{job.id}: cancelled\n"), cancelled.stderr
        assert finetune.get_job(job.id).status == "cancelled"
    finally:
        _cancel_unfinished(served)


def test_bad_submissions_are_refused_and_leave_nothing(served, as_user):
    as_user("alice")
    finetune.submit(BASE, served.data, output="alice/first", config={"epochs": 1})  # claims namespace alice
    _cancel_unfinished(served)
    jobs, uploads = len(JobStore(served.hub.db).list()), served.uploads()

    with pytest.raises(ColumnNotFoundError) as refused:
        finetune.submit(BASE, served.data, output="alice/bad", config={"label_column": "nope"})
    assert str(refused.value).startswith("digits.csv, column 'nope': there is no such column")
    assert str(served.hub.home) not in str(refused.value)  # the server's folders are not the client's business
    with pytest.raises(ModelNotFoundError, match="'hidden/base' is not in the registry"):
        finetune.submit("hidden/base", served.data, output="alice/bad")  # private: as if it were not there
    with pytest.raises(InvalidArgumentError, match="a folder can't be sent"):
        finetune.submit(BASE, served.folder, output="alice/bad")

    big = served.folder / "big.csv"
    big.write_text(served.data.read_text() * (UPLOAD_LIMIT_MB * 2**20 // served.data.stat().st_size + 1))
    request = json.dumps({"base": BASE, "output": "alice/bad"})
    answer = _api(served, "alice", "POST", "/jobs", data={"request": request}, files={"data": ("big.csv", big.read_bytes())})
    assert answer.status_code == 413 and "FINETUNE_MAX_UPLOAD_MB" in answer.json()["error"]["message"], answer.text
    assert answer.json()["error"]["type"] == "InvalidArgumentError"
    for form, expected in [
        ({"request": json.dumps({"base": BASE, "output": "alice/bad", "epochs": 1})}, "unknown key(s) 'epochs'"),
        ({"request": json.dumps({"base": BASE, "output": "alice/bad", "config": "/etc/passwd"})}, "a file name is not read"),
        ({"request": "{not json"}, "not valid JSON"),
        ({"request": json.dumps({"base": BASE, "output": "Alice Bad"})}, "Alice Bad"),
    ]:
        answer = _api(served, "alice", "POST", "/jobs", data=form, files={"data": ("digits.csv", served.data.read_bytes())})
        assert answer.status_code == 400 and expected in answer.json()["error"]["message"], answer.text
    for files, expected in [({"request": (None, request)}, "the form lacks data"),
                            ({"request": (None, request), "weights": ("w.bin", b"x")}, "unknown form field 'weights'"),
                            ({"request": (None, request), "data": ("empty.csv", b"")}, "data file empty.csv is empty")]:
        answer = _api(served, "alice", "POST", "/jobs", files=files)
        assert answer.status_code == 400 and expected in answer.json()["error"]["message"], answer.text
    answer = _api(served, "alice", "POST", "/jobs", data={"request": request})
    assert answer.status_code == 400 and "multipart/form-data" in answer.json()["error"]["message"], answer.text

    assert len(JobStore(served.hub.db).list()) == jobs and served.uploads() == uploads  # nothing queued, nothing kept
