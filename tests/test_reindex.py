"""``hub reindex`` never loses or changes an acknowledged version (issue "Reliability, round 2", item 1).

Reindex used to read ``refs/`` with no lock, delete every registry row and insert what it read:
beside publishers it dropped acknowledged versions (whose numbers the next publish handed out
again, overwriting their pointers), from an empty or wrong ``HUB_HOME`` it wiped a shared
registry (and ``hub gc`` then deleted the blobs), and it rewrote alias history as one move by
whoever ran it. Now it holds the store's exclusive lock, only adds what the store has evidence
for, refuses an unrelated store, keeps alias history in the store, and never reuses a number.

The race with publishers runs on both backends; ``HUB_TEST_LONG=1`` runs it longer.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

import hub
from conftest import is_sqlite, registry_dump, snapshot, state
from test_concurrency import finish, start

LONG = os.environ.get("HUB_TEST_LONG") == "1"
PUBLISHERS = 4 if LONG else 2
PUBLISHES_EACH = 40 if LONG else 8


def weights(seed: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((16,), float(seed)), "b": torch.arange(4.0) + seed}


def wipe_registry_rows(*names: str) -> None:
    """What a lost or stale registry looks like: the models' rows are gone (all models when none named)."""
    from sqlalchemy import text

    with hub.default_hub().db.engine.begin() as connection:
        if names:
            for name in names:
                connection.execute(text("DELETE FROM registered_models WHERE name = :name"), {"name": name})
        else:
            connection.execute(text("DELETE FROM registered_models"))


def alias_history(name: str, alias: str) -> list:
    """Every move of ``alias``; none for an alias ``name`` never had (the API raises AliasNotFoundError)."""
    try:
        return hub.alias_history(name, alias)
    except hub.AliasNotFoundError:
        return []


def full_view() -> dict:
    """Every version (digest, files, metrics, who, when), alias and alias move, as the registry says."""
    view = {}
    for model in hub.list_models(limit=None):
        versions = {v.version: v for v in hub.list_versions(model.name)}
        history = {alias: [(c.from_version, c.to_version, c.changed_by, c.changed_at) for c in alias_history(model.name, alias)]
                   for alias in ("production", "staging", "canary")}
        view[model.name] = (versions, dict(model.aliases), {a: h for a, h in history.items() if h})
    return view


def test_reindex_beside_concurrent_publishers_loses_no_acknowledged_version(hub_home):
    """Publishers in other processes print each version they are acknowledged; reindex runs in a loop
    meanwhile. Every acknowledged version stays, with its weights, and no number is handed out twice."""
    hub.publish(weights(-1), "race/shared")
    publishers = [start(f"""
        import json, torch, hub
        acknowledged = []
        for i in range({PUBLISHES_EACH}):
            seed = {worker} * 1000 + i
            for name in ("race/shared", "race/own-{worker}"):
                v = hub.publish({{"w": torch.full((16,), float(seed)), "b": torch.arange(4.0) + seed}}, name)
                acknowledged.append([v.ref, v.digest, seed])
        print(json.dumps(acknowledged))
    """) for worker in range(PUBLISHERS)]
    rounds = 0
    while any(p.poll() is None for p in publishers):
        report = hub.reindex()
        assert report.dropped == () and report.replaced == () and report.deleted == ()
        rounds += 1
    acknowledged = [entry for output in finish(publishers) for entry in output]
    hub.reindex()
    refs = [ref for ref, _, _ in acknowledged]
    assert len(refs) == len(set(refs)) == 2 * PUBLISHERS * PUBLISHES_EACH  # no number handed out twice
    for ref, digest, seed in acknowledged:
        assert hub.info(ref).digest == digest, ref
        loaded = hub.load_state_dict(ref, verify=True)
        assert torch.equal(loaded["w"], torch.full((16,), float(seed))), ref
    assert hub.verify().ok and rounds >= 1
    print(f"\nreindex beside {PUBLISHERS} publishers: {len(acknowledged)} acknowledged versions kept, {rounds} reindex rounds")


