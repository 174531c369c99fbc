"""Fixtures: every test gets its own HUB_HOME and registry, on SQLite and (when
HUB_TEST_POSTGRES_URL is set) on PostgreSQL, in a schema of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# Nothing in the tests may reach the network: Hugging Face libraries are told so before they load.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

POSTGRES_URL = os.environ.get("HUB_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]
ROOT = Path(__file__).resolve().parent.parent


def _postgres_schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


def _postgres(sql: str) -> None:
    import psycopg

    conninfo = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql)


def backend_of(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"``: the backend of a registry URL."""
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def fresh_registry(home: Path, backend: str) -> tuple[str, str | None]:
    """A registry of its own for a hub at ``home`` on ``backend`` (a module's served hub, say): ``(url, schema)``,
    ``schema`` the PostgreSQL schema made for it (``DROP SCHEMA ... CASCADE`` it afterwards), None on SQLite."""
    if backend == "sqlite":
        return f"sqlite:///{home / 'registry.db'}", None
    schema = f"m_{uuid.uuid4().hex[:12]}"
    _postgres(f"CREATE SCHEMA {schema}")
    return _postgres_schema_url(schema), schema


def hub_with_reader(home: Path, url: str) -> tuple[object, str]:
    """A hub at ``home`` and ``url`` (schema made) with a read token for user ``reader``, who owns the public
    namespace ``acme`` and the private ``secret``: ``(hub, token)``."""
    from hub.access import Access
    from hub.api import Hub

    hub = Hub(home, url)
    hub.db.ensure_schema()
    access = Access(hub.db)
    token = access.create_token("reader", "read")[0]
    access.create_namespace("acme", owners=["reader"], visibility="public")
    access.create_namespace("secret", owners=["reader"], visibility="private")
    return hub, token


class PerBackend:
    """One thing per registry backend for a test module (a hub with its server, say), made on first use in a
    home and registry of its own (:func:`fresh_registry`; the tests' own are left unused), closed at the
    module's end. A module-scoped fixture makes one and closes it; a per-test fixture calls :meth:`get`."""

    def __init__(self, factory, prefix: str) -> None:
        self.factory, self.prefix = factory, prefix
        self.found: dict[str, object] = {}
        self.schemas: list[str] = []

    def get(self, registry_url: str, build):
        """The thing for ``registry_url``'s backend: ``build(home, url)``'s, made the first time."""
        backend = backend_of(registry_url)
        if backend not in self.found:
            home = self.factory.mktemp(f"{self.prefix}-{backend}")
            url, schema = fresh_registry(home, backend)
            self.schemas += [schema] if schema else []
            self.found[backend] = build(home, url)
        return self.found[backend]

    def close(self, close_one) -> None:
        """``close_one`` each thing made, then drop the PostgreSQL schemas."""
        for thing in self.found.values():
            close_one(thing)
        for schema in self.schemas:
            _postgres(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(autouse=True, params=BACKENDS)
def registry_url(request, tmp_path, monkeypatch) -> str:
    """Point HUB_HOME at a fresh folder and HUB_REGISTRY_URL at a fresh database; yield the URL."""
    home = tmp_path / "hub-home"
    for variable in ("HUB_ENDPOINT", "HUB_TOKEN", "HUB_OFFLINE"):  # a developer's own settings can't turn the suite remote
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HUB_HOME", str(home))
    monkeypatch.setenv("HUB_USER", "tester")
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'registry.db'}"
        monkeypatch.setenv("HUB_REGISTRY_URL", url)
        yield url
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _postgres(f"CREATE SCHEMA {schema}")
    url = _postgres_schema_url(schema)
    monkeypatch.setenv("HUB_REGISTRY_URL", url)
    try:
        yield url
    finally:
        import hub

        hub.default_hub().close()
        _postgres(f"DROP SCHEMA {schema} CASCADE")


# The modules whose tests take longest start first, so that with several pytest-xdist workers
# (the README's `-n auto`) the last test to finish is a short one.
SLOWEST_FIRST = {name: rank for rank, name in enumerate([
    "test_readme.py", "test_webui_e2e.py", "test_remote_jobs.py", "test_finetune.py", "test_registry.py", "test_fencing.py",
    "test_concurrency.py", "test_workers.py", "test_crash.py", "test_remote.py", "test_server.py", "test_sample.py",
])}


def pytest_collection_modifyitems(config, items) -> None:
    """The slowest modules go first (:data:`SLOWEST_FIRST`). Tests marked ``one_backend`` run on SQLite only: what they check (parsing, files, the
    blob store) does not depend on the registry's database, so a PostgreSQL run repeats them.
    The long form (``HUB_TEST_LONG=1``) runs them on every backend all the same."""
    items.sort(key=lambda item: SLOWEST_FIRST.get(item.path.name, len(SLOWEST_FIRST)))  # stable: the rest keep their order
    if os.environ.get("HUB_TEST_LONG") == "1":
        return

    def sqlite_only(item) -> bool:  # a test's own one_backend(False) overrides its module's mark
        marker = item.get_closest_marker("one_backend")
        return marker is not None and (marker.args[0] if marker.args else True)

    repeats = [item for item in items if sqlite_only(item)
               and getattr(item, "callspec", None) and item.callspec.params.get("registry_url") == "postgresql"]
    if repeats:
        config.hook.pytest_deselected(items=repeats)
        dropped = set(repeats)
        items[:] = [item for item in items if item not in dropped]


