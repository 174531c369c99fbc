"""Publish: upload a model's files, describe it, and the hub makes it a new version.

Two ways in: a ``.safetensors`` file with an optional ``config.json`` (a modelhub config,
``{"architecture": ..., "config": {...}}``, or a Hugging Face one, which makes the pair a
Hugging Face folder), or a zipped Hugging Face folder. Every upload goes through
``store_upload`` (size and type checked before a byte is written); the hub checks the rest
and writes nothing when it refuses.

:func:`publish_uploads` takes file-like uploads (``name``, ``size``, ``getvalue()``), so
tests can call it directly; the form runs only when Streamlit runs this file as a page.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from hub.errors import HubError, InvalidArgumentError
from hub.limits import loads
from webui.auth import Visitor, current_visitor, page_visitor
from webui.common import MAX_UPLOAD_MB, extract_zip, model_link, private_folder, rename_into_place, show_error, store_upload

WEIGHTS_TYPES = (".safetensors",)
CONFIG_TYPES = (".json",)
ZIP_TYPES = (".zip",)
WEIGHTS_AND_CONFIG, ZIPPED_FOLDER = "Weights (.safetensors) and config.json", "Zipped Hugging Face folder"
CONFIG_FORM = ('{"architecture": "mlp", "config": {"in_features": 64, ...}} (as in modelhub.json), '
               "or a Hugging Face config.json (with model_type)")


@dataclass(frozen=True)
class Details:
    """What the form says about the model besides its files; empty fields are None or empty."""

    aliases: tuple[str, ...] = ()
    task: str | None = None
    license: str | None = None
    tags: tuple[str, ...] = ()
    description: str | None = None
    card: str | None = None


def split_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c "`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def read_config(path: Path) -> dict[str, Any]:
    """An uploaded config.json: a modelhub config or a Hugging Face one.

    Raises:
        InvalidArgumentError: not JSON, not an object, or neither kind of config.
    """
    try:
        settings = loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:  # ValueError: not JSON, or nested too deep
        raise InvalidArgumentError(f"{path.name} is not valid JSON ({error}); expected {CONFIG_FORM}") from None
    if not isinstance(settings, dict) or not ({"model_type", "architecture"} & set(settings)):
        raise InvalidArgumentError(f"{path.name} names no architecture; expected {CONFIG_FORM}")
    return settings


def hugging_face_folder(weights: Path, config: Path) -> Path:
    """The uploaded weights beside the uploaded config as ``config.json``: the folder ``import_hf`` reads.

    Made once per pair, inside the weights' upload folder, under a private name then renamed into place.
    """
    folder = weights.parent / f"hf-{hashlib.sha256(config.read_bytes()).hexdigest()[:16]}"
    if not folder.is_dir():  # another session may be making the same folder: each makes one of its own
        staging = private_folder(folder)
        try:
            shutil.copyfile(weights, staging / weights.name)
            shutil.copyfile(config, staging / "config.json")
            rename_into_place(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def import_folder(hub: Any, folder: Path, name: str, details: Details) -> Any:
    """``hub.import_hf`` the folder with the form's details (they replace its README's task, license and tags).

    Raises:
        HubError: see :meth:`hub.Hub.import_hf`; nothing is published.
    """
    return hub.import_hf(str(folder), name, aliases=details.aliases, task=details.task, license=details.license,
                         tags=details.tags, description=details.description, card=details.card)


def publish_uploads(name: str, details: Details, *, weights: Any = None, config: Any = None, zipped: Any = None,
                    visitor: Visitor | None = None) -> Any:
    """Publish uploaded files as a new version of ``name``, as ``visitor`` (who must be allowed to write it).

    Args:
        name: ``model`` or ``namespace/model``.
        details: aliases, task, license, tags, description and card.
        weights: a ``.safetensors`` upload (an object with ``name``, ``size`` and ``getvalue()``).
        config: with ``weights``, an optional ``config.json`` upload (see ``CONFIG_FORM``).
        zipped: instead of ``weights``, a zipped Hugging Face folder.
        visitor: who publishes (default this session's :func:`webui.auth.current_visitor`).

    Returns:
        The new version.

    Raises:
        AuthenticationError, PermissionDeniedError: ``visitor`` may not write ``name`` (checked first:
            nothing is stored).
        HubError: the uploads are too big, of the wrong type or unsafe; the name, aliases or
            details are invalid; the weights don't fit the architecture. Nothing is published.
    """
    visitor = visitor or current_visitor()
    if (weights is None) == (zipped is None):
        raise InvalidArgumentError("upload a .safetensors file (with its config.json) or a zipped Hugging Face folder")
    with visitor.writing(name, f"publishing {name!r}"):
        return _publish(visitor.hub, name, details, weights, config, zipped)


def _publish(hub: Any, name: str, details: Details, weights: Any, config: Any, zipped: Any) -> Any:
    """The uploads stored, checked and published (see :func:`publish_uploads`)."""
    if zipped is not None:
        return import_folder(hub, extract_zip(store_upload(zipped, allowed=ZIP_TYPES)), name, details)
    weights_path = store_upload(weights, allowed=WEIGHTS_TYPES)
    config_path = store_upload(config, allowed=CONFIG_TYPES) if config is not None else None
    settings = read_config(config_path) if config_path is not None else {}
    if "model_type" in settings:
        return import_folder(hub, hugging_face_folder(weights_path, config_path), name, details)
    return hub.publish(
        weights_path, name, architecture=settings.get("architecture"), config=settings.get("config"),
        aliases=details.aliases, task=details.task, license=details.license, tags=details.tags,
        description=details.description, card=details.card,
    )


def render() -> None:
    """The page: which files, the form, and what came of it."""
    visitor = page_visitor()
    st.title("Publish a model")
    source = st.radio("Files", [WEIGHTS_AND_CONFIG, ZIPPED_FOLDER], horizontal=True, key="source")
    with st.form("publish"):
        name = st.text_input("Model name", placeholder="acme/my-model", key="name",
                             help="'model' or 'namespace/model': lowercase letters, digits, '.', '_' and '-'.")
        weights = config = zipped = None
        if source == WEIGHTS_AND_CONFIG:
            weights = st.file_uploader("Weights", type=list(WEIGHTS_TYPES), max_upload_size=MAX_UPLOAD_MB, key="weights")
            config = st.file_uploader("config.json (optional)", type=list(CONFIG_TYPES), max_upload_size=MAX_UPLOAD_MB,
                                      key="config",
                                      help=f"{CONFIG_FORM}. Without one the version holds weights only.")
        else:
            zipped = st.file_uploader("Hugging Face folder, zipped", type=list(ZIP_TYPES), max_upload_size=MAX_UPLOAD_MB,
                                      key="zipped",
                                      help="config.json, *.safetensors (or shards and their index), tokenizer files, README.md.")
        left, right = st.columns(2)
        aliases = left.text_input("Aliases", placeholder="production, staging", help="Comma-separated.", key="aliases")
        task = right.text_input("Task", placeholder="classification", key="task")
        license_name = left.text_input("License", placeholder="apache-2.0", key="license")
        tags = right.text_input("Tags", placeholder="digits, vision", help="Comma-separated.", key="tags")
        description = st.text_input("Description", placeholder="One paragraph about the model.", key="description")
        card = st.text_area("Model card (Markdown)", height=200, key="card")
        st.caption("A Hugging Face folder brings its task, license, tags and card (its README.md); "
                   "what you fill in here replaces them.")
        submitted = st.form_submit_button("Publish", type="primary")
    if not submitted:
        return
    details = Details(split_list(aliases), task.strip() or None, license_name.strip() or None, split_list(tags),
                      description.strip() or None, card.strip() or None)
    try:
        version = publish_uploads(name.strip(), details, weights=weights, config=config, zipped=zipped, visitor=visitor)
    except HubError as error:
        show_error(error)
        return
    st.success(f"Published {model_link(version.ref)}", icon=":material/check_circle:")
    st.code(f'import hub\nmodel = hub.load("{version.ref}")', language="python")


# Streamlit runs a page as "__main__"; importing this module (as the tests do) only defines the functions.
if __name__ == "__main__":
    render()