def test_reindex_from_an_empty_or_unrelated_home_refuses_and_changes_nothing(hub_home, tmp_path, registry_url, run_cli):
    """The shared-registry accident: a machine whose HUB_HOME is empty or another hub's runs reindex."""
    hub.publish(weights(1), "acme/m", aliases=["production"])
    hub.publish(weights(2), "acme/m")
    before = state(hub_home)
    for home in (tmp_path / "empty-home", tmp_path / "other-hub"):
        if home.name == "other-hub":
            other = hub.Hub(home=home, registry_url=f"sqlite:///{tmp_path / 'other.db'}")
            other.publish(weights(9), "other/model")
            other.close()
            other_files = snapshot(home)
        wrong = hub.Hub(home=home, registry_url=registry_url)
        with pytest.raises(hub.UnrelatedStoreError, match="holds none of the 2 version"):
            wrong.reindex()
        with pytest.raises(hub.UnrelatedStoreError):
            wrong.reindex(dry_run=True)
        with pytest.raises(hub.UnrelatedStoreError, match="gc` deletes nothing"):  # another hub's blobs look unreferenced
            wrong.gc(min_age_seconds=0)
        left = {path: data for path, data in (snapshot(home) if home.exists() else {}).items() if path != ".gc-lock"}
        assert left == ({p: d for p, d in other_files.items() if p != ".gc-lock"} if home.name == "other-hub" else {})
        wrong.close()
    assert state(hub_home) == before
    env_home = os.environ["HUB_HOME"]
    try:
        os.environ["HUB_HOME"] = str(tmp_path / "empty-home")
        refused = run_cli("reindex", check=False)
    finally:
        os.environ["HUB_HOME"] = env_home
    assert refused.returncode == 1 and "holds none of the 2 version(s)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert state(hub_home) == before
    hub.gc(min_age_seconds=0)
    assert [v.version for v in hub.list_versions("acme/m")] == [1, 2] and hub.verify().ok


def test_a_registry_that_lost_rows_keeps_its_numbers_and_reindex_brings_them_back(hub_home):
    """A registry restored from an old backup (or wrongly reindexed): the store still has acme/m:2 and :3.
    The next publish must not hand out 2 again (it used to, overwriting :2's pointer, so `acme/m:2` then
    loaded other weights); gc must not delete their pointers; reindex brings them back as they were."""
    for seed in (1, 2, 3):
        hub.publish(weights(seed), "acme/m")
    acknowledged = {v.version: v.digest for v in hub.list_versions("acme/m")}
    from sqlalchemy import text

    with hub.default_hub().db.engine.begin() as connection:
        connection.execute(text("DELETE FROM model_versions WHERE version > 1"))
    assert [v.version for v in hub.list_versions("acme/m")] == [1]
    assert any("the registry does not" in p for p in hub.verify().problems)
    hub.gc(min_age_seconds=0)
    assert all((hub_home / "refs" / "acme+m" / "versions" / str(n)).read_text() == acknowledged[n] for n in (2, 3))
    new = hub.publish(weights(4), "acme/m")
    assert new.version == 4
    report = hub.reindex()
    assert report.added == ("acme/m:2", "acme/m:3") and report.live == 4
    for number, digest in acknowledged.items():
        assert hub.info(f"acme/m:{number}").digest == digest
        assert torch.equal(hub.load_state_dict(f"acme/m:{number}")["w"], weights(number)["w"])
    assert hub.verify().ok and hub.verify().problems == ()


def test_alias_history_is_kept_in_the_store_and_a_rebuild_restores_it_exactly(hub_home, monkeypatch):
    for seed in (1, 2, 3):
        hub.publish(weights(seed), "acme/m")
    for user, version in (("alice", 1), ("bob", 2), ("carol", 3)):
        monkeypatch.setenv("HUB_USER", user)
        hub.set_alias("acme/m", "production", version)
        time.sleep(0.002)
    monkeypatch.setenv("HUB_USER", "dave")
    hub.set_alias("acme/m", "staging", 2)
    hub.delete_alias("acme/m", "staging")
    before = full_view()
    assert [c.changed_by for c in hub.alias_history("acme/m", "production")] == ["alice", "bob", "carol"]
    wipe_registry_rows()
    monkeypatch.setenv("HUB_USER", "whoever-reindexes")
    report = hub.reindex()
    assert report.history == 5
    assert full_view() == before
    assert hub.verify().ok and hub.verify(min_age_seconds=0).leftovers == ()
    again = hub.reindex()  # nothing left to do
    assert not again.changed and full_view() == before


def test_reindex_keeps_a_registry_version_the_store_has_no_pointer_for(hub_home):
    hub.publish(weights(1), "acme/m")
    hub.publish(weights(2), "acme/m")
    pointer = hub_home / "refs" / "acme+m" / "versions" / "2"
    digest = pointer.read_text()
    pointer.unlink()
    report = hub.reindex()
    assert report.kept == ("acme/m:2",) and report.dropped == ()
    assert hub.info("acme/m:2").digest == digest and pointer.read_text() == digest  # and its pointer is back
    pointer.unlink()
    forced = hub.reindex(force=True)  # the store wins: marked deleted, the number stays taken
    assert forced.dropped == ("acme/m:2",)
    assert [v.version for v in hub.list_versions("acme/m")] == [1]
    assert hub.publish(weights(3), "acme/m").version == 3


