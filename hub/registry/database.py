"""Connections to the registry database.

Reads go straight through the DB-API driver (``sqlite3`` or ``psycopg``) with
plain SQL, so metadata commands answer without importing SQLAlchemy's ORM
(half a second on a small machine). Writes go through a SQLAlchemy engine,
created on first use. SQLite runs in WAL mode with a busy timeout, and write
transactions start with ``BEGIN IMMEDIATE`` so two writers queue instead of
failing with "database is locked".
"""

from __future__ import annotations

import random
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from hub.errors import RegistryError, SchemaOutdatedError

__all__ = ["Database", "SCHEMA_HEAD"]

SCHEMA_HEAD = "0002_finetune_jobs"  # keep equal to the newest file in hub/migrations/versions
BUSY_TIMEOUT_S = 60
MIGRATION_LOCK_KEY = 0x6D6F64656C687562  # "modelhub": the PostgreSQL advisory lock migrations hold
_NAMED = re.compile(r":([a-z_][a-z0-9_]*)")


class Database:
    """One registry database, by SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).

    Raises:
        RegistryError: the URL's backend is not supported.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        scheme = urlsplit(url).scheme
        self.dialect = scheme.split("+")[0]
        if self.dialect == "postgres":
            self.dialect = "postgresql"
        if self.dialect not in ("sqlite", "postgresql"):
            raise RegistryError(f"registry URL {url!r}: backend {scheme!r} is not supported; use sqlite:/// or postgresql+psycopg://")
        self._local = threading.local()
        self._engine: Any = None
        self._engine_lock = threading.Lock()
        self._schema_checked = False

    # --- raw reads -----------------------------------------------------------

    @property
    def sqlite_path(self) -> Path | None:
        if self.dialect != "sqlite":
            return None
        path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
        return Path(unquote(path.split("?", 1)[0])) if path and path != ":memory:" else None

    def _connect(self) -> Any:
        try:
            if self.dialect == "sqlite":
                path = self.sqlite_path
                if path is None:
                    raise RegistryError("an in-memory SQLite registry can't be shared; give a file path")
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA foreign_keys=ON")
                return conn
            import psycopg

            conninfo = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", self.url)
            return psycopg.connect(conninfo, autocommit=True)
        except (sqlite3.Error, ImportError) as exc:
            raise RegistryError(f"can't open the registry at {self.url}: {exc}") from exc
        except Exception as exc:  # psycopg.OperationalError and friends
            raise RegistryError(f"can't connect to the registry at {self.url}: {exc}") from exc

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """Run a read-only ``SELECT`` with ``:name`` parameters; return its rows.

        A connection the server dropped is replaced once before giving up.

        Raises:
            RegistryError: the database can't be reached or the query failed.
        """
        if self.dialect == "postgresql":
            sql = _NAMED.sub(r"%(\1)s", sql)
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect()
            try:
                return conn.execute(sql, params or {}).fetchall()
            except Exception as exc:  # sqlite3.Error, psycopg.Error: the driver's own classes
                broken = self.dialect == "postgresql" and getattr(conn, "closed", False)
                if broken and attempt == 1:
                    self._local.conn = None
                    continue
                raise RegistryError(f"registry query failed on {self.url}: {exc}; is it a modelhub registry? try `hub db upgrade`") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close this thread's read connection and the write engine."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._engine is not None:
            self._engine.dispose()

    # --- schema --------------------------------------------------------------

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at, or None when it has no modelhub tables."""
        if self.dialect == "sqlite":
            exists = self.query("SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'")
        else:
            exists = self.query("SELECT to_regclass('alembic_version')")
            exists = [row for row in exists if row[0] is not None]
        if not exists:
            return None
        rows = self.query("SELECT version_num FROM alembic_version")
        return rows[0][0] if rows else None

    def ensure_schema(self) -> None:
        """Create a new database at the head revision; refuse one at another revision.

        Raises:
            SchemaOutdatedError: the database is at an older or unknown revision.
        """
        if self._schema_checked:
            return
        revision = self.schema_revision()
        if revision is None:
            self.upgrade()
        elif revision != SCHEMA_HEAD:
            raise SchemaOutdatedError(
                f"the registry at {self.url} has schema {revision!r}, this modelhub needs {SCHEMA_HEAD!r}; "
                "back it up, then run `hub db upgrade`"
            )
        self._schema_checked = True

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema with Alembic (``hub db upgrade``).

        Raises:
            RegistryError: the database can't be reached or refused the migration.
        """
        from sqlalchemy.exc import SQLAlchemyError

        from hub.registry.migrate import upgrade

        if self.sqlite_path is not None:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":  # processes creating one new registry at once take turns
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
                upgrade(connection, revision)
        except SQLAlchemyError as exc:
            raise RegistryError(f"can't migrate the registry at {self.url}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
        self._schema_checked = False

    # --- writes --------------------------------------------------------------

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine for writes, created on first use."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = _create_engine(self.url, self.dialect)
            return self._engine


def _set_wal(cursor: sqlite3.Cursor) -> None:
    """Switch a new database to WAL. SQLite answers "locked" at once, without waiting, while another
    process switches it too, so take turns here."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01 + random.random() * 0.05)


def _create_engine(url: str, dialect: str) -> Any:
    from sqlalchemy import create_engine, event

    if dialect == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        _set_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
