"""Alembic, driven from code: the migrations live in ``hub/migrations``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Any = None) -> Any:
    """An Alembic ``Config`` for modelhub's migrations, bound to ``connection`` if given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Any, revision: str = "head") -> None:
    """Upgrade the database behind ``connection`` to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def head_revision() -> str:
    """The newest revision in the migrations folder."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
