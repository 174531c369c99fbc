"""The registry database: migrations, schema checks, and concurrent writers (processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import hub
from hub import SchemaOutdatedError
from hub.registry import SCHEMA_HEAD
from hub.registry.migrate import head_revision

PUBLISHERS = int(os.environ.get("HUB_TEST_PUBLISHERS", "4"))
PUBLISHES_EACH = int(os.environ.get("HUB_TEST_PUBLISHES_EACH", "5"))


def test_schema_head_constant_matches_the_migrations():
    assert SCHEMA_HEAD == head_revision()


def test_migrations_create_exactly_the_orm_schema():
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hub.registry.schema import Base

    db = hub.default_hub().db
    db.ensure_schema()
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_a_new_database_is_created_at_head():
    assert hub.list_models() == []
    assert hub.default_hub().db.schema_revision() == SCHEMA_HEAD


def test_an_older_schema_is_refused_until_upgraded(run_cli):
    hub.publish({"w": torch.zeros(2)}, "acme/x")
    db = hub.default_hub().db
    with db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0000_older'")
    fresh = hub.Hub()
    with pytest.raises(SchemaOutdatedError, match="run `hub db upgrade`"):
        fresh.list_models()
    fresh.close()
    result = run_cli("list", check=False)
    assert result.returncode == 1 and "hub db upgrade" in result.stderr and "Traceback" not in result.stderr
    with db.engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{SCHEMA_HEAD}'")
    assert SCHEMA_HEAD in run_cli("db", "upgrade").stdout
    assert [m.name for m in hub.Hub().list_models()] == ["acme/x"]


def test_sqlite_runs_in_wal_mode(registry_url):
    if not registry_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    hub.publish({"w": torch.zeros(2)}, "acme/x")
    assert hub.default_hub().db.query("PRAGMA journal_mode")[0][0] == "wal"


def run_workers(code: str, count: int) -> list[dict]:
    """Start ``count`` Python processes running ``code`` (with WORKER set); return their JSON outputs."""
    script = textwrap.dedent(code)
    processes = [
        subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "WORKER": str(i)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(count)
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs


def test_processes_creating_one_new_registry_at_once_all_succeed():
    start = time.time() + 3  # every worker is imported and waiting by then
    outputs = run_workers(
        f"""
        import json, time, hub
        time.sleep(max(0.0, {start} - time.time()))
        print(json.dumps({{"models": len(hub.list_models())}}))
        """,
        PUBLISHERS * 2,
    )
    assert outputs == [{"models": 0}] * PUBLISHERS * 2
    assert hub.default_hub().db.schema_revision() == SCHEMA_HEAD


def test_concurrent_publishers_get_distinct_versions():
    outputs = run_workers(
        f"""
        import json, os, torch, hub
        worker = int(os.environ["WORKER"])
        versions = []
        for i in range({PUBLISHES_EACH}):
            torch.manual_seed(worker * 1000 + i)
            versions.append(hub.publish(hub.create("mlp", in_features=4, hidden=[8], out_features=2), "race/model").version)
        print(json.dumps({{"worker": worker, "versions": versions}}))
        """,
        PUBLISHERS,
    )
    versions = [v for output in outputs for v in output["versions"]]
    assert sorted(versions) == list(range(1, PUBLISHERS * PUBLISHES_EACH + 1))
    for output in outputs:
        for i, version in enumerate(output["versions"]):
            torch.manual_seed(output["worker"] * 1000 + i)
            expected = hub.create("mlp", in_features=4, hidden=[8], out_features=2).state_dict()
            loaded = hub.load_state_dict(f"race/model:{version}")
            assert all(torch.equal(expected[k], loaded[k]) for k in expected)
    assert hub.verify().ok


def test_concurrent_alias_moves_leave_a_consistent_alias_and_history():
    for seed in range(3):
        hub.publish({"w": torch.full((2,), float(seed))}, "race/alias")
    outputs = run_workers(
        f"""
        import json, os, random, hub
        worker = int(os.environ["WORKER"])
        rng = random.Random(worker)
        moves = 0
        for _ in range({PUBLISHES_EACH * 2}):
            moves += hub.set_alias("race/alias", "production", rng.randint(1, 3)) is not None
        print(json.dumps({{"moves": moves}}))
        """,
        PUBLISHERS,
    )
    history = hub.alias_history("race/alias", "production")
    assert len(history) == sum(o["moves"] for o in outputs)
    for before, after in zip(history, history[1:]):
        assert after.from_version == before.to_version
    assert hub.info("race/alias@production").version == history[-1].to_version


def test_a_dropped_postgres_connection_is_replaced(registry_url):
    if not registry_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    import psycopg

    hub.publish({"w": torch.zeros(2)}, "acme/x")
    (pid,) = hub.default_hub().db.query("SELECT pg_backend_pid()")[0]
    conninfo = os.environ["HUB_TEST_POSTGRES_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert [m.name for m in hub.list_models()] == ["acme/x"]


def test_registry_errors_never_show_the_password():
    from hub.registry import Database

    database = Database("postgresql+psycopg://bob:s3cret-pw@127.0.0.1:1/modelhub")
    with pytest.raises(hub.RegistryError) as raised:
        database.query("SELECT 1")
    assert "s3cret-pw" not in str(raised.value) and "bob:***@127.0.0.1:1" in str(raised.value)
    assert "s3cret-pw" not in repr(hub.Hub(registry_url=database.url))
