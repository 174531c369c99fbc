"""Who may do what on a hub server: users, API tokens, namespaces, visibility, and the policy.

Everything lives in the registry database, so several stateless ``hub serve`` processes share it,
and nothing that a revocation must end is cached: every :meth:`Access.authenticate` reads the token's
row (one primary-key lookup), so ``hub token revoke`` takes effect on the next request of every process.

The rules:

- A model ``namespace/model`` belongs to its namespace; a single-part name (``model``) belongs to the
  hub, and only admins write it.
- A model is public (anyone, with or without a token, reads it) or private. Its own visibility
  (``hub visibility NAME``) overrides its namespace's; a namespace without a record, and a hub-level
  model without its own, has ``hub.settings.default_visibility()`` (``$HUB_DEFAULT_VISIBILITY``).
- A private model is read by its namespace's owners, writers and readers, and by admins. To everyone
  else it does not exist: :meth:`Access.require_read` raises the same :class:`ModelNotFoundError` a
  missing model gets.
- A token has a scope: ``read`` (reads), ``write`` (reads, and writes where its user is an owner or
  writer) or ``admin`` (everything); one made with ``--namespace`` acts only inside that namespace
  (it still reads public models elsewhere).
- A write token may publish into a namespace that has no record and no models yet: that claims it
  (its user becomes the owner). A namespace with models but no record is written by admins only
  (``hub namespace create NAME --owner USER`` gives it owners).

Tokens are ``mh_<id>_<secret>``: the id is public (``hub token list``, ``hub token revoke ID``); only the
sha256 of the secret is stored. Passwords (web UI sign-in) are kept as scrypt hashes with a random salt.
Local use of a hub (the Python API and CLI on a ``HUB_HOME``) needs none of this: whoever can read the
files has full access. Only a server calls :class:`Access`.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.entities import from_millis
from hub.errors import (
    AuthenticationError,
    InvalidArgumentError,
    ModelNotFoundError,
    NamespaceNotFoundError,
    PermissionDeniedError,
    TokenNotFoundError,
    UserNotFoundError,
)
from hub.reference import MAX_PART_LENGTH, NAME_PART
from hub.registry.database import Database
from hub.registry.store import model_not_found

__all__ = [
    "Access",
    "Throttle",
    "is_loopback",
    "open_to_network",
    "Principal",
    "ANONYMOUS",
    "ReadFilter",
    "User",
    "TokenInfo",
    "NamespaceInfo",
    "SCOPES",
    "VISIBILITIES",
    "DEFAULT_EXPIRY",
    "parse_expiry",
    "parse_token",
]

SCOPES = ("read", "write", "admin")
VISIBILITIES = ("public", "private")
ROLES = ("owner", "writer", "reader")
DEFAULT_EXPIRY = "90d"
TOKEN_PREFIX = "mh"
SNAPSHOT_LIMIT = 500  # a read filter carries at most this many namespace (and model) visibility records as IN lists
LAST_USED_EVERY_MS = 60_000  # last_used is written at most once a minute per token
_TOKEN = re.compile(r"mh_([0-9a-f]{16})_([A-Za-z0-9_-]{43,128})", re.ASCII)
_TOKEN_ID = re.compile(r"[0-9a-f]{16}", re.ASCII)
_EXPIRY = re.compile(r"([1-9][0-9]{0,5})([dhm])", re.ASCII)
_EXPIRY_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000}
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_DUMMY_HASH = ""  # set on first use: a hash to check against when the user does not exist (same time taken)
_NEW_TOKEN = "`hub token create --user NAME --scope read|write|admin` on the hub's machine"


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token's user, scope and namespace restriction; all None for anonymous callers."""

    user: str | None  # None: anonymous
    scope: str | None  # "read" | "write" | "admin"; None: anonymous
    namespace: str | None  # the token is restricted to this namespace
    token_id: str | None


ANONYMOUS = Principal(None, None, None, None)


