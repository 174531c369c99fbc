"""The web UI signs in and enforces the hub server's rules: on a local hub with users and tokens
(AppTest on a real registry), with none on loopback (as before), on a non-loopback host without
any (`hub ui` refuses, in a subprocess), and against a real `hub serve` (tests/server_process.py)."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import save as safetensors_bytes
from streamlit.testing.v1 import AppTest

import finetune
import hub
from conftest import ROOT, registry_dump, snapshot
from hub.access import Access

pytestmark = pytest.mark.one_backend  # the web UI's sign-in and checks; the access rules are tested on both (test_access, test_server)

VIEWS = ROOT / "webui" / "views"
FEATURES = ["f0", "f1", "f2", "f3"]


def page(name: str, *, token: str | None = None, login: tuple[str, str] | None = None, **query: str) -> AppTest:
    """A page run once with ``query``; signed in through the sidebar with ``token`` or ``login`` when given."""
    app = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=60)
    app.query_params.update(query)
    app.run()
    if token is not None or login is not None:
        if login is not None:
            app.text_input(key="signin:user").input(login[0])
            app.text_input(key="signin:password").input(login[1])
        else:
            app.text_input(key="signin:token").input(token)
        button(app, "Sign in").click().run()
    assert not app.exception, app.exception
    return app


def button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def texts(app: AppTest) -> str:
    kinds = ("markdown", "caption", "error", "warning", "info", "success")
    return "\n".join(str(element.value) for kind in kinds for element in getattr(app, kind))


def set_alias(app: AppTest, alias: str, version: int) -> AppTest:
    form_alias = next(t for t in app.text_input if t.label == "Alias")
    form_alias.input(alias)
    next(s for s in app.selectbox if s.label == "Version").select(version)
    return button(app, "Set alias").click().run()


def iris_csv(path: Path, rows: int = 60) -> Path:
    generator = torch.Generator().manual_seed(0)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*FEATURES, "label"])
        for i in range(rows):
            writer.writerow([f"{v:.3f}" for v in torch.randn(4, generator=generator).tolist()] + [i % 3])
    return path


def mlp() -> torch.nn.Module:
    return hub.create("mlp", in_features=4, hidden=[8], out_features=3)


def secure(hub_instance) -> dict[str, str]:
    """Users, tokens and namespaces: alice writes acme (public) and secret (private); bob has a
    password and a read token but writes neither. Returns the tokens."""
    access = Access(hub_instance.db)
    access.create_user("alice", password="alice-pw")
    access.create_user("bob", password="bob-pw")
    access.create_namespace("acme", owners=["alice"], visibility="public")
    access.create_namespace("secret", owners=["alice"], visibility="private")
    return {"alice": access.create_token("alice", "write")[0], "bob-read": access.create_token("bob", "read")[0]}


def publish_models() -> None:
    torch.manual_seed(0)
    hub.publish(mlp(), "acme/iris", task="classification", aliases=["production"])
    hub.publish(mlp(), "acme/iris", task="classification")
    hub.publish(mlp(), "secret/model", task="classification")


@pytest.fixture
def tokens() -> dict[str, str]:
    publish_models()
    return secure(hub.default_hub())


def the_state(home: Path) -> tuple:
    return snapshot(home / "blobs") if (home / "blobs").exists() else {}, registry_dump()


# --- a local hub with authentication configured ------------------------------------------


def test_anonymous_visitors_write_nothing(tokens, tmp_path):
    home = Path(os.environ["HUB_HOME"])
    before = the_state(home)
    model = page("model", ref="acme/iris")
    assert "Sign in" in [b.label for b in model.button] and "you see public models only" in texts(model)
    moved = set_alias(model, "production", 2)
    assert not moved.exception and "needs you signed in" in moved.error[0].value
    removed = button(moved, "Remove alias").click().run()
    assert "needs you signed in" in removed.error[0].value

    publish = page("publish")
    weights = safetensors_bytes({k: v.contiguous() for k, v in mlp().state_dict().items()})
    publish.file_uploader(key="weights").set_value(("model.safetensors", weights, "application/octet-stream"))
    publish.text_input(key="name").set_value("acme/new")
    published = button(publish, "Publish").click().run()
    assert not published.exception and "needs you signed in" in published.error[0].value

    tune = page("fine_tune", ref="acme/iris")
    data = iris_csv(tmp_path / "iris.csv")
    tune.file_uploader(key="data").set_value(("iris.csv", data.read_bytes(), "text/csv")).run()
    submitted = tune.button(key="submit").click().run()
    assert not submitted.exception and any("needs you signed in" in e.value for e in submitted.error)
    assert the_state(home) == before  # no alias, version, job or blob
    assert "sign in" in texts(page("jobs")).lower()


def test_a_signed_in_writer_writes_in_their_own_name(tokens, tmp_path):
    model = page("model", ref="acme/iris", login=("alice", "alice-pw"))
    assert "Signed in as **alice** (write)" in texts(model)
    moved = set_alias(model, "production", 2)
    assert not moved.error and "@production now points at acme/iris:2" in moved.success[0].value
    assert [(c.to_version, c.changed_by) for c in hub.alias_history("acme/iris", "production")] == [(1, "tester"), (2, "alice")]

    with_token = page("model", ref="acme/iris", token=tokens["alice"])
    assert "Signed in as **alice** (write)" in texts(with_token)
    staged = set_alias(with_token, "staging", 1)
    assert not staged.error and hub.alias_history("acme/iris", "staging")[-1].changed_by == "alice"
    signed_out = button(staged, "Sign out").click().run()
    assert "Sign in" in [b.label for b in signed_out.button]
    session = page("model", ref="acme/iris", token=tokens["alice"])
    Access(hub.default_hub().db).revoke_token(tokens["alice"])
    revoked = session.run()  # signed in with it: the next run finds it revoked
    assert "was revoked" in revoked.warning[0].value and "Sign in" in [b.label for b in revoked.button]
    wrong = page("model", ref="acme/iris", login=("alice", "not-it"))
    assert "wrong user name or password" in wrong.error[0].value and "Signed in" not in texts(wrong)

    tune = page("fine_tune", ref="acme/iris", login=("alice", "alice-pw"))
    data = iris_csv(tmp_path / "iris.csv")
    tune.file_uploader(key="data").set_value(("iris.csv", data.read_bytes(), "text/csv")).run()
    output = next(t for t in tune.text_input if t.label == "Output model")
    assert output.value == "alice/iris-ft"
    output.input("acme/iris-ft")
    submitted = tune.button(key="submit").click().run()
    assert not submitted.error, texts(submitted)
    [job] = finetune.list_jobs()
    assert job.created_by == "alice" and job.output == "acme/iris-ft"
    listed = page("jobs", login=("alice", "alice-pw"))
    assert job.id in texts(listed)
    assert job.id not in texts(page("jobs", login=("bob", "bob-pw")))  # not bob's, and he writes no acme


def test_a_reader_is_refused_and_told_what_is_missing(tokens):
    read_only = set_alias(page("model", ref="acme/iris", token=tokens["bob-read"]), "production", 2)
    assert "read scope" in read_only.error[0].value
    not_a_writer = set_alias(page("model", ref="acme/iris", login=("bob", "bob-pw")), "production", 2)
    assert "not an owner or writer of namespace 'acme'" in not_a_writer.error[0].value
    assert hub.info("acme/iris@production").version == 1
    assert [c.changed_by for c in hub.alias_history("acme/iris", "production")] == ["tester"]


def test_a_private_model_is_hidden_from_those_who_cannot_read_it(tokens):
    anonymous = page("models")
    assert "acme/iris" in texts(anonymous) and "secret/model" not in texts(anonymous)
    assert "1 model" in anonymous.caption[0].value
    hidden, missing = page("model", ref="secret/model"), page("model", ref="secret/nothing")
    assert "'secret/model' is not in the registry" in hidden.error[0].value and not hidden.title
    assert hidden.error[0].value.replace("secret/model", "X") == missing.error[0].value.replace("secret/nothing", "X")
    assert "secret/model" not in texts(page("models", login=("bob", "bob-pw")))
    alice = page("models", login=("alice", "alice-pw"))
    assert "secret/model" in texts(alice) and "2 models" in alice.caption[0].value
    assert page("model", ref="secret/model", login=("alice", "alice-pw")).title[0].value == "secret/model"


def test_without_authentication_the_local_user_acts_as_before():
    publish_models()
    model = page("model", ref="acme/iris")
    assert "No sign-in" in texts(model) and "hub user create NAME --password-stdin" in texts(model)
    assert "Sign in" not in [b.label for b in model.button]
    moved = set_alias(model, "production", 2)
    assert not moved.error and hub.alias_history("acme/iris", "production")[-1].changed_by == "tester"
    assert "secret/model" in texts(page("models"))  # nothing is private to the one who owns the files


# --- hub ui on a non-loopback host ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.one_backend
def test_hub_ui_on_every_interface_without_authentication_refuses_to_start():
    hub.default_hub().db.ensure_schema()
    port = free_port()
    started = time.monotonic()
    for command in (["-m", "hub", "ui"], ["-m", "webui"]):
        run = subprocess.run([sys.executable, *command, "--host", "0.0.0.0", "--port", str(port)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 1 and run.stdout == "", (run.stdout, run.stderr)
        [line] = run.stderr.strip().splitlines()
        assert "no authentication configured" in line and "hub user create NAME --password-stdin" in line
    assert time.monotonic() - started < 30
    with socket.socket() as sock:  # nothing listens: no Streamlit server was left behind
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_with_authentication_configured_every_interface_is_allowed(tokens):
    from webui.auth import refusal

    assert refusal("0.0.0.0") is None and refusal("127.0.0.1") is None


@pytest.mark.one_backend
def test_hub_ui_against_a_hub_server_starts_no_worker():
    """The queue is the server's: `hub ui` with HUB_ENDPOINT starts the UI alone (and needs no local auth)."""
    import signal

    environment = {**os.environ, "HUB_ENDPOINT": "http://127.0.0.1:9"}
    process = subprocess.Popen([sys.executable, "-m", "hub", "ui", "--host", "0.0.0.0", "--port", str(free_port())],
                               cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        first = process.stdout.readline()
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the UI and whatever it started
        process.wait(30)
    assert first.startswith("modelhub UI at http://0.0.0.0:") and "for the hub server http://127.0.0.1:9" in first
    assert "worker" not in first


# --- against a real hub server ------------------------------------------------------------


def test_against_a_hub_server_the_ui_signs_in_and_the_server_enforces(tmp_path, monkeypatch, registry_url):
    from server_process import start_server

    publish_models()
    served = hub.default_hub()
    tokens = secure(served)
    data = iris_csv(tmp_path / "iris.csv")
    with start_server(served.home, registry_url) as server:
        login = httpx.post(f"{server.url}/api/v1/login", json={"user": "alice", "password": "alice-pw"}, timeout=30)
        assert login.status_code == 200 and login.json()["scope"] == "write"
        whoami = httpx.get(f"{server.url}/api/v1/whoami", headers={"Authorization": f"Bearer {login.json()['token']}"})
        assert whoami.json()["user"] == "alice"
        wrong = httpx.post(f"{server.url}/api/v1/login", json={"user": "alice", "password": "nope"}, timeout=30)
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "AuthenticationError"
        assert "nope" not in wrong.text
        malformed = httpx.post(f"{server.url}/api/v1/login", json={"user": "alice"}, timeout=30)
        assert malformed.status_code == 400 and malformed.json()["error"]["type"] == "InvalidArgumentError"

        monkeypatch.setenv("HUB_ENDPOINT", server.url)
        monkeypatch.setenv("HUB_HOME", str(tmp_path / "client-cache"))  # the client's cache: nothing of the server's
        monkeypatch.setenv("HUB_TOKEN", tokens["alice"])  # never used by the UI: visitors sign in themselves
        anonymous = page("models")
        assert "acme/iris" in texts(anonymous) and "secret/model" not in texts(anonymous)
        refused = set_alias(page("model", ref="acme/iris"), "production", 2)
        assert "needs you signed in" in refused.error[0].value
        assert "is not in the registry" in page("model", ref="secret/model").error[0].value

        model = page("model", ref="acme/iris", token=tokens["alice"])
        moved = set_alias(model, "production", 2)
        assert not moved.error and "@production now points at acme/iris:2" in moved.success[0].value
        reader = set_alias(page("model", ref="acme/iris", token=tokens["bob-read"]), "staging", 1)
        assert "read scope" in reader.error[0].value

        signed_in = page("models", login=("alice", "alice-pw"))  # through POST /api/v1/login
        assert "Signed in as **alice** (write)" in texts(signed_in) and "secret/model" in texts(signed_in)

        tune = page("fine_tune", ref="acme/iris", token=tokens["alice"])
        tune.file_uploader(key="data").set_value(("iris.csv", data.read_bytes(), "text/csv")).run()
        next(t for t in tune.text_input if t.label == "Output model").input("acme/iris-ft")
        validated = tune.button(key="validate").click().run()
        assert not validated.error and "training rows" in validated.success[0].value, texts(validated)
        submitted = validated.button(key="submit").click().run()
        assert not submitted.error, texts(submitted)
        jobs = page("jobs", token=tokens["alice"])
        assert "acme/iris-ft" in texts(jobs)
        [job_id] = [j.id for j in finetune.list_jobs(hub=served)]
        job = page("job", token=tokens["alice"], id=job_id)
        assert job.subheader[0].value == job_id and "by alice" in texts(job)
        assert "sign in" in texts(page("job", id=job_id)).lower()

        publish = page("publish", token=tokens["alice"])
        weights = safetensors_bytes({k: v.contiguous() for k, v in mlp().state_dict().items()})
        publish.file_uploader(key="weights").set_value(("model.safetensors", weights, "application/octet-stream"))
        publish.text_input(key="name").set_value("acme/uploaded")
        published = button(publish, "Publish").click().run()
        assert not published.error and "acme/uploaded:1" in published.success[0].value, texts(published)

        tried = page("try_it", ref="acme/iris:1")
        next(t for t in tried.text_area if "numbers" in t.label).input("0.1, 0.2, 0.3, 0.4")
        predicted = button(tried, "Predict").click().run()
        assert not predicted.exception and not predicted.error and predicted.subheader, texts(predicted)
        monkeypatch.delenv("HUB_ENDPOINT")
        monkeypatch.setenv("HUB_HOME", str(served.home))
        assert [(c.to_version, c.changed_by) for c in served.alias_history("acme/iris", "production")] == [(1, "tester"), (2, "alice")]
        [job] = finetune.list_jobs(hub=served)
        assert job.created_by == "alice"
        assert served.info("acme/uploaded").ref == "acme/uploaded:1"
