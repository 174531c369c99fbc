"""The ``Hub``: publish, load, list, alias, download, verify and collect garbage.

A ``Hub`` joins three parts: the store (content-addressed bytes and the pointers beside them,
:mod:`hub.storage`, :mod:`hub.refs`), and the registry database that indexes manifests. It is a
facade: each method is a service's (:mod:`hub.catalog`, :mod:`hub.publisher`, :mod:`hub.aliases`,
:mod:`hub.files`, :mod:`hub.maintenance`, :mod:`hub.exports`), whose docstring it shows. The module-level functions in
:mod:`hub` call a default ``Hub`` built from ``HUB_HOME`` and ``HUB_REGISTRY_URL``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from hub import settings
from hub.aliases import Aliases
from hub.catalog import Catalog
from hub.exports import Exports
from hub.files import Files
from hub.maintenance import Maintenance
from hub.publisher import Publisher
from hub.refs import RefStore
from hub.registry import Database, RegistryStore
from hub.storage import open_store

__all__ = ["Hub"]


def _service(attribute: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """A :class:`Hub` method that calls ``method`` on the service in ``hub.<attribute>``, with its
    signature and docstring (``inspect.signature`` and ``help`` show the service's)."""

    @functools.wraps(method)
    def call(self: Hub, *args: Any, **kwargs: Any) -> Any:
        return getattr(getattr(self, attribute), method.__name__)(*args, **kwargs)

    call.__qualname__ = f"Hub.{method.__name__}"
    call.__module__ = __name__
    return call


class Hub:
    """A model hub: a folder of blobs and a registry database.

    Args:
        home: the hub's folder (default ``$HUB_HOME`` or ``~/.cache/modelhub``).
        registry_url: SQLAlchemy URL of the registry (default ``$HUB_REGISTRY_URL``
            or ``sqlite:///<home>/registry.db``).
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, registry_url: str | None = None) -> None:
        self.home = settings.hub_home(home)
        self.blobs = open_store(self.home)
        self.refs = RefStore(self.blobs)
        self.db = Database(settings.registry_url(self.home, registry_url))
        self.registry = RegistryStore(self.db)
        self.catalog, self.publisher, self.aliases = Catalog(self), Publisher(self), Aliases(self)
        self.files, self.maintenance = Files(self), Maintenance(self)
        self.exports = Exports(self)

    def __repr__(self) -> str:
        return f"Hub(home={str(self.home)!r}, registry_url={self.db.shown_url!r})"

    def close(self) -> None:
        """Close database connections."""
        self.db.close()

    check_exists = _service("maintenance", Maintenance.check_exists)

    # --- reading --------------------------------------------------------------
    info = _service("catalog", Catalog.info)
    list_models = _service("catalog", Catalog.list_models)
    count_models = _service("catalog", Catalog.count_models)
    model_facets = _service("catalog", Catalog.model_facets)
    input_spec = _service("catalog", Catalog.input_spec)
    model_spec = _service("catalog", Catalog.model_spec)
    list_children = _service("catalog", Catalog.list_children)
    list_versions = _service("catalog", Catalog.list_versions)
    alias_history = _service("catalog", Catalog.alias_history)
    load = _service("catalog", Catalog.load)
    load_state_dict = _service("catalog", Catalog.load_state_dict)

    # --- files out ----------------------------------------------------------------
    read_card = _service("files", Files.read_card)
    download = _service("files", Files.download)
    load_tokenizer = _service("files", Files.load_tokenizer)

    # --- exports -----------------------------------------------------------------
    export = _service("exports", Exports.export)
    list_exports = _service("exports", Exports.list_exports)
    export_record = _service("exports", Exports.export_record)
    load_export = _service("exports", Exports.load_export)
    download_export = _service("exports", Exports.download_export)

    # --- publishing -----------------------------------------------------------
    publish = _service("publisher", Publisher.publish)
    import_hf = _service("publisher", Publisher.import_hf)

    # --- aliases and deletion -------------------------------------------------
    set_alias = _service("aliases", Aliases.set_alias)
    delete_alias = _service("aliases", Aliases.delete_alias)
    delete_version = _service("aliases", Aliases.delete_version)

    # --- maintenance ----------------------------------------------------------
    verify = _service("maintenance", Maintenance.verify)
    gc = _service("maintenance", Maintenance.gc)
    reindex = _service("maintenance", Maintenance.reindex)
    upgrade_db = _service("maintenance", Maintenance.upgrade_db)