@dataclass(frozen=True)
class ReadFilter:
    """Which models a principal may read, as SQL over a model-name column (for ``list_models(readable=...)``).

    A model is readable when its visibility (its own, else its namespace's, else ``default``) is
    public, or its namespace is one of ``namespaces`` (where the principal reads private models too).

    Where the visibility records are few, :meth:`Access.read_filter` takes a snapshot of them
    (``public_namespaces`` ... ``private_models``, made for one request), and the condition is a few
    ``IN`` lists, several times cheaper over thousands of models than looking each model's records up.
    """

    namespaces: frozenset[str]
    default: str  # visibility of a model with neither its own nor a namespace record
    public_namespaces: frozenset[str] | None = None  # the snapshot: recorded public namespaces ...
    private_namespaces: frozenset[str] | None = None  # ... recorded private ones
    public_models: frozenset[str] | None = None  # ... models made public
    private_models: frozenset[str] | None = None  # ... models made private

    def where(self, column: str, dialect: str) -> tuple[str, dict[str, Any]]:
        """A SQL condition true for readable models, with its ``:name`` parameters (``rf_*``).

        Args:
            column: the SQL expression of the model's name (``m.name``).
            dialect: ``"sqlite"`` or ``"postgresql"`` (how the namespace is cut from the name).
        """
        namespace = _namespace_sql(column, dialect)
        params: dict[str, Any] = {}

        def listed(names: Iterable[str], key: str) -> str:
            names = sorted(names)
            params.update({f"rf_{key}{i}": name for i, name in enumerate(names)})
            return ", ".join(f":rf_{key}{i}" for i in range(len(names)))

        if self.public_namespaces is None:  # each model's records looked up
            params["rf_default"] = self.default
            condition = (f"COALESCE((SELECT rf_v.visibility FROM model_visibility rf_v WHERE rf_v.name = {column}), "
                         f"(SELECT rf_n.visibility FROM namespaces rf_n WHERE rf_n.name = {namespace}), :rf_default) = 'public'")
            if self.namespaces:
                condition = f"({condition} OR {namespace} IN ({listed(self.namespaces, 'ns')}))"
            return condition, params
        assert self.private_namespaces is not None and self.public_models is not None and self.private_models is not None
        if self.default == "public":  # every namespace but the private ones this principal can't read
            hidden = self.private_namespaces - self.namespaces
            by_namespace = f"COALESCE({namespace}, '') NOT IN ({listed(hidden, 'hn')})" if hidden else "1 = 1"
        else:  # the public namespaces and the principal's own
            shown = self.public_namespaces | self.namespaces
            by_namespace = f"{namespace} IN ({listed(shown, 'sn')})" if shown else "1 = 0"
        hidden_models = {name for name in self.private_models if _namespace_of(name) not in self.namespaces}
        if hidden_models:
            by_namespace = f"{by_namespace} AND {column} NOT IN ({listed(hidden_models, 'hm')})"
        if self.public_models:
            return f"({column} IN ({listed(self.public_models, 'sm')}) OR ({by_namespace}))", params
        return f"({by_namespace})", params


@dataclass(frozen=True)
class User:
    """A hub user (``has_password``: may sign in to the web UI with a password)."""

    name: str
    is_admin: bool
    has_password: bool
    created_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    """An API token's record: never its secret, nor the secret's hash."""

    id: str
    user: str
    scope: str
    namespace: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in self.__dict__.items()}


@dataclass(frozen=True)
class NamespaceInfo:
    """A namespace's record: visibility and members by role."""

    name: str
    visibility: str
    owners: tuple[str, ...]
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "visibility": self.visibility, "owners": list(self.owners),
                "writers": list(self.writers), "readers": list(self.readers), "created_at": self.created_at.isoformat()}


# --- parsing -------------------------------------------------------------------