def test_reindex_deletes_what_the_store_marks_deleted_and_refuses_disagreements_without_force(hub_home, run_cli):
    hub.publish(weights(1), "acme/m", aliases=["production"])
    v2 = hub.publish(weights(2), "acme/m")
    hub.publish(weights(3), "other/m")
    versions = hub_home / "refs" / "acme+m" / "versions"
    (versions / "1").rename(versions / "1.deleted")  # the store saw acme/m:1 deleted (the registry missed it)
    dry = hub.reindex(dry_run=True)
    assert dry.deleted == ("acme/m:1",) and dry.dry_run
    assert [v.version for v in hub.list_versions("acme/m")] == [1, 2]  # a dry run changes nothing
    shown = run_cli("reindex", "--dry-run")
    assert "would delete acme/m:1" in shown.stdout
    assert hub.reindex().deleted == ("acme/m:1",)
    assert [v.version for v in hub.list_versions("acme/m")] == [2]
    assert "production" not in hub.list_models("acme/m")[0].aliases

    other_digest = hub.info("other/m:1").digest
    (versions / "2").write_text(other_digest)  # the store and the registry disagree about acme/m:2
    before = registry_dump()
    with pytest.raises(hub.ReindexRefusedError, match="disagree"):
        hub.reindex()
    refused = run_cli("reindex", check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert registry_dump() == before and hub.info("acme/m:2").digest == v2.digest
    assert any("names manifest" in p for p in hub.verify().problems)


def test_reindex_rebuilds_a_lost_registry_and_a_restored_registry_gets_back_what_it_missed(hub_home, registry_url):
    """Two homes of one hub: reindex of a fresh registry from the store gives the same versions, aliases
    and history; and the registry of an older backup gets the newer versions back without losing any."""
    hub.publish(weights(1), "acme/m", aliases=["production"], metrics={"accuracy": 0.5}, tags=["a"])
    backup = registry_dump()
    hub.publish(weights(2), "acme/m", aliases=["production"])
    hub.publish(weights(3), "acme/n")
    before = full_view()
    wipe_registry_rows("acme/m")
    hub.reindex()
    assert full_view() == before
    assert backup["model_versions"] != registry_dump()["model_versions"]


def test_reindex_moves_a_damaged_sqlite_registry_aside_and_rebuilds_it(hub_home, run_cli):
    if not is_sqlite():
        pytest.skip("a damaged SQLite file")
    hub.publish(weights(1), "acme/m", aliases=["production"])
    hub.publish(weights(2), "acme/m", aliases=["production"])
    before = full_view()
    hub.default_hub().close()
    database = hub_home / "registry.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    data = database.read_bytes()
    database.write_bytes(data[: len(data) // 3])  # truncated
    failed = run_cli("list", check=False)
    assert failed.returncode == 1 and "damaged" in failed.stderr and "hub reindex" in failed.stderr
    rebuilt = run_cli("reindex")
    assert "move the damaged registry aside" in rebuilt.stdout
    assert list(hub_home.glob("registry.db.damaged-*"))
    hub.default_hub().close()
    assert full_view() == before


def test_hub_gc_keeps_the_pointers_and_bytes_of_versions_the_registry_lacks(hub_home):
    """A registry that lost rows must not make gc destroy the versions: their pointers are evidence."""
    hub.publish(weights(1), "acme/m", aliases=["production"])
    hub.publish(weights(2), "acme/m")
    files = snapshot(hub_home)
    wipe_registry_rows()
    assert hub.gc(min_age_seconds=0).removed == ()
    assert snapshot(hub_home) == files
    assert len([p for p in hub.verify().problems if "but the registry does not" in p]) == 2  # named, for reindex
    assert hub.reindex().added == ("acme/m:1", "acme/m:2")
    assert hub.verify().ok and hub.info("acme/m@production").version == 1


def test_reindex_of_a_store_with_hostile_pointer_files_refuses_or_ignores_them(hub_home, tmp_path):
    """Pointer files are text anyone with write access to the store can put there: a pointer that is not
    a sha256 (a path out of the store) is refused by name, a history file that is not a move ends the history."""
    secret = tmp_path / "secret.json"
    secret.write_text('{"name": "acme/m", "version": 2}')
    hub.publish(weights(1), "acme/m", aliases=["production"])
    versions = hub_home / "refs" / "acme+m" / "versions"
    (versions / "2").write_text(f"../../../{secret.name}")
    history = hub_home / "refs" / "acme+m" / "history" / "production"
    (history / "2").write_text('{"from": "1; DROP TABLE", "to": 1, "by": "x", "at_ms": 1}')
    (history / "3").write_text('{"from": 1, "to": 1, "by": "x", "at_ms": 1}')
    before = registry_dump()
    with pytest.raises(hub.ReindexRefusedError, match="not a sha256"):
        hub.reindex()
    assert registry_dump() == before
    (versions / "2").unlink()
    assert not hub.reindex().changed  # the damaged history file ends what the store vouches for
    assert [(c.from_version, c.to_version) for c in hub.alias_history("acme/m", "production")] == [(None, 1)]
