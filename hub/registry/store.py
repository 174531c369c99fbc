"""The registry store: every registry read and write, behind one class.

Each method validates, opens a managed transaction, looks up or raises
not-found, and returns frozen entities; ORM rows never leave this module.
Reads are plain SQL over the DB-API driver (fast, no ORM import); writes use
SQLAlchemy sessions. New version numbers are ``max + 1`` under a lock on the
model's row (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on
PostgreSQL), retried when two publishers create the same model at once.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.entities import AliasChange, FileEntry, ModelSummary, ModelVersion, from_millis
from hub.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    RegistryError,
    VersionExistsError,
    VersionNotFoundError,
)
from hub.manifest import Manifest
from hub.reference import Reference
from hub.registry.database import Database

if TYPE_CHECKING:
    from hub.access import ReadFilter

__all__ = ["RegistryStore", "ModelChanges", "now_ms", "model_not_found"]

MAX_WRITE_ATTEMPTS = 20
_IN_CHUNK = 5000
_VERSION_COLUMNS = (
    "v.id, m.name, v.version, v.manifest_digest, v.architecture, v.config_json, v.layout_json, v.dtype, "
    "v.num_parameters, v.size_bytes, v.task, v.license, v.description, v.parent, v.created_at_ms"
)


@dataclass
class ModelChanges:
    """What :meth:`RegistryStore.reconcile` changes for one model.

    ``add``: versions to insert, ``(manifest, digest)`` (digest None: deleted); ``delete``: live
    versions to mark deleted; ``replace``: versions whose row is swapped for this manifest;
    ``history``: alias moves to append, ``{alias: [{"from", "to", "by", "at_ms"}, ...]}``, after
    removing the alias's history first where ``reset_history`` says so; ``aliases``: where aliases
    point afterwards (None: removed), set without a history entry (it is in ``history``);
    ``moves``: aliases to move as ``user`` (None: remove), with a history entry (a store without
    history, an alias on a version the store deleted).
    """

    name: str
    add: list[tuple[Manifest, str | None]] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)
    replace: list[tuple[Manifest, str]] = field(default_factory=list)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reset_history: dict[str, bool] = field(default_factory=dict)
    aliases: dict[str, int | None] = field(default_factory=dict)
    moves: dict[str, int | None] = field(default_factory=dict)


def now_ms() -> int:
    return int(time.time() * 1000)


def _like(text: str) -> str:
    return "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _model_filters(search: str | None, task: str | None, tag: str | None, license: str | None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (over ``m`` models and ``v`` their latest versions) and parameters for a model search."""
    where = ["m.latest_version IS NOT NULL"]
    params: dict[str, Any] = {}
    if search:
        where.append("(m.name LIKE :q ESCAPE '\\' OR LOWER(COALESCE(v.description, '')) LIKE :q ESCAPE '\\')")
        params["q"] = _like(search)
    if task:
        where.append("v.task = :task")
        params["task"] = task
    if license:
        where.append("v.license = :license")
        params["license"] = license
    if tag:
        where.append("EXISTS (SELECT 1 FROM model_version_tags t WHERE t.version_id = v.id AND t.tag = :tag)")
        params["tag"] = tag
    return " AND ".join(where), params


def model_not_found(name: str, names: list[str]) -> ModelNotFoundError:
    """The error for a model ``name`` that is not among ``names`` (those the asker may know of), naming the closest."""
    import difflib

    close = difflib.get_close_matches(name, names, n=1)
    if not close:  # by the model's part alone: 'acme/cnn' for 'cnn'
        parts: dict[str, str] = {}
        for known in names:
            parts.setdefault(known.rpartition("/")[2], known)
        close = [parts[part] for part in difflib.get_close_matches(name.rpartition("/")[2], list(parts), n=1)]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ModelNotFoundError(f"model {name!r} is not in the registry{hint}; `hub list` shows what is")