def is_sqlite() -> bool:
    """Whether this test runs on the SQLite registry (else PostgreSQL)."""
    return os.environ["HUB_REGISTRY_URL"].startswith("sqlite")


@pytest.fixture
def hub_home(registry_url) -> Path:
    return Path(os.environ["HUB_HOME"])


STORE_BACKENDS = ("filesystem",)  # an object-storage or remote backend joins here; the store tests then run on it unchanged


@pytest.fixture(params=STORE_BACKENDS)
def blob_store(request, tmp_path):
    """An empty store (:class:`hub.storage.BlobStore`) of each backend."""
    from hub.storage import FileStore

    return {"filesystem": lambda: FileStore(tmp_path)}[request.param]()


@pytest.fixture
def run_cli():
    """Run ``python -m hub ARGS`` in a subprocess with the test's environment."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
        if check and result.returncode != 0:
            raise AssertionError(f"hub {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    return run


def snapshot(home: Path) -> dict[str, bytes]:
    """Every file under ``home`` with its bytes, to prove nothing changed.

    The SQLite registry's files are left out: SQLite may rewrite them without a
    change of content (a WAL checkpoint); :func:`registry_dump` compares the rows.
    """
    files = {}
    for path in sorted(home.rglob("*")):
        if path.is_file() and not path.name.startswith("registry.db"):
            files[str(path.relative_to(home))] = path.read_bytes()
    return files


@dataclass
class Upload:
    """What Streamlit's ``file_uploader`` hands a page: a name, a size and the bytes."""

    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def getvalue(self) -> bytes:
        return self.data


def assert_same_tensors(actual: dict, expected: dict) -> None:
    """Same names, dtypes, shapes and bytes."""
    assert sorted(actual) == sorted(expected)
    for key, tensor in expected.items():
        assert actual[key].dtype == tensor.dtype and actual[key].shape == tensor.shape, key
        assert actual[key].cpu().contiguous().view(-1).view(torch.uint8).equal(tensor.cpu().contiguous().view(-1).view(torch.uint8)), key


REGISTRY_TABLES = [
    "registered_models", "model_versions", "model_version_files", "model_version_tags",
    "model_version_metrics", "model_version_metadata", "model_aliases", "model_alias_history",
    "finetune_jobs", "finetune_job_events", "finetune_job_metrics",
    "hub_users", "api_tokens", "namespaces", "namespace_members", "model_visibility",
]


def registry_dump() -> dict[str, list[tuple]]:
    """Every row of every registry table, sorted: compare two dumps to prove nothing changed."""
    import hub

    db = hub.default_hub().db
    if db.schema_revision() is None:
        return {}
    return {table: sorted(map(repr, db.query(f"SELECT * FROM {table}"))) for table in REGISTRY_TABLES}


def state(home: Path) -> tuple[dict[str, bytes], dict[str, list]]:
    """Files and registry rows together."""
    return snapshot(home), registry_dump()


def live_links(app) -> list[str]:
    """Every link a Streamlit page (an AppTest, after a run) would render that the UI did not make
    itself: ``[text](url)`` not escaped and not to one of its own pages (``/...``), ``<https://...>``,
    and bare ``https://`` or ``www.`` (GitHub-flavoured Markdown makes those links too)."""
    import re

    kinds = ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success")
    texts = [element.value for kind in kinds for element in getattr(app, kind)]
    patterns = (r"(?<!\\)\]\((?!/)[^)]*\)", r"(?<!\\)<(?:https?|mailto):[^>]*>", r"(?<![\\\w])(?:https?:|www\.)")
    return [match for text in texts for pattern in patterns for match in re.findall(pattern, str(text))]


DIGIT_PIXELS = [f"pixel_{i}" for i in range(64)]


def digits_job_data(folder: Path, rows: int) -> Path:
    """The first ``rows`` of scikit-learn's handwritten digits as a CSV (64 pixel columns and a
    label), and ``acme/digits-cnn:1``, an untrained convnet for a job to tune: what the worker
    tests fine-tune in a few steps."""
    import csv

    from sklearn.datasets import load_digits

    import hub

    data = load_digits()
    path = folder / "digits.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*DIGIT_PIXELS, "label"])
        writer.writerows([*map(int, x), int(y)] for x, y in zip(data.data[:rows], data.target[:rows]))
    torch.manual_seed(0)
    hub.publish(hub.create("convnet", in_channels=1, image_size=8, num_classes=10), "acme/digits-cnn")
    return path
