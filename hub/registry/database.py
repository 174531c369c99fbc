"""Connections to the registry database.

Reads go straight through the DB-API driver (``sqlite3`` or ``psycopg``) with
plain SQL, so metadata commands answer without importing SQLAlchemy's ORM
(half a second on a small machine). Writes go through a SQLAlchemy engine,
created on first use. SQLite runs in WAL mode with a busy timeout, and write
transactions start with ``BEGIN IMMEDIATE`` so two writers queue instead of
failing with "database is locked".

Where SQLite can't create the ``-wal``/``-shm`` files beside a registry (a read-only
folder, a full disk), reads fall back to opening the file read-only as immutable, which
needs neither; only when no ``-wal`` holds changes the file lacks. Failures are reported
by cause: a damaged file (:class:`DamagedRegistryError`), no space or no permission
(:class:`StorageError`), an old schema (``hub db upgrade``).
"""

from __future__ import annotations

import errno
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from hub.errors import DamagedRegistryError, HubError, RegistryError, SchemaOutdatedError, StorageError, storage_error

__all__ = ["Database", "SCHEMA_HEAD"]

SCHEMA_HEAD = "0003_access"  # keep equal to the newest file in hub/migrations/versions
BUSY_TIMEOUT_S = 60
MIGRATION_LOCK_KEY = 0x6D6F64656C687562  # "modelhub": the PostgreSQL advisory lock migrations hold
_NAMED = re.compile(r":([a-z_][a-z0-9_]*)")
LOW_SPACE_BYTES = 1 << 20  # below this much free space, SQLite's "disk I/O error" or "unable to open" means a full disk
_SQLITE_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_SQLITE_DISK = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_FULL", "SQLITE_PERM")
_SCHEMA_MISMATCH = ("no such table", "no such column", "UndefinedTable", "UndefinedColumn")