class RegistryStore:
    """Registry operations on one database.

    Args:
        database: the :class:`Database` to use; its schema is checked (and a new one created) on first use.
    """

    def __init__(self, database: Database) -> None:
        self.db = database

    # --- reads -----------------------------------------------------------------

    def _query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        self.db.ensure_schema()
        return self.db.query(sql, params)

    def _in_query(self, sql: str, ids: Sequence[int]) -> Iterator[tuple]:
        """Run ``sql`` (with ``{ids}`` in it) over ``ids`` in chunks."""
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            yield from self.db.query(sql.format(ids=",".join(str(int(i)) for i in chunk)))

    def _model_id(self, name: str) -> int:
        rows = self._query("SELECT id FROM registered_models WHERE name = :name", {"name": name})
        if not rows:
            raise self._not_registered(name)
        return rows[0][0]

    def _not_registered(self, name: str) -> ModelNotFoundError:
        """The error for a model ``name`` the registry does not have, naming the closest name it has."""
        return model_not_found(name, [row[0] for row in self.db.query("SELECT name FROM registered_models WHERE latest_version IS NOT NULL")])

    def resolve(self, ref: Reference) -> ModelVersion:
        """The live version that ``ref`` names.

        Raises:
            ModelNotFoundError, VersionNotFoundError, AliasNotFoundError: nothing matches.
        """
        base = f"SELECT {_VERSION_COLUMNS} FROM model_versions v JOIN registered_models m ON m.id = v.model_id "
        params: dict[str, Any] = {"name": ref.name}
        if ref.version is not None:
            sql = base + "WHERE m.name = :name AND v.version = :version AND v.deleted_at_ms IS NULL"
            params["version"] = ref.version
        elif ref.alias is not None:
            sql = base + (
                "JOIN model_aliases a ON a.model_id = m.id AND a.version = v.version "
                "WHERE m.name = :name AND a.alias = :alias AND v.deleted_at_ms IS NULL"
            )
            params["alias"] = ref.alias
        else:
            sql = base + "WHERE m.name = :name AND v.version = m.latest_version"
        rows = self._query(sql, params)
        if not rows:
            self._raise_not_found(ref)
        return self._hydrate(rows)[0]

    def _raise_not_found(self, ref: Reference) -> None:
        model_id = self._model_id(ref.name)
        live = [r[0] for r in self.db.query(
            "SELECT version FROM model_versions WHERE model_id = :id AND deleted_at_ms IS NULL ORDER BY version",
            {"id": model_id},
        )]
        if ref.alias is not None:
            aliases = [r[0] for r in self.db.query("SELECT alias FROM model_aliases WHERE model_id = :id", {"id": model_id})]
            raise AliasNotFoundError(
                f"model {ref.name!r} has no alias {ref.alias!r}; its aliases are {sorted(aliases) or 'none'} "
                f"(set one with `hub tag {ref.name}:VERSION {ref.alias}`)"
            )
        which = f"version {ref.version}" if ref.version is not None else "live version"
        raise VersionNotFoundError(
            f"model {ref.name!r} has no {which}; its live versions are {live or 'none'} (`hub versions {ref.name}`)"
        )

    def _hydrate(self, rows: list[tuple]) -> list[ModelVersion]:
        """Turn version rows into ModelVersions, fetching their files, tags, metrics, metadata and aliases."""
        ids = [row[0] for row in rows]
        files: dict[int, list[FileEntry]] = {i: [] for i in ids}
        tags: dict[int, list[str]] = {i: [] for i in ids}
        metrics: dict[int, dict[str, float]] = {i: {} for i in ids}
        metadata: dict[int, dict[str, Any]] = {i: {} for i in ids}
        aliases: dict[int, list[str]] = {i: [] for i in ids}
        # One round trip for everything hanging off the versions (this is on hub.load's path).
        for vid, kind, key, text, number in self._in_query(
            "SELECT version_id, 'f', path, sha256, size FROM model_version_files WHERE version_id IN ({ids}) "
            "UNION ALL SELECT version_id, 't', tag, NULL, NULL FROM model_version_tags WHERE version_id IN ({ids}) "
            "UNION ALL SELECT version_id, 'm', key, NULL, value FROM model_version_metrics WHERE version_id IN ({ids}) "
            "UNION ALL SELECT version_id, 'd', key, value_json, NULL FROM model_version_metadata WHERE version_id IN ({ids}) "
            "UNION ALL SELECT v.id, 'a', a.alias, NULL, NULL FROM model_aliases a "
            "JOIN model_versions v ON v.model_id = a.model_id AND v.version = a.version WHERE v.id IN ({ids}) "
            "ORDER BY 1, 2, 3",
            ids,
        ):
            if kind == "f":
                files[vid].append(FileEntry(key, text, int(number)))
            elif kind == "t":
                tags[vid].append(key)
            elif kind == "m":
                metrics[vid][key] = float(number)
            elif kind == "d":
                metadata[vid][key] = json.loads(text)
            else:
                aliases[vid].append(key)
        versions = []
        for (vid, name, version, digest, arch, config, layout, dtype, nparams, size, task, lic, desc, parent, created) in rows:
            layout_record = json.loads(layout)
            versions.append(ModelVersion(
                name=name, version=version, ref=f"{name}:{version}", digest=digest, architecture=arch,
                config=json.loads(config), files=tuple(files[vid]), size_bytes=size, num_parameters=nparams,
                dtype=dtype, task=task, license=lic, tags=tuple(tags[vid]), metrics=metrics[vid],
                metadata=metadata[vid], parent=parent, aliases=tuple(aliases[vid]),
                created_at=from_millis(created), description=desc,
                weight_files=tuple(layout_record.get("weights", ())), tied=layout_record.get("tied", {}),
                weight_views=layout_record.get("views", {}),
            ))
        return versions

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every live version of ``name``, oldest first.

        Raises:
            ModelNotFoundError: no such model.
        """
        model_id = self._model_id(name)
        rows = self.db.query(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions v JOIN registered_models m ON m.id = v.model_id "
            "WHERE v.model_id = :id AND v.deleted_at_ms IS NULL ORDER BY v.version",
            {"id": model_id},
        )
        return self._hydrate(rows) if rows else []

    def all_versions(self) -> list[ModelVersion]:
        """Every live version of every model, by model name then version (one query, for ``hub verify``)."""
        rows = self._query(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions v JOIN registered_models m ON m.id = v.model_id "
            "WHERE v.deleted_at_ms IS NULL ORDER BY m.name, v.version"
        )
        return self._hydrate(rows) if rows else []

    def list_models(
        self,
        search: str | None = None,
        *,
        task: str | None = None,
        tag: str | None = None,
        license: str | None = None,
        sort: str = "name",
        limit: int | None = 50,
        offset: int = 0,
        readable: ReadFilter | None = None,
    ) -> list[ModelSummary]:
        """Models with at least one live version, filtered and sorted; see :func:`hub.list_models`.

        Args:
            readable: only the models a server's caller may read (:meth:`hub.access.Access.read_filter`),
                filtered in SQL so that pages and totals count only those; None: every model.
        """
        where, params = self._readable(*_model_filters(search, task, tag, license), readable)
        order = {"name": "m.name", "updated": "m.updated_at_ms DESC, m.name", "size": "v.size_bytes DESC, m.name"}[sort]
        page = ""
        if limit is not None:
            page = " LIMIT :limit OFFSET :offset"
            params.update(limit=limit, offset=offset)
        rows = self._query(
            "SELECT m.id, m.name, m.latest_version, m.created_at_ms, m.updated_at_ms, v.id, v.task, v.license, "
            "v.description, v.size_bytes, m.num_versions "
            "FROM registered_models m JOIN model_versions v ON v.model_id = m.id AND v.version = m.latest_version "
            f"WHERE {where} ORDER BY {order}{page}",
            params,
        )
        tags: dict[int, list[str]] = {}
        for vid, tag_name in self._in_query("SELECT version_id, tag FROM model_version_tags WHERE version_id IN ({ids}) ORDER BY version_id, tag", [r[5] for r in rows]):
            tags.setdefault(vid, []).append(tag_name)
        aliases: dict[int, dict[str, int]] = {}
        for mid, alias, version in self._in_query("SELECT model_id, alias, version FROM model_aliases WHERE model_id IN ({ids}) ORDER BY model_id, alias", [r[0] for r in rows]):
            aliases.setdefault(mid, {})[alias] = version
        return [
            ModelSummary(
                name=name, latest_version=latest, num_versions=count, aliases=aliases.get(mid, {}), task=vtask,
                license=vlicense, tags=tuple(tags.get(vid, ())), description=desc, size_bytes=size,
                created_at=from_millis(created), updated_at=from_millis(updated),
            )
            for mid, name, latest, created, updated, vid, vtask, vlicense, desc, size, count in rows
        ]

    def count_models(self, search: str | None = None, *, task: str | None = None, tag: str | None = None,
                     license: str | None = None, readable: ReadFilter | None = None) -> int:
        """How many models :meth:`list_models` would list without a page limit."""
        where, params = self._readable(*_model_filters(search, task, tag, license), readable)
        return self._query(
            "SELECT COUNT(*) FROM registered_models m JOIN model_versions v ON v.model_id = m.id AND v.version = m.latest_version "
            f"WHERE {where}", params,
        )[0][0]

    def model_facets(self, *, readable: ReadFilter | None = None) -> dict[str, list[str]]:
        """The tasks, tags and licenses of the models' latest versions, each sorted (to filter by);
        of the models ``readable`` lets through alone, when given (see :meth:`list_models`)."""
        latest = "SELECT v.id FROM registered_models m JOIN model_versions v ON v.model_id = m.id AND v.version = m.latest_version"
        where, params = self._readable("1 = 1", {}, readable)
        if readable is not None:
            latest += f" WHERE {where}"
        rows = self._query(f"SELECT task, license FROM model_versions WHERE id IN ({latest})", params)
        tags = self.db.query(f"SELECT DISTINCT tag FROM model_version_tags WHERE version_id IN ({latest})", params)
        return {"task": sorted({task for task, _ in rows if task}), "tag": sorted(tag for (tag,) in tags),
                "license": sorted({license for _, license in rows if license})}

    def _readable(self, where: str, params: dict[str, Any], readable: ReadFilter | None) -> tuple[str, dict[str, Any]]:
        """``where`` and ``params`` narrowed to the models ``readable`` lets through (over ``m``, the models)."""
        if readable is None:
            return where, params
        condition, extra = readable.where("m.name", self.db.dialect)
        return f"{where} AND {condition}", {**params, **extra}

    def list_children(self, ref: str) -> list[ModelVersion]:
        """Live versions whose parent is ``ref`` (``name:VERSION``), oldest first."""
        rows = self._query(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions v JOIN registered_models m ON m.id = v.model_id "
            "WHERE v.parent = :ref AND v.deleted_at_ms IS NULL ORDER BY v.created_at_ms, m.name, v.version", {"ref": ref},
        )
        return self._hydrate(rows) if rows else []

    def alias_history(self, name: str, alias: str) -> list[AliasChange]:
        """Every move of ``alias`` on ``name``, oldest first (also of an alias since removed).

        Raises:
            ModelNotFoundError: no such model.
            AliasNotFoundError: the model has no such alias, and never had (the message names those it has).
        """
        model_id = self._model_id(name)
        rows = self.db.query(
            "SELECT from_version, to_version, changed_by, changed_at_ms FROM model_alias_history "
            "WHERE model_id = :id AND alias = :alias ORDER BY id",
            {"id": model_id, "alias": alias},
        )
        if not rows and not self.db.query("SELECT 1 FROM model_aliases WHERE model_id = :id AND alias = :alias",
                                          {"id": model_id, "alias": alias}):
            aliases = sorted(r[0] for r in self.db.query("SELECT alias FROM model_aliases WHERE model_id = :id", {"id": model_id}))
            removed = sorted({r[0] for r in self.db.query("SELECT alias FROM model_alias_history WHERE model_id = :id",
                                                          {"id": model_id})} - set(aliases))
            before = f", and removed ones with a history {removed}" if removed else ""
            raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}; its aliases are {aliases or 'none'}{before}")
        return [AliasChange(name, alias, f, t, who, from_millis(when)) for f, t, who, when in rows]

    def history_rows(self, name: str | None = None, alias: str | None = None) -> list[tuple[str, str, int | None, int | None, str, int]]:
        """Alias moves as ``(name, alias, from, to, changed_by, changed_at_ms)``, in the order they were
        made: every model's, or one model's (and one alias's)."""
        where, params = [], {}
        if name is not None:
            where.append("m.name = :name")
            params["name"] = name
        if alias is not None:
            where.append("h.alias = :alias")
            params["alias"] = alias
        return [tuple(row) for row in self._query(
            "SELECT m.name, h.alias, h.from_version, h.to_version, h.changed_by, h.changed_at_ms FROM model_alias_history h "
            f"JOIN registered_models m ON m.id = h.model_id {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY h.id",
            params,
        )]

    def referenced_digests(self) -> set[str]:
        """Blob digests that some live version needs: its manifest and files. (What other packages keep in the
        store, such as checkpoints of unfinished fine-tuning jobs, they tell ``hub gc`` themselves: :mod:`hub.gc_roots`.)"""
        digests = {r[0] for r in self._query("SELECT manifest_digest FROM model_versions WHERE deleted_at_ms IS NULL AND manifest_digest IS NOT NULL")}
        digests |= {r[0] for r in self.db.query(
            "SELECT f.sha256 FROM model_version_files f JOIN model_versions v ON v.id = f.version_id WHERE v.deleted_at_ms IS NULL"
        )}
        return digests

    def pointers(self) -> tuple[list[tuple[str, int, str | None, bool, int]], list[tuple[str, str, int, int]]]:
        """What the pointer files under ``refs/`` should say, with when each entry last changed (ms):
        ``(versions, aliases)``, as ``(name, version, manifest digest, deleted, changed_at_ms)`` and
        ``(name, alias, version, changed_at_ms)``."""
        versions = [
            (name, version, digest, deleted is not None, deleted or created)
            for name, version, digest, created, deleted in self._query(
                "SELECT m.name, v.version, v.manifest_digest, v.created_at_ms, v.deleted_at_ms "
                "FROM model_versions v JOIN registered_models m ON m.id = v.model_id"
            )
        ]
        aliases = [tuple(row) for row in self.db.query(
            "SELECT m.name, a.alias, a.version, COALESCE((SELECT MAX(h.changed_at_ms) FROM model_alias_history h "
            "WHERE h.model_id = a.model_id AND h.alias = a.alias), 0) "
            "FROM model_aliases a JOIN registered_models m ON m.id = a.model_id"
        )]
        return versions, aliases

    def version_exists(self, name: str, version: int) -> bool:
        """True when ``name`` has (or had: deleted numbers stay taken) ``version``."""
        return bool(self._query(
            "SELECT 1 FROM model_versions v JOIN registered_models m ON m.id = v.model_id WHERE m.name = :name AND v.version = :version",
            {"name": name, "version": version},
        ))

    # --- writes ----------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[Any]:
        """An ORM session in a write transaction of :meth:`Database.writing`."""
        from sqlalchemy.orm import Session

        with self.db.writing() as connection, Session(bind=connection, expire_on_commit=False) as session:
            with session.begin():
                yield session

    def _retrying(self, operation: Callable[[Any], Any]) -> Any:
        """Run ``operation(session)`` in a write transaction, retrying unique-key clashes."""
        from sqlalchemy import exc

        for attempt in range(MAX_WRITE_ATTEMPTS):
            try:
                with self._session() as session:
                    return operation(session)
            except exc.IntegrityError as error:
                if attempt == MAX_WRITE_ATTEMPTS - 1:
                    raise RegistryError(f"the registry kept refusing the write ({error.orig}); try again") from error
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    def _lock_model(self, session: Any, name: str, *, create: bool) -> Any:
        from sqlalchemy import select

        from hub.registry.schema import RegisteredModel

        model = session.scalars(select(RegisteredModel).where(RegisteredModel.name == name).with_for_update()).first()
        if model is None:
            if not create:
                raise self._not_registered(name)
            stamp = now_ms()
            model = RegisteredModel(name=name, num_versions=0, created_at_ms=stamp, updated_at_ms=stamp)
            session.add(model)
            session.flush()
        return model

    def _version_row(self, session: Any, model: Any, version: int, *, live: bool = True) -> Any:
        from sqlalchemy import select

        from hub.registry.schema import ModelVersionRow

        row = session.scalars(
            select(ModelVersionRow).where(ModelVersionRow.model_id == model.id, ModelVersionRow.version == version)
        ).first()
        if row is None or (live and row.deleted_at_ms is not None):
            state = "was deleted" if row is not None else "does not exist"
            raise VersionNotFoundError(f"version {version} of {model.name!r} {state}; `hub versions {model.name}` lists the live ones")
        return row

    def add_version(
        self,
        name: str,
        version: int | None,
        make_manifest: Callable[[int], tuple[Manifest, str]],
        on_reserved: Callable[[Manifest, str], None],
        aliases: Sequence[str],
        user: str,
        model_description: str | None,
        floor: Callable[[], int] = lambda: 0,
        fence: Callable[[Any], None] | None = None,
    ) -> ModelVersion:
        """Register a new version of ``name`` and point ``aliases`` at it.

        Args:
            version: an explicit number, or None for ``max + 1``.
            make_manifest: builds and stores the manifest for a number; returns ``(manifest, digest)``.
            on_reserved: called once the number is held, before commit (writes the store's pointer file).
            floor: the highest number the store has seen for ``name``, asked under the model's lock:
                a new number is above it, so numbers are never handed out twice, even by a registry
                that lost rows.
            fence: called with the session once the version's rows are written, before
                ``on_reserved`` and the commit; whatever it raises rolls the version back (a
                fine-tuning worker checks there that it still owns its job).

        Raises:
            VersionExistsError: ``version`` is taken (deleted numbers stay taken).
        """
        from sqlalchemy import func, select

        from hub.registry.schema import ModelVersionRow

        def operation(session: Any) -> tuple[Manifest, str]:
            model = self._lock_model(session, name, create=True)
            highest = session.scalar(select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id)) or 0
            number = max(highest, floor()) + 1
            if version is not None:
                taken = session.scalar(select(ModelVersionRow.id).where(ModelVersionRow.model_id == model.id, ModelVersionRow.version == version))
                if taken is not None:
                    raise VersionExistsError(
                        f"{name}:{version} already exists and versions are immutable; publish without version= to get {number}"
                    ).about(version="version=")
                number = version
            manifest, digest = make_manifest(number)
            self._insert_version(session, model, manifest, digest)
            if highest == 0:  # a new model is as old as its first version (reindex computes the same)
                model.created_at_ms = manifest.created_at_ms
            if manifest.version > (model.latest_version or 0):
                model.latest_version = manifest.version
            model.num_versions += 1
            model.updated_at_ms = manifest.created_at_ms
            if model_description is not None:
                model.description = model_description
            for alias in aliases:
                self._move_alias(session, model, alias, number, user)
            session.flush()
            if fence is not None:
                fence(session)
            on_reserved(manifest, digest)
            return manifest, digest

        manifest, _ = self._retrying(operation)
        return self.resolve(Reference(name, version=manifest.version))

    def _insert_version(self, session: Any, model: Any, manifest: Manifest, digest: str | None, deleted_at_ms: int | None = None) -> None:
        from hub.registry.schema import ModelVersionRow, VersionFile, VersionMetadata, VersionMetric, VersionTag

        row = ModelVersionRow(
            model_id=model.id, version=manifest.version, manifest_digest=digest, architecture=manifest.architecture,
            config_json=json.dumps(manifest.config, sort_keys=True),
            layout_json=json.dumps(
                {"weights": list(manifest.weights), "tied": manifest.tied, "views": manifest.weight_views}, sort_keys=True
            ),
            dtype=manifest.dtype, num_parameters=manifest.num_parameters, size_bytes=manifest.size_bytes,
            task=manifest.task, license=manifest.license, description=manifest.description,
            parent=manifest.parent, created_by=manifest.created_by, created_at_ms=manifest.created_at_ms,
            deleted_at_ms=deleted_at_ms,
        )
        session.add(row)
        session.flush()
        session.add_all(VersionFile(version_id=row.id, path=f.path, sha256=f.sha256, size=f.size) for f in manifest.files)
        session.add_all(VersionTag(version_id=row.id, tag=t) for t in sorted(set(manifest.tags)))
        session.add_all(VersionMetric(version_id=row.id, key=k, value=v) for k, v in manifest.metrics.items())
        session.add_all(VersionMetadata(version_id=row.id, key=k, value_json=json.dumps(v)) for k, v in manifest.metadata.items())

    def _move_alias(self, session: Any, model: Any, alias: str, version: int | None, user: str) -> AliasChange | None:
        from sqlalchemy import select

        from hub.registry.schema import AliasHistory, ModelAlias

        row = session.scalars(select(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.alias == alias)).first()
        before = row.version if row is not None else None
        if before == version:
            return None
        if version is None:
            session.delete(row)
        elif row is None:
            session.add(ModelAlias(model_id=model.id, alias=alias, version=version))
        else:
            row.version = version
        stamp = now_ms()
        session.add(AliasHistory(model_id=model.id, alias=alias, from_version=before, to_version=version, changed_by=user, changed_at_ms=stamp))
        return AliasChange(model.name, alias, before, version, user, from_millis(stamp))

    def set_alias(self, name: str, alias: str, version: int, user: str) -> AliasChange | None:
        """Point ``alias`` at ``version``; None when it already pointed there.

        Raises:
            ModelNotFoundError, VersionNotFoundError: no such live version.
        """
        def operation(session: Any) -> AliasChange | None:
            model = self._lock_model(session, name, create=False)
            self._version_row(session, model, version)
            return self._move_alias(session, model, alias, version, user)

        return self._retrying(operation)

    def delete_alias(self, name: str, alias: str, user: str) -> AliasChange:
        """Remove ``alias``.

        Raises:
            ModelNotFoundError, AliasNotFoundError: no such model or alias.
        """
        def operation(session: Any) -> AliasChange:
            model = self._lock_model(session, name, create=False)
            change = self._move_alias(session, model, alias, None, user)
            if change is None:
                raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}; `hub info {name}` shows its aliases")
            return change

        return self._retrying(operation)

    def delete_version(self, name: str, version: int, user: str) -> list[AliasChange]:
        """Mark ``version`` deleted, drop the aliases on it; return those alias changes.

        Raises:
            ModelNotFoundError, VersionNotFoundError: no such live version.
        """
        from sqlalchemy import func, select

        from hub.registry.schema import ModelAlias, ModelVersionRow

        def operation(session: Any) -> list[AliasChange]:
            model = self._lock_model(session, name, create=False)
            row = self._version_row(session, model, version)
            row.deleted_at_ms = now_ms()
            model.num_versions -= 1
            changes = []
            for alias in session.scalars(select(ModelAlias.alias).where(ModelAlias.model_id == model.id, ModelAlias.version == version)).all():
                changes.append(self._move_alias(session, model, alias, None, user))
            session.flush()
            model.latest_version = session.scalar(
                select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id, ModelVersionRow.deleted_at_ms.is_(None))
            )
            model.updated_at_ms = row.deleted_at_ms
            return changes

        return self._retrying(operation)

    def reconcile(self, changes: Sequence[ModelChanges], user: str) -> None:
        """Apply what ``hub reindex`` found (see :meth:`hub.Hub.reindex`), all in one transaction.

        Rows are added, marked deleted or (``replace``) swapped for the store's; no number is
        ever freed. Alias history is appended as the store recorded it (who, when); aliases are
        then set where that history ends, or, for a store with no history, moved by ``user``.
        """
        from sqlalchemy import delete, select

        from hub.registry.schema import AliasHistory, ModelAlias, ModelVersionRow

        def operation(session: Any) -> None:
            for change in changes:
                model = self._lock_model(session, change.name, create=True)
                stamp = now_ms()
                for number in change.delete:
                    self._version_row(session, model, number).deleted_at_ms = stamp
                for manifest, _ in change.replace:
                    session.execute(delete(ModelVersionRow).where(ModelVersionRow.model_id == model.id,
                                                                  ModelVersionRow.version == manifest.version))
                for manifest, digest in [*change.add, *change.replace]:
                    self._insert_version(session, model, manifest, digest, deleted_at_ms=None if digest else stamp)
                session.flush()
                for alias, moves in change.history.items():
                    if change.reset_history.get(alias):
                        session.execute(delete(AliasHistory).where(AliasHistory.model_id == model.id, AliasHistory.alias == alias))
                    session.add_all(AliasHistory(model_id=model.id, alias=alias, from_version=m["from"], to_version=m["to"],
                                                 changed_by=m["by"], changed_at_ms=m["at_ms"]) for m in moves)
                for alias, number in change.aliases.items():
                    row = session.scalars(select(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.alias == alias)).first()
                    if number is None and row is not None:
                        session.delete(row)
                    elif number is not None and row is None:
                        session.add(ModelAlias(model_id=model.id, alias=alias, version=number))
                    elif row is not None:
                        row.version = number
                for alias, number in change.moves.items():
                    self._move_alias(session, model, alias, number, user)
                session.flush()
                rows = session.execute(select(ModelVersionRow.version, ModelVersionRow.created_at_ms, ModelVersionRow.deleted_at_ms)
                                       .where(ModelVersionRow.model_id == model.id)).all()
                live = [(number, created) for number, created, deleted in rows if deleted is None]
                model.latest_version = max((number for number, _ in live), default=None)
                model.num_versions = len(live)
                model.created_at_ms = min((created for _, created in live), default=model.created_at_ms)
                model.updated_at_ms = max([model.updated_at_ms, *(created for _, created in live)])

        self._retrying(operation)