def _check_part(value: object, what: str) -> str:
    """``value`` if it is one name part (like a namespace: ``[a-z0-9][a-z0-9._-]*``, at most 64 characters)."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"the {what} is empty; give a name of lowercase letters, digits, '.', '_', '-'")
    if len(value) > MAX_PART_LENGTH or not NAME_PART.fullmatch(value):
        raise InvalidArgumentError(
            f"{what} {value!r} is not a valid name: use lowercase letters, digits, '.', '_', '-', starting with a "
            f"letter or digit, at most {MAX_PART_LENGTH} characters"
        )
    return value


def _check_choice(value: object, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise InvalidArgumentError(f"{what} {value!r} is not one of {', '.join(choices)}")
    return value  # type: ignore[return-value]


def _namespace_of(name: str) -> str | None:
    namespace, slash, _ = name.partition("/")
    return namespace if slash else None


def _namespace_sql(column: str, dialect: str) -> str:
    """SQL for the namespace part of a model name (NULL for a single-part name)."""
    if dialect == "postgresql":
        return f"NULLIF(SPLIT_PART({column}, '/', 1), {column})"
    return f"(CASE WHEN INSTR({column}, '/') > 0 THEN SUBSTR({column}, 1, INSTR({column}, '/') - 1) END)"


def parse_expiry(text: str | None) -> int | None:
    """How long a token lives, in milliseconds: ``30d``, ``12h``, ``90m``; None for ``never``.

    Raises:
        InvalidArgumentError: anything else.
    """
    if text is not None and not isinstance(text, str):
        raise InvalidArgumentError(f"expiry {text!r} is not a duration: use e.g. 30d (days), 12h (hours), 90m (minutes) or never")
    value = DEFAULT_EXPIRY if text is None else text.strip().lower()
    if value == "never":
        return None
    match = _EXPIRY.fullmatch(value)
    if match is None:
        raise InvalidArgumentError(f"expiry {text!r} is not a duration: use e.g. 30d (days), 12h (hours), 90m (minutes) or never")
    return int(match[1]) * _EXPIRY_UNIT_MS[match[2]]


def parse_token(token: str) -> tuple[str, str]:
    """The ``(id, secret)`` of a token ``mh_<id>_<secret>``.

    Raises:
        AuthenticationError: it is not of that form (the message never repeats it).
    """
    match = _TOKEN.fullmatch(token.strip()) if isinstance(token, str) else None
    if match is None:
        raise AuthenticationError(f"the bearer token is malformed (a modelhub token is mh_<id>_<secret>); "
                                  f"copy it whole, or create one with {_NEW_TOKEN}")
    return match[1], match[2]


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def _check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.urlsafe_b64decode(salt), dklen=len(expected),
                                n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return kind == "scrypt" and hmac.compare_digest(actual, expected)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else from_millis(ms)


# --- the policy and its records --------------------------------------------------


class Access:
    """Users, tokens, namespaces and visibility in one registry database, and the policy over them.

    Args:
        db: the registry :class:`hub.registry.Database` (``hub.default_hub().db``); its schema is created
            or checked on first use.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._last_used: dict[str, int] = {}  # token id -> when this process last wrote its last_used
        self._lock = threading.Lock()

    def _query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        self.db.ensure_schema()
        return self.db.query(sql, params)

    def _write(self, statements: Iterable[tuple[str, dict[str, Any]]]) -> None:
        from sqlalchemy import text

        with self.db.writing() as connection:
            for sql, params in statements:
                connection.execute(text(sql), params)

    # --- who is asking -------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value: ``Bearer <token>``; None or empty: anonymous.

        Raises:
            AuthenticationError: not a bearer token, malformed, unknown, expired or revoked (the message
                says which and what to do, never the token).
        """
        if not authorization or not authorization.strip():
            return ANONYMOUS
        kind, _, token = authorization.strip().partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise AuthenticationError(f"the Authorization header must be 'Bearer <token>'; create a token with {_NEW_TOKEN}")
        token_id, secret = parse_token(token)
        rows = self._query(
            "SELECT user_name, scope, namespace, secret_sha256, expires_at_ms, revoked_at_ms, last_used_at_ms "
            "FROM api_tokens WHERE id = :id", {"id": token_id},
        )
        if not rows or not hmac.compare_digest(rows[0][3], _secret_hash(secret)):
            raise AuthenticationError(f"the token {TOKEN_PREFIX}_{token_id}_... is not known to this hub; create one with {_NEW_TOKEN}")
        user, scope, namespace, _, expires, revoked, last_used = rows[0]
        now = _now_ms()
        if revoked is not None:
            raise AuthenticationError(f"the token {token_id} was revoked; create a new one with {_NEW_TOKEN}")
        if expires is not None and expires <= now:
            raise AuthenticationError(f"the token {token_id} expired at {from_millis(expires).isoformat()}; "
                                      f"create a new one with {_NEW_TOKEN}")
        self._touch(token_id, last_used, now)
        return Principal(user, scope, namespace, token_id)

    def signing_key(self, token_id: str) -> bytes | None:
        """A key for signatures made for token ``token_id`` (the upload grants a Hugging Face LFS batch answer
        hands out): its stored secret hash, so a grant is void once the token is revoked or expires, and no
        server process keeps state for it.

        Returns:
            The key, or None when the token is malformed, unknown, revoked or expired.
        """
        if not _TOKEN_ID.fullmatch(token_id):
            return None
        rows = self._query("SELECT secret_sha256, expires_at_ms, revoked_at_ms FROM api_tokens WHERE id = :id", {"id": token_id})
        if not rows:
            return None
        secret_hash, expires, revoked = rows[0]
        if revoked is not None or (expires is not None and expires <= _now_ms()):
            return None
        return secret_hash.encode("ascii")

    def _touch(self, token_id: str, last_used: int | None, now: int) -> None:
        """Record the token's use, at most once a minute (by the database's value, so across processes too)."""
        if last_used is not None and now - last_used < LAST_USED_EVERY_MS:
            return
        with self._lock:
            if now - self._last_used.get(token_id, 0) < LAST_USED_EVERY_MS:
                return
            self._last_used[token_id] = now
        try:
            self._write([("UPDATE api_tokens SET last_used_at_ms = :now WHERE id = :id AND "
                          "(last_used_at_ms IS NULL OR last_used_at_ms < :now)", {"now": now, "id": token_id})])
        except Exception:  # a busy registry must not fail a read: the next minute tries again
            with self._lock:
                self._last_used.pop(token_id, None)

    def login(self, user: str, password: str) -> Principal:
        """The principal of a user signing in with a password (the web UI): ``admin`` scope for an admin
        user, else ``write`` (what the user's namespace roles allow).

        Raises:
            AuthenticationError: unknown user, no password set, or a wrong password (one message for all).
        """
        global _DUMMY_HASH
        user, password = str(user), str(password)
        rows = self._query("SELECT password_hash, is_admin FROM hub_users WHERE name = :name", {"name": user})
        stored = rows[0][0] if rows else None
        if stored is None:  # take as long as a real check, so timing does not tell which users exist
            _DUMMY_HASH = _DUMMY_HASH or _hash_password(secrets.token_urlsafe(16))
            _check_password(password, _DUMMY_HASH)
        if stored is None or not _check_password(password, stored):
            raise AuthenticationError("wrong user name or password; an admin sets one with `hub user password NAME`, "
                                      f"or sign in with a token ({_NEW_TOKEN})")
        return Principal(user, "admin" if rows[0][1] else "write", None, None)

    # --- reading -------------------------------------------------------------------

    def _facts(self, principal: Principal, name: str) -> tuple[str, str | None, bool]:
        """``(visibility, the principal's role in the namespace, whether the namespace has a record)``: one query."""
        namespace = _namespace_of(name)
        rows = self._query(
            "SELECT (SELECT visibility FROM model_visibility WHERE name = :name), "
            "(SELECT visibility FROM namespaces WHERE name = :ns), "
            "(SELECT role FROM namespace_members WHERE namespace = :ns AND user_name = :user)",
            {"name": name, "ns": namespace, "user": principal.user},
        )
        own, of_namespace, role = rows[0]
        visibility = own or of_namespace or self._default_visibility()
        return visibility, role, of_namespace is not None

    @staticmethod
    def _default_visibility() -> str:
        from hub.settings import default_visibility

        return default_visibility()

    def can_read(self, principal: Principal, name: str) -> bool:
        """Whether ``principal`` may read model ``name`` (a missing model: whether it could, were it there)."""
        if principal.scope == "admin" and principal.namespace is None:
            return True
        visibility, role, _ = self._facts(principal, name)
        if visibility == "public":
            return True
        namespace = _namespace_of(name)
        if principal.user is None or (principal.namespace is not None and principal.namespace != namespace):
            return False
        if principal.scope == "admin":
            return True
        return namespace is not None and role is not None

    def require_read(self, principal: Principal, name: str) -> None:
        """Raise unless ``principal`` may read model ``name``.

        Raises:
            ModelNotFoundError: it may not: worded as for a model that is not there (see :meth:`not_found`).
        """
        if not self.can_read(principal, name):
            raise self.not_found(principal, name)

    def not_found(self, principal: Principal, name: str) -> ModelNotFoundError:
        """The registry's "model not found" error for ``name``, its hint drawn only from models ``principal``
        may read: what a server answers for a private model and for a missing one alike (and how it should
        word the registry's own not-found errors, whose hints name every model)."""
        readable = self.read_filter(principal)
        where, params = ("1 = 1", {}) if readable is None else readable.where("m.name", self.db.dialect)
        names = [row[0] for row in self._query(
            f"SELECT m.name FROM registered_models m WHERE m.latest_version IS NOT NULL AND m.name <> :name AND {where}",
            {**params, "name": name},
        )]
        return model_not_found(name, names)

    def read_filter(self, principal: Principal, *, snapshot: bool = True) -> ReadFilter | None:
        """What ``principal`` may list, for ``list_models(readable=...)``; None: everything (an unrestricted admin).

        Args:
            snapshot: take the visibility records along when there are at most :data:`SNAPSHOT_LIMIT`
                of each (one query), which makes the filter cheap over many models; False for a filter
                that looks each model's records up (cheaper where it meets a handful of models).
        """
        default = self._default_visibility()
        if principal.scope == "admin" and principal.namespace is None:
            return None
        limit = SNAPSHOT_LIMIT + 1
        parts = ["SELECT 'u', namespace, role FROM namespace_members WHERE user_name = :user"] if principal.user else []
        if snapshot:
            parts += [f"SELECT * FROM (SELECT 'n', name, visibility FROM namespaces ORDER BY name LIMIT {limit}) rf_n",
                      f"SELECT * FROM (SELECT 'm', name, visibility FROM model_visibility ORDER BY name LIMIT {limit}) rf_m"]
        rows = self._query(" UNION ALL ".join(parts), {"user": principal.user}) if parts else []
        mine = {name for kind, name, _ in rows if kind == "u"} if principal.scope != "admin" else {principal.namespace}
        if principal.namespace is not None:
            mine &= {principal.namespace}
        namespaces = [(name, vis) for kind, name, vis in rows if kind == "n"]
        models = [(name, vis) for kind, name, vis in rows if kind == "m"]
        if not snapshot or len(namespaces) > SNAPSHOT_LIMIT or len(models) > SNAPSHOT_LIMIT:
            return ReadFilter(frozenset(mine), default)

        def which(records: list[tuple[str, str]], visibility: str) -> frozenset[str]:
            return frozenset(name for name, vis in records if vis == visibility)

        return ReadFilter(frozenset(mine), default, public_namespaces=which(namespaces, "public"),
                          private_namespaces=which(namespaces, "private"), public_models=which(models, "public"),
                          private_models=which(models, "private"))

    def can_read_blob(self, principal: Principal, sha256: str) -> bool:
        """Whether some live version of a model ``principal`` may read names blob ``sha256``, as one of its
        files or as its manifest (one query, by the sha256 indexes)."""
        readable = self.read_filter(principal, snapshot=False)
        where, params = ("1 = 1", {}) if readable is None else readable.where("m.name", self.db.dialect)
        rows = self._query(
            "SELECT 1 FROM (SELECT f.version_id AS vid FROM model_version_files f WHERE f.sha256 = :sha "
            "UNION ALL SELECT mv.id FROM model_versions mv WHERE mv.manifest_digest = :sha) named "
            "JOIN model_versions v ON v.id = named.vid JOIN registered_models m ON m.id = v.model_id "
            f"WHERE v.deleted_at_ms IS NULL AND {where} LIMIT 1",
            {**params, "sha": sha256},
        )
        return bool(rows)

    # --- writing -------------------------------------------------------------------

    def require_write(self, principal: Principal, name: str) -> None:
        """Raise unless ``principal`` may write model ``name`` (publish, move aliases, delete versions).

        A write token's first write into a namespace that has neither a record nor models claims it:
        its user becomes the owner, with visibility ``hub.settings.default_visibility()``.

        Raises:
            AuthenticationError: anonymous.
            PermissionDeniedError: read scope, a token restricted to another namespace, a hub-level name
                without admin scope, or a user who is not an owner or writer of the namespace.
        """
        self._check_write(principal, name, claim=True)

    def can_write(self, principal: Principal, name: str) -> bool:
        """Whether ``principal`` may write model ``name`` now, claiming nothing (so a namespace no one
        holds yet is False: it is the principal's only once a write claims it)."""
        try:
            self._check_write(principal, name, claim=False)
        except (AuthenticationError, PermissionDeniedError):
            return False
        return True

    def _check_write(self, principal: Principal, name: str, *, claim: bool) -> None:
        namespace = _namespace_of(name)
        where = f"namespace {namespace!r}" if namespace else "the hub (a name without a namespace)"
        if principal.user is None:
            raise AuthenticationError(f"writing {name!r} needs a token with write scope: send 'Authorization: Bearer "
                                      f"<token>' (HUB_TOKEN); create one with `hub token create --user NAME --scope write`")
        if principal.scope not in ("write", "admin"):
            raise PermissionDeniedError(f"the token of {principal.user!r} has {principal.scope} scope; writing {name!r} "
                                        f"needs write scope: `hub token create --user {principal.user} --scope write`")
        if principal.namespace is not None and principal.namespace != namespace:
            raise PermissionDeniedError(f"the token of {principal.user!r} is restricted to namespace {principal.namespace!r}; "
                                        f"{name!r} is in {where}: use a token for that namespace")
        if principal.scope == "admin":
            return
        if namespace is None:
            raise PermissionDeniedError(f"{name!r} has no namespace, so it belongs to the hub and only admins write it; "
                                        f"publish it as {principal.user}/{name} or another namespace of yours")
        for _ in range(2):  # a second look after losing a race to claim it
            _, role, recorded = self._facts(principal, name)
            if recorded:
                if role in ("owner", "writer"):
                    return
                raise PermissionDeniedError(
                    f"user {principal.user!r} is not an owner or writer of namespace {namespace!r}; an owner adds writers "
                    f"with `hub namespace set {namespace} --add-writer {principal.user}`"
                )
            if self._query("SELECT 1 FROM registered_models WHERE SUBSTR(name, 1, :n) = :prefix LIMIT 1",
                           {"n": len(namespace) + 1, "prefix": namespace + "/"}):
                raise PermissionDeniedError(
                    f"namespace {namespace!r} has models but no owners on record, so only admins write it; an admin "
                    f"gives it owners with `hub namespace create {namespace} --owner USER`"
                )
            if not claim:
                raise PermissionDeniedError(f"namespace {namespace!r} has no owner yet; a write claims it")
            if self._claim(namespace, principal.user):
                return
        raise PermissionDeniedError(f"namespace {namespace!r} changed while it was being claimed; try again")

    def _claim(self, namespace: str, user: str) -> bool:
        """Record ``namespace`` owned by ``user``; False when another writer recorded it first."""
        from sqlalchemy.exc import IntegrityError

        now = _now_ms()
        try:
            self._write([
                ("INSERT INTO namespaces (name, visibility, created_at_ms) VALUES (:ns, :vis, :now)",
                 {"ns": namespace, "vis": self._default_visibility(), "now": now}),
                ("INSERT INTO namespace_members (namespace, user_name, role) VALUES (:ns, :user, 'owner')",
                 {"ns": namespace, "user": user}),
            ])
        except IntegrityError:
            return False
        return True

    def require_admin(self, principal: Principal, namespace: str | None = None) -> None:
        """Raise unless ``principal`` has admin scope (over the whole hub, or over ``namespace`` when given).

        Raises:
            AuthenticationError: anonymous.
            PermissionDeniedError: another scope, or an admin token restricted to another namespace.
        """
        if principal.user is None:
            raise AuthenticationError("this needs a token with admin scope: send 'Authorization: Bearer <token>'; "
                                      "create one with `hub token create --user NAME --scope admin`")
        if principal.scope != "admin":
            raise PermissionDeniedError(f"the token of {principal.user!r} has {principal.scope} scope; this needs admin "
                                        f"scope: `hub token create --user {principal.user} --scope admin`")
        if principal.namespace is not None and principal.namespace != namespace:
            over = f"namespace {namespace!r}" if namespace else "the whole hub"
            raise PermissionDeniedError(f"the admin token of {principal.user!r} is restricted to namespace "
                                        f"{principal.namespace!r}; this needs admin scope over {over}")

    # --- users ---------------------------------------------------------------------

    def create_user(self, name: str, *, password: str | None = None, admin: bool = False) -> User:
        """Add a user (with a password to sign in to the web UI, if given).

        Raises:
            InvalidArgumentError: a bad name, an empty password, or the user exists already.
        """
        _check_part(name, "user name")
        if password is not None and not password:
            raise InvalidArgumentError("the password is empty; give one, or none (the user then signs in with tokens)")
        if self._user_exists(name):
            raise InvalidArgumentError(f"user {name!r} exists already (`hub user list`); "
                                       f"`hub user password {name}` sets a password")
        from sqlalchemy.exc import IntegrityError

        try:
            self._write([self._insert_user(name, _hash_password(password) if password else None, admin)])
        except IntegrityError:
            raise InvalidArgumentError(f"user {name!r} exists already (`hub user list`)") from None
        return self.get_user(name)

    @staticmethod
    def _insert_user(name: str, password_hash: str | None, admin: bool) -> tuple[str, dict[str, Any]]:
        return ("INSERT INTO hub_users (name, password_hash, is_admin, created_at_ms) VALUES (:name, :hash, :admin, :now)",
                {"name": name, "hash": password_hash, "admin": admin, "now": _now_ms()})

    def _user_exists(self, name: str) -> bool:
        return bool(self._query("SELECT 1 FROM hub_users WHERE name = :name", {"name": name}))

    def set_password(self, name: str, password: str | None, *, admin: bool | None = None) -> User:
        """Set (or with None remove) a user's password; change whether it is an admin, when ``admin`` is given.

        Raises:
            UserNotFoundError: no such user.
            InvalidArgumentError: an empty password.
        """
        if password is not None and not password:
            raise InvalidArgumentError("the password is empty; give one")
        self.get_user(name)
        statements = [("UPDATE hub_users SET password_hash = :hash WHERE name = :name",
                       {"hash": _hash_password(password) if password else None, "name": name})]
        if admin is not None:
            statements.append(("UPDATE hub_users SET is_admin = :admin WHERE name = :name", {"admin": admin, "name": name}))
        self._write(statements)
        return self.get_user(name)

    def get_user(self, name: str) -> User:
        """One user.

        Raises:
            UserNotFoundError: no such user.
        """
        rows = self._query("SELECT name, is_admin, password_hash IS NOT NULL, created_at_ms FROM hub_users WHERE name = :name",
                           {"name": name})
        if not rows:
            raise UserNotFoundError(f"there is no user {name!r}; `hub user list` shows them, `hub user create {name}` adds it")
        return self._user(rows[0])

    @staticmethod
    def _user(row: tuple) -> User:
        name, admin, has_password, created = row
        return User(name=name, is_admin=bool(admin), has_password=bool(has_password), created_at=from_millis(created))

    def list_users(self) -> list[User]:
        """Every user, by name."""
        return [self._user(row) for row in self._query(
            "SELECT name, is_admin, password_hash IS NOT NULL, created_at_ms FROM hub_users ORDER BY name")]

    def configured(self) -> bool:
        """Whether this hub has authentication configured: a user with a password, or a live token
        (neither revoked nor expired). Without it the web UI only serves this machine (``hub ui``
        on a non-loopback address refuses to start)."""
        rows = self._query(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM hub_users WHERE password_hash IS NOT NULL) OR EXISTS (SELECT 1 FROM "
            "api_tokens WHERE revoked_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > :now))",
            {"now": _now_ms()},
        )
        return bool(rows)

    # --- tokens --------------------------------------------------------------------

    def create_token(self, user: str, scope: str, *, namespace: str | None = None,
                     expires: str | None = DEFAULT_EXPIRY) -> tuple[str, TokenInfo]:
        """Make an API token for ``user`` (created if there is no such user).

        Args:
            scope: ``read``, ``write`` or ``admin``.
            namespace: restrict the token to this namespace.
            expires: how long it lives: ``30d``, ``12h``, ``90m`` or ``never`` (default ``90d``).

        Returns:
            The token ``mh_<id>_<secret>`` (the only time it is seen: only its hash is kept) and its record.

        Raises:
            InvalidArgumentError: a bad user name, scope, namespace or expiry (nothing is written).
        """
        _check_part(user, "user name")
        _check_choice(scope, SCOPES, "scope")
        if namespace is not None:
            _check_part(namespace, "namespace")
        lifetime = parse_expiry(expires)
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = _now_ms()
        statements = [] if self._user_exists(user) else [self._insert_user(user, None, False)]
        statements.append((
            "INSERT INTO api_tokens (id, user_name, scope, namespace, secret_sha256, created_at_ms, expires_at_ms) "
            "VALUES (:id, :user, :scope, :ns, :hash, :now, :expires)",
            {"id": token_id, "user": user, "scope": scope, "ns": namespace, "hash": _secret_hash(secret), "now": now,
             "expires": None if lifetime is None else now + lifetime},
        ))
        from sqlalchemy.exc import IntegrityError

        try:
            self._write(statements)
        except IntegrityError:  # a user of that name was created meanwhile
            self._write(statements[-1:])
        return f"{TOKEN_PREFIX}_{token_id}_{secret}", self.get_token(token_id)

    _TOKEN_COLUMNS = "id, user_name, scope, namespace, created_at_ms, expires_at_ms, last_used_at_ms, revoked_at_ms"

    @staticmethod
    def _token(row: tuple) -> TokenInfo:
        token_id, user, scope, namespace, created, expires, last_used, revoked = row
        return TokenInfo(id=token_id, user=user, scope=scope, namespace=namespace, created_at=from_millis(created),
                         expires_at=_when(expires), last_used_at=_when(last_used), revoked_at=_when(revoked))

    def get_token(self, token_id: str) -> TokenInfo:
        """One token's record by its id (or by the whole token, whose id it reads).

        Raises:
            TokenNotFoundError: no token has that id.
        """
        token_id = self._token_id(token_id)
        rows = self._query(f"SELECT {self._TOKEN_COLUMNS} FROM api_tokens WHERE id = :id", {"id": token_id})
        if not rows:
            raise TokenNotFoundError(f"there is no token with id {token_id!r}; `hub token list` shows them")
        return self._token(rows[0])

    @staticmethod
    def _token_id(value: str) -> str:
        value = str(value).strip()
        if value.startswith(f"{TOKEN_PREFIX}_"):
            value = value.split("_")[1] if value.count("_") >= 2 else value[len(TOKEN_PREFIX) + 1:]
        if not _TOKEN_ID.fullmatch(value):
            raise TokenNotFoundError(f"{value[:20]!r} is no token id (16 hex digits, as `hub token list` shows)")
        return value

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        """Every token's record (of ``user`` alone, if given), oldest first."""
        where, params = ("WHERE user_name = :user", {"user": user}) if user is not None else ("", {})
        return [self._token(row) for row in self._query(
            f"SELECT {self._TOKEN_COLUMNS} FROM api_tokens {where} ORDER BY created_at_ms, id", params)]

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revoke a token: from the next request on, every server refuses it (revoking twice changes nothing).

        Raises:
            TokenNotFoundError: no token has that id.
        """
        token = self.get_token(token_id)
        if token.revoked_at is None:
            self._write([("UPDATE api_tokens SET revoked_at_ms = :now WHERE id = :id AND revoked_at_ms IS NULL",
                          {"now": _now_ms(), "id": token.id})])
        return self.get_token(token.id)

    # --- namespaces and visibility -----------------------------------------------

    def get_namespace(self, name: str) -> NamespaceInfo:
        """One namespace's record.

        Raises:
            NamespaceNotFoundError: it has none.
        """
        found = self._namespaces(name)
        if not found:
            raise NamespaceNotFoundError(f"namespace {name!r} has no record; `hub namespace list` shows them, "
                                         f"`hub namespace create {name} --owner USER` makes it")
        return found[0]

    def list_namespaces(self) -> list[NamespaceInfo]:
        """Every namespace record, by name."""
        return self._namespaces(None)

    def _namespaces(self, name: str | None) -> list[NamespaceInfo]:
        where, params = ("WHERE n.name = :name", {"name": name}) if name is not None else ("", {})
        rows = self._query(
            f"SELECT n.name, n.visibility, n.created_at_ms, mb.user_name, mb.role FROM namespaces n "
            f"LEFT JOIN namespace_members mb ON mb.namespace = n.name {where} ORDER BY n.name, mb.user_name", params)
        found: dict[str, tuple[str, int, dict[str, list[str]]]] = {}
        for ns, visibility, created, member, role in rows:
            roles = found.setdefault(ns, (visibility, created, {r: [] for r in ROLES}))[2]
            if member is not None:
                roles[role].append(member)
        return [NamespaceInfo(name=ns, visibility=vis, owners=tuple(roles["owner"]), writers=tuple(roles["writer"]),
                              readers=tuple(roles["reader"]), created_at=from_millis(created))
                for ns, (vis, created, roles) in found.items()]

    def _check_users(self, names: Iterable[str]) -> None:
        for name in names:
            _check_part(name, "user name")
            if not self._user_exists(name):
                raise UserNotFoundError(f"there is no user {name!r}; `hub user create {name}` adds it "
                                        "(`hub token create --user` does too)")

    def create_namespace(self, name: str, *, owners: Sequence[str], writers: Sequence[str] = (),
                         readers: Sequence[str] = (), visibility: str | None = None) -> NamespaceInfo:
        """Record a namespace with its owners (at least one), writers and readers.

        Args:
            visibility: ``public`` or ``private``; default ``hub.settings.default_visibility()``.

        Raises:
            InvalidArgumentError: a bad name or visibility, no owner, or the namespace has a record already.
            UserNotFoundError: a member who is no user.
        """
        _check_part(name, "namespace")
        visibility = self._default_visibility() if visibility is None else _check_choice(visibility, VISIBILITIES, "visibility")
        if not owners:
            raise InvalidArgumentError(f"namespace {name!r} needs an owner: give --owner USER")
        members = {**{user: "reader" for user in readers}, **{user: "writer" for user in writers},
                   **{user: "owner" for user in owners}}
        self._check_users(members)
        if self._namespaces(name):
            raise InvalidArgumentError(f"namespace {name!r} exists already; change it with `hub namespace set {name}`")
        from sqlalchemy.exc import IntegrityError

        statements = [("INSERT INTO namespaces (name, visibility, created_at_ms) VALUES (:ns, :vis, :now)",
                       {"ns": name, "vis": visibility, "now": _now_ms()})]
        statements += [("INSERT INTO namespace_members (namespace, user_name, role) VALUES (:ns, :user, :role)",
                        {"ns": name, "user": user, "role": role}) for user, role in sorted(members.items())]
        try:
            self._write(statements)
        except IntegrityError:
            raise InvalidArgumentError(f"namespace {name!r} exists already; change it with `hub namespace set {name}`") from None
        return self.get_namespace(name)

    def update_namespace(self, name: str, *, add_owners: Sequence[str] = (), add_writers: Sequence[str] = (),
                         add_readers: Sequence[str] = (), remove_owners: Sequence[str] = (),
                         remove_writers: Sequence[str] = (), remove_readers: Sequence[str] = (),
                         visibility: str | None = None) -> NamespaceInfo:
        """Change a namespace's members and visibility. Removals come first; an added member takes the
        given role, replacing the one it had (a user has one role in a namespace).

        Raises:
            NamespaceNotFoundError: it has no record.
            UserNotFoundError: an added member who is no user.
            InvalidArgumentError: a bad visibility, removing a user from a role it does not have, or
                leaving no owner (nothing is changed).
        """
        current = self.get_namespace(name)
        if visibility is not None:
            _check_choice(visibility, VISIBILITIES, "visibility")
        added = {**{user: "reader" for user in add_readers}, **{user: "writer" for user in add_writers},
                 **{user: "owner" for user in add_owners}}
        self._check_users(added)
        members = {**{u: "owner" for u in current.owners}, **{u: "writer" for u in current.writers},
                   **{u: "reader" for u in current.readers}}
        for role, users in (("owner", remove_owners), ("writer", remove_writers), ("reader", remove_readers)):
            for user in users:
                if members.get(user) != role:
                    raise InvalidArgumentError(f"user {user!r} is no {role} of namespace {name!r} "
                                               f"(`hub namespace list` shows its members)")
                del members[user]
        members.update(added)
        if "owner" not in members.values():
            raise InvalidArgumentError(f"that would leave namespace {name!r} without an owner; add one with --add-owner USER")
        statements: list[tuple[str, dict[str, Any]]] = [("DELETE FROM namespace_members WHERE namespace = :ns", {"ns": name})]
        statements += [("INSERT INTO namespace_members (namespace, user_name, role) VALUES (:ns, :user, :role)",
                        {"ns": name, "user": user, "role": role}) for user, role in sorted(members.items())]
        if visibility is not None:
            statements.append(("UPDATE namespaces SET visibility = :vis WHERE name = :ns", {"vis": visibility, "ns": name}))
        self._write(statements)
        return self.get_namespace(name)

    def set_visibility(self, name: str, visibility: str, *, kind: str | None = None) -> str:
        """Make a model or a namespace public or private.

        ``name`` with a ``/`` is a model; a single part is a namespace that has a record or models, else a
        hub-level model that exists; ``kind`` (``"model"`` or ``"namespace"``) says which where both are.
        A model's visibility overrides its namespace's.

        Returns:
            ``"model"`` or ``"namespace"``: what was changed.

        Raises:
            InvalidArgumentError: a bad name, visibility or kind, or a single part that names both or neither.
        """
        from hub.reference import validate_name

        _check_choice(visibility, VISIBILITIES, "visibility")
        if kind is not None:
            _check_choice(kind, ("model", "namespace"), "kind")
        if "/" in name:
            validate_name(name)
            if kind == "namespace":
                raise InvalidArgumentError(f"{name!r} is a model name; a namespace is one part, like {name.split('/')[0]!r}")
            kind = "model"
        else:
            _check_part(name, "name")
        if kind is None:
            is_model = bool(self._query("SELECT 1 FROM registered_models WHERE name = :name", {"name": name}))
            is_namespace = bool(self._namespaces(name)) or bool(self._query(
                "SELECT 1 FROM registered_models WHERE SUBSTR(name, 1, :n) = :prefix LIMIT 1",
                {"n": len(name) + 1, "prefix": name + "/"}))
            if is_model and is_namespace:
                raise InvalidArgumentError(f"{name!r} is both a model and a namespace; say which with --model or --namespace")
            if not (is_model or is_namespace):
                raise InvalidArgumentError(f"{name!r} is neither a model nor a namespace; create the namespace with "
                                           f"`hub namespace create {name} --owner USER`, or say --model to set it for a "
                                           "model not published yet")
            kind = "model" if is_model else "namespace"
        if kind == "namespace":
            if not self._namespaces(name):
                raise NamespaceNotFoundError(f"namespace {name!r} has no record; make it with "
                                             f"`hub namespace create {name} --owner USER --{visibility}`")
            self._write([("UPDATE namespaces SET visibility = :vis WHERE name = :ns", {"vis": visibility, "ns": name})])
            return kind
        exists = bool(self._query("SELECT 1 FROM model_visibility WHERE name = :name", {"name": name}))
        sql = ("UPDATE model_visibility SET visibility = :vis WHERE name = :name" if exists
               else "INSERT INTO model_visibility (name, visibility) VALUES (:name, :vis)")
        self._write([(sql, {"name": name, "vis": visibility})])
        return kind


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine only (``localhost``, ``127.x.x.x``, ``::1``); a host name may be any interface."""
    import ipaddress

    if not host:
        return False
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class Throttle:
    """Slows down repeated bad tokens or passwords from one client address: after ``free`` failures
    within ``window`` seconds, each further one waits, doubling from ``first`` up to ``most`` seconds
    (in this process; the server and the web UI each keep one)."""

    def __init__(self, free: int = 5, window: float = 60.0, first: float = 0.125, most: float = 2.0) -> None:
        self.free, self.window, self.first, self.most = free, window, first, most
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def failed(self, address: str) -> float:
        """Record a failure from ``address``; return how many seconds its answer should wait."""
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 10_000:  # forget the quiet ones
                self._failures = {a: q for a, q in self._failures.items() if q and q[-1] > now - self.window}
            times = self._failures.setdefault(address, collections.deque())
            while times and times[0] < now - self.window:
                times.popleft()
            times.append(now)
            excess = len(times) - self.free
        return 0.0 if excess <= 0 else min(self.most, self.first * 2 ** (excess - 1))


def open_to_network(db: Database, host: str | None) -> bool:
    """Whether a server of the local hub whose registry is ``db`` (the web UI, ``hub serve-models``) would
    answer anyone on the network with no one to sign in: ``host`` is no loopback address and the hub has
    no authentication configured (:meth:`Access.configured`). Such a server must refuse to start.
    """
    return not is_loopback(host) and not Access(db).configured()
