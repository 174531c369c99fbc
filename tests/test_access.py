"""Identity and permissions (hub.access): users, tokens, namespaces, visibility, and the policy a
server calls, on real registry databases; the access commands through the CLI in subprocesses."""

from __future__ import annotations

import hashlib
import io
import json
import re
import time

import pytest
import torch

import hub
from conftest import is_sqlite
from hub.access import ANONYMOUS, Access, Principal, parse_expiry
from hub.errors import (
    AuthenticationError,
    InvalidArgumentError,
    ModelNotFoundError,
    NamespaceNotFoundError,
    PermissionDeniedError,
    SchemaOutdatedError,
    TokenNotFoundError,
    UserNotFoundError,
)

ACCESS_TABLES = ["hub_users", "api_tokens", "namespaces", "namespace_members", "model_visibility"]


@pytest.fixture
def access() -> Access:
    return Access(hub.default_hub().db)


def token_for(access: Access, user: str, scope: str, namespace: str | None = None) -> Principal:
    """A principal the real way: a token made, then authenticated."""
    token, _ = access.create_token(user, scope, namespace=namespace)
    return access.authenticate(f"Bearer {token}")


def access_rows() -> dict[str, list[str]]:
    db = hub.default_hub().db
    if db.schema_revision() is None:
        return {}
    return {table: sorted(map(repr, db.query(f"SELECT * FROM {table}"))) for table in ACCESS_TABLES}