class Database:
    """One registry database, by SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).

    Raises:
        RegistryError: the URL's backend is not supported.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown_url = re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", url)  # for messages: never the password
        scheme = urlsplit(url).scheme
        self.dialect = scheme.split("+")[0]
        if self.dialect == "postgres":
            self.dialect = "postgresql"
        if self.dialect not in ("sqlite", "postgresql"):
            raise RegistryError(f"registry URL {self.shown_url!r}: backend {scheme!r} is not supported; use sqlite:/// or postgresql+psycopg://")
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
        self._local.fallback = False
        if self.dialect == "sqlite":
            return self._connect_sqlite()
        try:
            import psycopg

            conninfo = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", self.url)
            return psycopg.connect(conninfo, autocommit=True)
        except ImportError as exc:
            raise RegistryError(f"can't open the registry at {self.shown_url}: {exc}") from exc
        except Exception as exc:  # psycopg.OperationalError and friends
            raise RegistryError(f"can't connect to the registry at {self.shown_url}: {exc}") from exc

    def _connect_sqlite(self) -> sqlite3.Connection:
        """A read connection: the ordinary one, or where SQLite can't make its ``-wal``/``-shm`` files
        (read-only folder, full disk) the file opened read-only as immutable, when that reads it all."""
        path = self.sqlite_path
        if path is None:
            raise RegistryError("an in-memory SQLite registry can't be shared; give a file path")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise (storage_error(exc) or RegistryError(f"can't open the registry at {self.shown_url}: {exc}")) from exc
        conn = None
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("SELECT COUNT(*) FROM sqlite_master")  # reads the file and opens its -wal and -shm now
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            problem = self.explain(exc, "open")
            if not isinstance(problem, StorageError):
                raise problem from exc
            failure = exc
        wal = path.with_name(path.name + "-wal")
        if not path.is_file() or path.stat().st_size == 0 or (wal.exists() and wal.stat().st_size > 0):
            raise problem from failure  # nothing to read, or changes only the -wal holds: immutable would miss them
        try:
            conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro&immutable=1", uri=True, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("SELECT COUNT(*) FROM sqlite_master")
        except sqlite3.Error as exc:
            raise self.explain(exc, "open") from exc
        self._local.fallback = True  # used for one query: the next one tries the ordinary open again
        return conn

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
                rows = conn.execute(sql, params or {}).fetchall()
            except Exception as exc:  # sqlite3.Error, psycopg.Error: the driver's own classes
                broken = self.dialect == "postgresql" and getattr(conn, "closed", False)
                if broken and attempt == 1:
                    self._local.conn = None
                    continue
                self._drop_fallback()
                raise self.explain(exc, "query") from exc
            self._drop_fallback()
            return rows
        raise AssertionError("unreachable")

    def _drop_fallback(self) -> None:
        """Close an immutable read connection after its query: it would not see later writes."""
        if getattr(self._local, "fallback", False):
            self._local.conn.close()
            self._local.conn = None
            self._local.fallback = False

    def explain(self, error: BaseException, doing: str = "operation") -> HubError:
        """The error to raise for a failure of the driver or SQLAlchemy (``error``), by its real cause:
        :class:`DamagedRegistryError`, :class:`NoSpaceError` / :class:`ReadOnlyError` (with the path),
        a schema that isn't modelhub's (``hub db upgrade``), else :class:`RegistryError`.

        Args:
            doing: what failed, for the message ("query", "write", "migration", ...).
        """
        original = getattr(error, "orig", None) or error
        if isinstance(original, HubError):
            return original
        text = str(original).strip()
        if isinstance(original, OSError) and storage_error(original) is not None:
            return storage_error(original, self.sqlite_path)
        if self.dialect == "sqlite":
            code = getattr(original, "sqlite_errorname", None) or ""
            if code.startswith(_SQLITE_DAMAGED) or "malformed" in text or "not a database" in text:
                return DamagedRegistryError(
                    f"the registry {self.sqlite_path} is damaged ({text}); `hub reindex` moves it aside and rebuilds it from the store"
                )
            disk_words = ("disk is full", "disk I/O error", "readonly", "unable to open")
            if code.startswith(_SQLITE_DISK) or any(words in text for words in disk_words):
                problem = self._disk_problem(full=code == "SQLITE_FULL" or "disk is full" in text)
                if problem is not None:
                    return problem
        if any(words in text or words in type(original).__name__ for words in _SCHEMA_MISMATCH):
            return RegistryError(f"registry {doing} failed on {self.shown_url}: {text}; is it a modelhub registry of an older "
                                 "schema? back it up, then run `hub db upgrade`")
        return RegistryError(f"registry {doing} failed on {self.shown_url}: {text}")

    def _disk_problem(self, *, full: bool) -> StorageError | None:
        """Why SQLite can't write beside the registry file, if the disk says: read-only, not ours, or full."""
        path = self.sqlite_path
        if path is None:
            return None
        folder = path.parent
        companions = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        try:
            disk = os.statvfs(folder)
        except (OSError, AttributeError):  # gone, or Windows
            return None
        if disk.f_flag & getattr(os, "ST_RDONLY", 1):
            return storage_error(OSError(errno.EROFS, os.strerror(errno.EROFS), str(path)))
        for target in (folder, *companions):
            if target.exists() and not os.access(target, os.W_OK):
                return storage_error(OSError(errno.EACCES, os.strerror(errno.EACCES), str(target)))
        if full or disk.f_bavail * disk.f_frsize < LOW_SPACE_BYTES:
            return storage_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)))
        return None

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
                f"the registry at {self.shown_url} has schema {revision!r}, this modelhub needs {SCHEMA_HEAD!r}; "
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
            raise self.explain(exc, "migration") from exc
        self._schema_checked = False

    def move_aside(self) -> Path:
        """Move a damaged SQLite registry file out of the way, so that the next use creates a fresh one.

        Closes this thread's read connection and the write engine's pooled connections, then renames
        ``-wal`` and ``-shm`` (first: a leftover ``-wal`` must never meet a new file), then the file itself,
        to ``registry.db.damaged-<UTC time>`` (plus ``-wal``/``-shm``: the set still opens together).
        Other threads' and processes' open connections keep reading the moved file; keep them out.

        Returns:
            Where the file went.

        Raises:
            RegistryError: the registry is not a SQLite file, or there is no file.
            StorageError: the folder can't be written (read-only, permission denied).
        """
        path = self.sqlite_path
        if path is None:
            raise RegistryError(f"the registry at {self.shown_url} is not a SQLite file; nothing to move aside")
        if not path.exists():
            raise RegistryError(f"there is no registry file at {path} to move aside")
        self.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target, n = path.with_name(f"{path.name}.damaged-{stamp}"), 1
        while any(Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
            n += 1
            target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        try:
            for suffix in ("-wal", "-shm", ""):
                source = Path(f"{path}{suffix}")
                if source.exists():
                    os.replace(source, Path(f"{target}{suffix}"))
        except OSError as exc:
            raise (storage_error(exc) or RegistryError(f"can't move {path} aside: {exc}")) from exc
        self._schema_checked = False
        return target

    # --- writes --------------------------------------------------------------

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine for writes, created on first use."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = _create_engine(self.url, self.dialect)
            return self._engine

    @contextmanager
    def writing(self) -> Iterator[Any]:
        """A write transaction: the engine's connection, committed when the block ends and rolled back
        when it raises. Every write to the registry (versions, aliases, fine-tuning jobs) goes through here.

        Raises:
            sqlalchemy.exc.IntegrityError: a unique key clashed (the caller may retry).
            HubError: the database failed, by its cause (see :meth:`explain`); where none is known,
                a :class:`RegistryError` that says to try again.
        """
        from sqlalchemy import exc

        self.ensure_schema()
        try:
            with self.engine.begin() as connection:
                yield connection
        except exc.IntegrityError:
            raise
        except exc.DatabaseError as error:  # by cause: damaged file, no space, read-only; else "try again"
            problem = self.explain(error, "write")
            if type(problem) is RegistryError:
                problem = RegistryError(f"the registry at {self.shown_url} refused the write: {error.orig}; try again")
            raise problem from error


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
