"""The registry: an index of model versions in SQLite or PostgreSQL."""

from hub.registry.database import SCHEMA_HEAD, Database
from hub.registry.store import RegistryStore

__all__ = ["Database", "RegistryStore", "SCHEMA_HEAD"]