def publish(name: str, value: float = 0.0, **fields) -> hub.ModelVersion:
    return hub.publish({"w": torch.full((4,), value)}, name, **fields)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``hub ARGS`` in this process (``hub.cli.main``, what ``python -m hub`` runs): (exit status, stdout, stderr)."""
    from hub.cli import main

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as exit:  # usage errors: argparse exits 2
            status = exit.code
        out, err = capsys.readouterr()
        return status, out, err

    return run


def set_column(table: str, column: str, value, key: str, key_value) -> None:
    from sqlalchemy import text

    with hub.default_hub().db.writing() as connection:
        connection.execute(text(f"UPDATE {table} SET {column} = :value WHERE {key} = :key"), {"value": value, "key": key_value})


# --- tokens through the CLI ---------------------------------------------------------


def test_cli_token_shown_once_stored_as_hash_listed_and_revoked(run_cli, access, hub_home):
    result = run_cli("token", "create", "--user", "alice", "--scope", "write", "--namespace", "acme", "--expires", "30d")
    token = result.stdout.strip()
    assert token.startswith("mh_") and len(result.stdout.splitlines()) == 1
    token_id, secret = token.split("_", 2)[1:]
    assert len(secret) >= 43 and "shown this once" in result.stderr and secret not in result.stderr
    rows = hub.default_hub().db.query("SELECT * FROM api_tokens")
    assert len(rows) == 1 and secret not in repr(rows) and hashlib.sha256(secret.encode()).hexdigest() in repr(rows)
    assert [u.name for u in access.list_users()] == ["alice"]  # made for the token

    principal = access.authenticate(f"Bearer {token}")
    assert principal == Principal("alice", "write", "acme", token_id)
    listed = json.loads(run_cli("token", "list", "--json").stdout)
    assert [t["id"] for t in listed] == [token_id] and secret not in json.dumps(listed)
    assert listed[0]["scope"] == "write" and listed[0]["namespace"] == "acme" and listed[0]["last_used_at"] is not None
    assert 29.9 < (access.get_token(token_id).expires_at.timestamp() - time.time()) / 86400 <= 30

    assert "revoked" in run_cli("token", "revoke", token_id).stdout
    with pytest.raises(AuthenticationError, match="was revoked") as caught:  # another process revoked it: in effect at once
        access.authenticate(f"Bearer {token}")
    assert secret not in str(caught.value)
    assert access.get_token(token_id).revoked_at is not None
    if is_sqlite():  # the files themselves (read after closing: a file closed in a process drops SQLite's locks in it)
        hub.default_hub().close()
        for path in hub_home.glob("registry.db*"):
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("args, exit_code, words", [
    (["token", "create", "--user", "alice", "--scope", "owner"], 2, "invalid choice: 'owner'"),
    (["token", "create", "--user", "alice", "--scope", "read", "--expires", "soon"], 1, "expiry 'soon' is not a duration"),
    (["token", "create", "--user", "alice", "--scope", "read", "--expires", "0d"], 1, "is not a duration"),
    (["token", "create", "--user", "Alice!", "--scope", "read"], 1, "user name 'Alice!' is not a valid name"),
    (["token", "create", "--user", "alice", "--scope", "read", "--namespace", "a/b"], 1, "namespace 'a/b' is not a valid name"),
    (["token", "revoke", "0123456789abcdef"], 1, "there is no token with id '0123456789abcdef'"),
    (["token", "revoke", "nonsense"], 1, "is no token id"),
    (["namespace", "create", "acme", "--owner", "nobody"], 1, "there is no user 'nobody'"),
    (["namespace", "set", "acme", "--public"], 1, "namespace 'acme' has no record"),
    (["visibility", "acme/x", "secret"], 2, "invalid choice: 'secret'"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(cli, access, args, exit_code, words):
    access.create_user("bob")  # a registry that is there, so a refusal is about the input
    before = access_rows()
    status, out, err = cli(*args)
    assert status == exit_code, err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == "" and access_rows() == before


def test_cli_users_namespaces_and_visibility(cli, access, monkeypatch):
    assert cli("user", "create", "bob")[0] == 0
    result = subprocess_run_with_stdin(["user", "create", "carol", "--password-stdin", "--admin"], "s3cret\n")
    assert result.returncode == 0, result.stderr
    assert access.login("carol", "s3cret") == Principal("carol", "admin", None, None)
    assert cli("user", "password", "bob", "--password-stdin", stdin="other\n")[0] == 0
    assert access.login("bob", "other").user == "bob"
    users = json.loads(cli("user", "list", "--json")[1])
    assert [(u["name"], u["admin"], u["has_password"]) for u in users] == [("bob", False, True), ("carol", True, True)]
    assert "namespace acme (public) owners: bob" in cli("namespace", "create", "acme", "--owner", "bob", "--public")[1]
    assert cli("namespace", "set", "acme", "--add-writer", "carol", "--private")[0] == 0
    [record] = json.loads(cli("namespace", "list", "--json")[1])
    assert record["owners"] == ["bob"] and record["writers"] == ["carol"] and record["visibility"] == "private"
    status, _, err = cli("namespace", "set", "acme", "--remove-owner", "bob")
    assert status == 1 and "without an owner" in err
    publish("acme/x")
    assert cli("visibility", "acme/x", "public")[1] == "model acme/x is public\n"
    assert cli("visibility", "acme", "public")[1] == "namespace acme is public\n"
    assert access.can_read(ANONYMOUS, "acme/x")
    assert cli("namespace", "list")[1].splitlines()[1].split() == ["acme", "public", "bob", "carol", "-"]
    monkeypatch.setenv("HUB_ENDPOINT", "http://127.0.0.1:9")  # a remote hub: these manage the local one, so refused
    status, _, err = cli("token", "list")
    assert status == 1 and "managed on the hub server's machine" in err


def subprocess_run_with_stdin(args: list[str], stdin: str):
    import subprocess
    import sys

    from conftest import ROOT

    return subprocess.run([sys.executable, "-m", "hub", *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT)


# --- authentication -----------------------------------------------------------------


def test_authenticate_anonymous_malformed_unknown_expired(access):
    assert access.authenticate(None) is ANONYMOUS and access.authenticate("") is ANONYMOUS
    token, info = access.create_token("alice", "read", expires="12h")
    token_id, secret = token.split("_", 2)[1:]
    wrong_secret = f"mh_{token_id}_{'A' * 43}"
    unknown_id = f"mh_{'0' * 16}_{secret}"
    for header, words in [
        (f"Basic {token}", "must be 'Bearer <token>'"),
        ("Bearer ", "must be 'Bearer <token>'"),
        ("Bearer not-a-token", "malformed"),
        (f"Bearer {token}x!", "malformed"),
        (f"Bearer {wrong_secret}", "is not known to this hub"),
        (f"Bearer {unknown_id}", "is not known to this hub"),
    ]:
        with pytest.raises(AuthenticationError, match=words) as caught:
            access.authenticate(header)
        assert secret not in str(caught.value) and "hub token create" in str(caught.value)
    assert access.authenticate(f"bearer  {token} ").user == "alice"
    set_column("api_tokens", "expires_at_ms", int(time.time() * 1000) - 1, "id", token_id)
    with pytest.raises(AuthenticationError, match="expired") as caught:
        access.authenticate(f"Bearer {token}")
    assert secret not in str(caught.value)
    never, _ = access.create_token("alice", "read", expires="never")
    assert access.get_token(never.split("_")[1]).expires_at is None
    assert parse_expiry("90m") == 90 * 60_000 and parse_expiry("12h") == 12 * 3_600_000 and parse_expiry(None) == 90 * 86_400_000
    for bad in ("30", "d", "-1d", "1.5d", "1w"):
        with pytest.raises(InvalidArgumentError):
            parse_expiry(bad)


def test_last_used_is_written_at_most_once_a_minute(access):
    token, info = access.create_token("alice", "read")
    assert info.last_used_at is None
    access.authenticate(f"Bearer {token}")
    first = access.get_token(info.id).last_used_at
    assert first is not None
    access.authenticate(f"Bearer {token}")
    assert access.get_token(info.id).last_used_at == first
    stale = int(time.time() * 1000) - 61_000
    set_column("api_tokens", "last_used_at_ms", stale, "id", info.id)
    Access(hub.default_hub().db).authenticate(f"Bearer {token}")  # another process's Access: by the database's value
    assert access.get_token(info.id).last_used_at.timestamp() > stale / 1000 + 30


def test_authenticate_and_require_read_cost_well_under_a_millisecond(access):
    publish("acme/x")
    access.create_user("bob")
    access.create_namespace("acme", owners=["bob"], visibility="private")
    token, _ = access.create_token("bob", "read")
    header = f"Bearer {token}"
    access.require_read(access.authenticate(header), "acme/x")  # warm
    runs = 300
    start = time.perf_counter()
    for _ in range(runs):
        access.require_read(access.authenticate(header), "acme/x")
    each_ms = (time.perf_counter() - start) / runs * 1000
    assert each_ms < (1.0 if is_sqlite() else 5.0), f"{each_ms:.3f} ms"


def test_login_with_password(access):
    access.create_user("alice", password="correct horse")
    access.create_user("root", password="pw", admin=True)
    access.create_user("tokens-only")
    assert access.login("alice", "correct horse") == Principal("alice", "write", None, None)
    assert access.login("root", "pw").scope == "admin"
    stored = hub.default_hub().db.query("SELECT password_hash FROM hub_users WHERE name = 'alice'")[0][0]
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    messages = set()
    for user, password in [("alice", "wrong"), ("alice", ""), ("nobody", "correct horse"), ("tokens-only", "x")]:
        with pytest.raises(AuthenticationError) as caught:
            access.login(user, password)
        messages.add(str(caught.value))
    assert len(messages) == 1  # which users exist does not show
    access.set_password("alice", "new one")
    assert access.login("alice", "new one").user == "alice"
    with pytest.raises(InvalidArgumentError, match="exists already"):
        access.create_user("alice")
    with pytest.raises(UserNotFoundError):
        access.set_password("nobody", "x")


# --- writing ------------------------------------------------------------------------


def test_scopes_and_namespace_restriction(access):
    access.create_user("alice")
    access.create_namespace("acme", owners=["alice"])
    access.create_namespace("other", owners=["alice"])
    with pytest.raises(AuthenticationError, match="needs a token with write scope"):
        access.require_write(ANONYMOUS, "acme/x")
    with pytest.raises(PermissionDeniedError, match="has read scope.*needs write scope"):
        access.require_write(token_for(access, "alice", "read"), "acme/x")
    writer = token_for(access, "alice", "write", namespace="acme")
    access.require_write(writer, "acme/x")
    with pytest.raises(PermissionDeniedError, match="restricted to namespace 'acme'"):
        access.require_write(writer, "other/x")
    with pytest.raises(PermissionDeniedError, match="restricted to namespace 'acme'"):
        access.require_write(writer, "toplevel")
    unrestricted = token_for(access, "alice", "write")
    access.require_write(unrestricted, "other/x")
    with pytest.raises(PermissionDeniedError, match="belongs to the hub and only admins write it"):
        access.require_write(unrestricted, "toplevel")

    admin = token_for(access, "root", "admin")
    access.require_write(admin, "toplevel")
    access.require_write(admin, "someone-elses/x")
    access.require_admin(admin)
    ns_admin = token_for(access, "root", "admin", namespace="acme")
    access.require_write(ns_admin, "acme/x")  # within its namespace, without being a member
    access.require_admin(ns_admin, "acme")
    with pytest.raises(PermissionDeniedError, match="restricted to namespace 'acme'"):
        access.require_write(ns_admin, "other/x")
    with pytest.raises(PermissionDeniedError, match="over the whole hub"):
        access.require_admin(ns_admin)
    with pytest.raises(PermissionDeniedError, match="needs admin scope"):
        access.require_admin(unrestricted)
    with pytest.raises(AuthenticationError):
        access.require_admin(ANONYMOUS)


def test_owners_writers_and_readers(access):
    for user in ("bob", "carol", "dave", "erin"):
        access.create_user(user)
    access.create_namespace("acme", owners=["bob"], writers=["carol"], readers=["erin"])
    publish("acme/secret")
    bob, carol, dave, erin = (token_for(access, user, "write") for user in ("bob", "carol", "dave", "erin"))
    access.require_write(bob, "acme/secret")
    access.require_write(carol, "acme/new")
    for outsider in (dave, erin):
        with pytest.raises(PermissionDeniedError, match="is not an owner or writer of namespace 'acme'.*--add-writer"):
            access.require_write(outsider, "acme/secret")
    assert [access.can_read(p, "acme/secret") for p in (bob, carol, dave, erin, ANONYMOUS)] == [True, True, False, True, False]
    access.update_namespace("acme", add_writers=["dave"], remove_readers=["erin"])
    access.require_write(dave, "acme/secret")
    assert not access.can_read(erin, "acme/secret")
    namespace = access.get_namespace("acme")
    assert (namespace.owners, namespace.writers, namespace.readers) == (("bob",), ("carol", "dave"), ())
    with pytest.raises(InvalidArgumentError, match="no writer"):
        access.update_namespace("acme", remove_writers=["bob"])
    with pytest.raises(NamespaceNotFoundError):
        access.get_namespace("nope")


def test_a_write_token_claims_a_new_namespace(access, monkeypatch):
    alice, bob = token_for(access, "alice", "write"), token_for(access, "bob", "write")
    access.require_write(alice, "fresh/model")
    claimed = access.get_namespace("fresh")
    assert claimed.owners == ("alice",) and claimed.visibility == "private"  # HUB_DEFAULT_VISIBILITY's default
    with pytest.raises(PermissionDeniedError, match="not an owner or writer"):
        access.require_write(bob, "fresh/other")
    monkeypatch.setenv("HUB_DEFAULT_VISIBILITY", "public")
    access.require_write(bob, "bobs/model")
    assert access.get_namespace("bobs").visibility == "public"
    with pytest.raises(PermissionDeniedError):  # a read token claims nothing
        access.require_write(token_for(access, "carol", "read"), "carols/model")
    assert [n.name for n in access.list_namespaces()] == ["bobs", "fresh"]


def test_a_namespace_with_models_but_no_record_is_for_admins(access):
    publish("legacy/model")
    alice = token_for(access, "alice", "write")
    with pytest.raises(PermissionDeniedError, match="has models but no owners on record.*namespace create legacy"):
        access.require_write(alice, "legacy/another")
    assert access.list_namespaces() == []
    access.require_write(token_for(access, "root", "admin"), "legacy/another")
    access.create_namespace("legacy", owners=["alice"])
    access.require_write(alice, "legacy/another")


# --- reading ------------------------------------------------------------------------


def test_private_models_read_as_missing_and_public_ones_anonymously(access):
    access.create_user("bob")
    access.create_namespace("acme", owners=["bob"], visibility="private")
    access.create_namespace("open", owners=["bob"], visibility="public")
    publish("acme/secret-model")
    publish("acme/shown", 1.0)
    publish("open/model", 2.0)
    publish("open/hidden", 3.0)
    access.set_visibility("acme/shown", "public")
    access.set_visibility("open/hidden", "private")
    bob = token_for(access, "bob", "read")
    stranger = token_for(access, "eve", "admin", namespace="elsewhere")

    access.require_read(ANONYMOUS, "open/model")
    access.require_read(ANONYMOUS, "acme/shown")  # the model's own visibility wins
    for name in ("acme/secret-model", "open/hidden"):
        access.require_read(bob, name)
        for principal in (ANONYMOUS, stranger, token_for(access, "eve", "write")):
            with pytest.raises(ModelNotFoundError) as caught:
                access.require_read(principal, name)
            with pytest.raises(ModelNotFoundError) as missing:
                hub.info("q9q9/x7x7x7")  # the registry's own words for a model that is not there (and like none)
            words, form = str(caught.value), str(missing.value).replace("q9q9/x7x7x7", name)
            hint = re.search(r" \(did you mean '([^']+)'\?\)", words)  # a close name, of a model it may read
            assert words == (form.replace(hint[0], "") if hint else form) or (hint and words.replace(hint[0], "") == form)
            assert hint is None or access.can_read(principal, hint[1])
    with pytest.raises(ModelNotFoundError) as caught:  # the hint names no private model ...
        access.require_read(ANONYMOUS, "acme/secret-modle")
    assert "secret-model" not in str(caught.value).replace("secret-modle", "")
    assert "did you mean 'acme/secret-model'" in str(access.not_found(bob, "acme/secret-modle"))  # ... to those who can't read it
    assert access.can_read(token_for(access, "root", "admin"), "acme/secret-model")
    assert not access.can_read(ANONYMOUS, "toplevel") and access.can_read(token_for(access, "root", "admin"), "toplevel")


def test_read_filter_pages_and_totals_count_only_readable_models(access):
    access.create_user("bob")
    access.create_namespace("pub", owners=["bob"], visibility="public")
    access.create_namespace("priv", owners=["bob"], visibility="private")
    names = []
    for i in range(6):
        for namespace in ("pub", "priv"):
            name = f"{namespace}/m{i:02d}"
            publish(name, float(i), task="classify" if namespace == "pub" else "secret-task",
                    tags=[f"tag-{namespace}"])
            names.append(name)
    publish("unrecorded/m", 9.0)  # no record: the default (private)
    access.set_visibility("priv/m03", "public")
    registry = hub.default_hub().registry
    expected = {
        ANONYMOUS: sorted([n for n in names if n.startswith("pub/")] + ["priv/m03"]),
        token_for(access, "bob", "read"): sorted(names),
        token_for(access, "bob", "read", namespace="pub"): sorted([n for n in names if n.startswith("pub/")] + ["priv/m03"]),
        token_for(access, "root", "admin"): sorted(names + ["unrecorded/m"]),
    }
    for principal, readable in expected.items():
        rf = access.read_filter(principal)
        assert (rf is None) == (principal.scope == "admin")
        assert registry.count_models(readable=rf) == len(readable)
        pages = [registry.list_models(readable=rf, limit=5, offset=offset) for offset in range(0, 20, 5)]
        assert [m.name for page in pages for m in page] == readable
        assert [len(page) for page in pages] == [min(5, max(0, len(readable) - offset)) for offset in range(0, 20, 5)]
        assert [m.name for m in registry.list_models("m0", readable=rf, sort="updated", limit=None)] == \
            [m.name for m in registry.list_models("m0", sort="updated", limit=None) if m.name in readable]
        assert registry.count_models(task="secret-task", readable=rf) == sum(n.startswith("priv/") for n in readable)
    facets = registry.model_facets(readable=access.read_filter(ANONYMOUS))
    assert facets["tag"] == ["tag-priv", "tag-pub"] and facets["task"] == ["classify", "secret-task"]  # priv/m03 is public
    access.set_visibility("priv/m03", "private")
    facets = registry.model_facets(readable=access.read_filter(ANONYMOUS))
    assert facets["tag"] == ["tag-pub"] and facets["task"] == ["classify"]
    assert registry.model_facets() == registry.model_facets(readable=None)
    assert "secret-task" in registry.model_facets()["task"]


def test_can_read_blob_follows_the_live_versions_that_name_it(access):
    access.create_user("bob")
    access.create_namespace("pub", owners=["bob"], visibility="public")
    access.create_namespace("priv", owners=["bob"], visibility="private")
    shared = {"w": torch.arange(8.0)}
    public, private = hub.publish(shared, "pub/a"), hub.publish(shared, "priv/b")
    [shared_sha] = {f.sha256 for f in public.files} & {f.sha256 for f in private.files}  # one blob, two models
    secret = hub.publish({"w": torch.ones(3)}, "priv/c")
    [secret_sha] = {f.sha256 for f in secret.files}
    bob, admin, stranger = token_for(access, "bob", "read"), token_for(access, "root", "admin"), token_for(access, "eve", "read")
    for principal in (ANONYMOUS, stranger, bob, admin):
        assert access.can_read_blob(principal, shared_sha)  # through the public model
        assert access.can_read_blob(principal, public.digest)  # a manifest blob
        mine = principal in (bob, admin)
        assert access.can_read_blob(principal, secret_sha) == mine and access.can_read_blob(principal, private.digest) == mine
    gone = hub.publish({"w": torch.full((5,), 7.0)}, "pub/a")
    [gone_sha] = {f.sha256 for f in gone.files}
    assert access.can_read_blob(ANONYMOUS, gone_sha) and access.can_read_blob(ANONYMOUS, gone.digest)
    hub.delete_version(gone.ref)
    for sha in (gone_sha, gone.digest):  # a deleted version's blobs: no one's, until gc
        assert not access.can_read_blob(ANONYMOUS, sha) and not access.can_read_blob(admin, sha)
    hub.delete_version(public.ref)  # the shared blob is now only the private model's
    assert not access.can_read_blob(ANONYMOUS, shared_sha) and access.can_read_blob(bob, shared_sha)
    assert not access.can_read_blob(admin, "0" * 64)


def test_set_visibility_of_models_and_namespaces(access):
    access.create_user("bob")
    publish("both/x")
    publish("both")
    with pytest.raises(InvalidArgumentError, match="neither a model nor a namespace"):
        access.set_visibility("nothing", "public")
    with pytest.raises(InvalidArgumentError, match="both a model and a namespace"):
        access.set_visibility("both", "public")
    assert access.set_visibility("both", "public", kind="model") == "model"
    assert access.can_read(ANONYMOUS, "both") and not access.can_read(ANONYMOUS, "both/x")
    with pytest.raises(NamespaceNotFoundError, match="namespace create both"):
        access.set_visibility("both", "public", kind="namespace")
    access.create_namespace("both", owners=["bob"])
    assert access.set_visibility("both", "public", kind="namespace") == "namespace"
    assert access.can_read(ANONYMOUS, "both/x")
    assert access.set_visibility("later/model", "public") == "model"  # a model not published yet
    with pytest.raises(InvalidArgumentError, match="not one of public, private"):
        access.set_visibility("both/x", "hidden")


def test_token_records(access):
    token, info = access.create_token("alice", "admin", namespace="acme", expires="90m")
    assert access.get_token(token) == info  # by the whole token too: its id
    assert [t.id for t in access.list_tokens("alice")] == [info.id] and access.list_tokens("bob") == []
    with pytest.raises(TokenNotFoundError):
        access.revoke_token("f" * 16)
    assert access.revoke_token(info.id).revoked_at is not None
    with pytest.raises(InvalidArgumentError, match="scope 'root' is not one of read, write, admin"):
        access.create_token("alice", "root")
    assert len(access.list_tokens()) == 1


def test_a_registry_from_before_upgrades_to_the_access_tables(access):
    from alembic import command

    from hub.registry import SCHEMA_HEAD
    from hub.registry.migrate import alembic_config

    publish("acme/x")
    db = hub.default_hub().db
    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0002_finetune_jobs")
    stale = Access(hub.Hub().db)
    with pytest.raises(SchemaOutdatedError, match="hub db upgrade"):
        stale.authenticate(f"Bearer mh_{'0' * 16}_{'A' * 43}")
    hub.default_hub().db.upgrade()
    fresh = Access(hub.Hub().db)
    assert fresh.db.schema_revision() == SCHEMA_HEAD
    assert fresh.authenticate(f"Bearer {fresh.create_token('alice', 'read')[0]}").user == "alice"
    assert [m.name for m in hub.Hub().list_models()] == ["acme/x"]


@pytest.mark.parametrize("default", ["private", "public"])
def test_read_filter_lists_exactly_what_can_read_allows(access, monkeypatch, default):
    monkeypatch.setenv("HUB_DEFAULT_VISIBILITY", default)
    for user in ("bob", "carol"):
        access.create_user(user)
    access.create_namespace("pub", owners=["bob"], visibility="public")
    access.create_namespace("priv", owners=["bob"], readers=["carol"], visibility="private")
    access.create_namespace("dark_", owners=["carol"], visibility="private")  # '_' is no wildcard here
    names = ["pub/a", "pub/b", "priv/a", "priv/b", "dark_/a", "darkx/a", "loose/a", "top", "top2"]
    for i, name in enumerate(names):
        publish(name, float(i))
    access.set_visibility("pub/b", "private")
    access.set_visibility("priv/b", "public")
    access.set_visibility("top2", "public", kind="model")
    principals = [ANONYMOUS, token_for(access, "bob", "read"), token_for(access, "carol", "write"),
                  token_for(access, "carol", "read", namespace="dark_"), token_for(access, "eve", "read"),
                  token_for(access, "root", "admin", namespace="loose"), token_for(access, "root", "admin")]
    registry = hub.default_hub().registry
    for principal in principals:
        allowed = sorted(name for name in names if access.can_read(principal, name))
        for snapshot in (True, False):  # the IN lists, and the per-model lookups
            readable = access.read_filter(principal, snapshot=snapshot)
            assert [m.name for m in registry.list_models(readable=readable, limit=None)] == allowed, (principal, snapshot)
            assert registry.count_models(readable=readable) == len(allowed)
    assert sorted(n for n in names if access.can_read(ANONYMOUS, n)) == sorted(
        ["pub/a", "priv/b", "top2"] + (["darkx/a", "loose/a", "top"] if default == "public" else []))
