"""The ``Hub``: publish, load, list, alias, download, verify and collect garbage.

A ``Hub`` joins three parts: the blob store (content-addressed bytes), the
pointer files beside it, and the registry database that indexes manifests.
The module-level functions in :mod:`hub` call a default ``Hub`` built from
``HUB_HOME`` and ``HUB_REGISTRY_URL``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import settings
from hub.blobstore import CHUNK_SIZE, BlobStore, temp_file
from hub.entities import AliasChange, FileEntry, GcReport, ModelSummary, ModelVersion, ReindexReport, VerifyReport
from hub.errors import (
    DamagedRegistryError,
    HubError,
    IntegrityError,
    InvalidArgumentError,
    ModelNotFoundError,
    UnsafeFormatError,
    VersionExistsError,
)
from hub.inputs import METADATA_KEY as INPUT_KEY
from hub.inputs import InputSpec, check_input, input_spec_of
from hub.manifest import Manifest, check_relative_path
from hub.reference import folder_name, parse_reference, validate_alias, validate_name, validate_version
from hub.refs import RefStore
from hub.safetensors_io import read_header
from hub.registry import Database, RegistryStore
from hub.registry.store import now_ms

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Hub"]

SORTS = ("name", "updated", "size")
CLEANUP_WAIT_S = 10.0  # how long a failed publish waits for others to commit before it removes its new blobs


def _applied(repair: Any, full_disk: list[Any] | None) -> bool:
    """Apply one of gc's store repairs; on a full disk, put it in ``full_disk`` (False) or, with None,
    raise :class:`NoSpaceError`: gc frees space first and writes after."""
    from hub.errors import NoSpaceError, storage_error

    try:
        repair.apply()
        return True
    except OSError as exc:
        problem = storage_error(exc, repair.path)
        if not isinstance(problem, NoSpaceError):
            raise
        if full_disk is None:
            raise problem from exc
        full_disk.append(repair)
        return False


class Hub:
    """A model hub: a folder of blobs and a registry database.

    Args:
        home: the hub's folder (default ``$HUB_HOME`` or ``~/.cache/modelhub``).
        registry_url: SQLAlchemy URL of the registry (default ``$HUB_REGISTRY_URL``
            or ``sqlite:///<home>/registry.db``).
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, registry_url: str | None = None) -> None:
        self.home = settings.hub_home(home)
        self.blobs = BlobStore(self.home)
        self.refs = RefStore(self.home)
        self.db = Database(settings.registry_url(self.home, registry_url))
        self.registry = RegistryStore(self.db)

    def __repr__(self) -> str:
        return f"Hub(home={str(self.home)!r}, registry_url={self.db.shown_url!r})"

    def close(self) -> None:
        """Close database connections."""
        self.db.close()

    def check_exists(self, *, registry: bool = True, store: bool = False) -> None:
        """Make sure there is a hub here to read, creating nothing.

        A read finds nothing in a hub that is not there, and would leave an empty one behind (a
        SQLite registry, folders) where ``HUB_HOME`` points by mistake; the command line's reads
        (``list``, ``info``, ``verify``, ``download``, ...) ask this first. Writes that make a hub
        (:meth:`publish`, :meth:`import_hf`, ``hub demo``, :meth:`upgrade_db`) don't.

        Args:
            registry: the registry must be there with modelhub's tables (a SQLite registry: its file).
                A registry outside ``home`` (PostgreSQL) is enough for reads of the registry alone.
            store: the home folder (blobs, pointers) must be there too.

        Raises:
            HubNotFoundError: saying what is missing, and how to make a hub or where to point ``HUB_HOME``.
            RegistryError: the registry can't be reached or read (``DamagedRegistryError``: see :meth:`reindex`).
        """
        from hub.errors import HubNotFoundError

        path = self.db.sqlite_path
        inside = path is not None and path.parent == self.home  # the default: the hub is its folder, registry and all
        there = self.home.is_dir()
        where = self.home if inside else f"{self.home} with the registry at {self.db.shown_url}"
        none_here = HubNotFoundError(f"no hub at {where}: `hub demo` makes one with sample models, or `hub publish` "
                                     "creates it; set HUB_HOME to use another")
        if registry and ((path is not None and not path.is_file()) or self.db.schema_revision() is None):
            if there and next(self.refs.names(), None) is not None:
                raise HubNotFoundError(f"no registry at {self.db.shown_url}, though the store at {self.home} holds models: "
                                       "`hub reindex` rebuilds the registry from it")
            raise none_here
        if store and not there:
            if inside:
                raise none_here
            raise HubNotFoundError(f"no hub at {self.home}: the folder does not exist, so the files of the registry's versions "
                                   f"({self.db.shown_url}) are not here; set HUB_HOME to the hub's folder")

    # --- reading --------------------------------------------------------------

    def info(self, ref: str) -> ModelVersion:
        """The version that ``ref`` names (``name``, ``name:VERSION`` or ``name@ALIAS``).

        Raises:
            InvalidReferenceError: ``ref`` is malformed.
            ModelNotFoundError: no such model, version (``VersionNotFoundError``) or alias (``AliasNotFoundError``).
        """
        return self.registry.resolve(parse_reference(ref))

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
    ) -> list[ModelSummary]:
        """Models with a live version, each described by its latest version.

        Args:
            search: text to find in the name or description (case-insensitive).
            task, tag, license: keep models whose latest version has these.
            sort: ``"name"``, ``"updated"`` (newest first) or ``"size"`` (largest first).
            limit: page size (None for all); offset: how many to skip.

        Raises:
            InvalidArgumentError: a bad sort, limit or offset.
        """
        if sort not in SORTS:
            raise InvalidArgumentError(f"sort {sort!r} is unknown; use one of {', '.join(SORTS)}")
        if (limit is not None and (not isinstance(limit, int) or limit < 0)) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"limit and offset must be non-negative whole numbers, got {limit!r} and {offset!r}").about("limit", "offset")
        return self.registry.list_models(search, task=task, tag=tag, license=license, sort=sort, limit=limit, offset=offset)

    def count_models(self, search: str | None = None, *, task: str | None = None, tag: str | None = None,
                     license: str | None = None) -> int:
        """How many models :meth:`list_models` finds with these filters (for paging)."""
        return self.registry.count_models(search, task=task, tag=tag, license=license)

    def model_facets(self) -> dict[str, list[str]]:
        """``{"task": [...], "tag": [...], "license": [...]}``: the values to filter models by."""
        return self.registry.model_facets()

    def read_card(self, ref: str) -> str | None:
        """The version's model card (``README.md``, front matter included), or None when it has none.

        Raises:
            ModelNotFoundError: see :meth:`info`.
            IntegrityError: the card's blob is missing or damaged.
        """
        version = self.info(ref)
        entry = next((f for f in version.files if f.path == "README.md"), None)
        if entry is None:
            return None
        problem = self.blobs.problem(entry.sha256, entry.size, check_hash=False)
        data = self.blobs.read_bytes(entry.sha256) if problem is None else b""
        if problem is None and hashlib.sha256(data).hexdigest() != entry.sha256:
            problem = f"blob {entry.sha256} does not match its sha256 (corrupted)"
        if problem:
            raise IntegrityError(f"{version.ref}: file 'README.md': {problem}; run `hub verify`")
        return data.decode("utf-8", errors="replace")

    def input_spec(self, ref: str | ModelVersion) -> InputSpec:
        """What the version takes as input: kind, shape, value range, feature names, ...

        The facts the version recorded when it was published (see :meth:`publish`'s ``input``);
        for a version that recorded none, what its architecture and config imply
        (``recorded`` False). A later ``model_spec`` will hold this beside the output facts.

        Args:
            ref: a reference (see :meth:`info`), or a :class:`ModelVersion` already read.

        Returns:
            An :class:`InputSpec`.

        Raises:
            ModelNotFoundError: see :meth:`info`.
        """
        return input_spec_of(ref if isinstance(ref, ModelVersion) else self.info(ref))

    def list_children(self, ref: str) -> list[ModelVersion]:
        """Versions derived from ``ref`` (their ``parent`` is it): fine-tunes, distillations, ...

        Raises:
            ModelNotFoundError: see :meth:`info`.
        """
        return self.registry.list_children(self.info(ref).ref)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every live version of model ``name``, oldest first.

        Raises:
            InvalidReferenceError, ModelNotFoundError.
        """
        return self.registry.list_versions(validate_name(name))

    def alias_history(self, name: str, alias: str) -> list[AliasChange]:
        """Every move of ``alias`` on ``name`` (who, when, from, to), oldest first; an alias since
        removed keeps its history.

        Raises:
            InvalidReferenceError, ModelNotFoundError.
            AliasNotFoundError: ``name`` has no such alias and never had (the message names those it has).
        """
        return self.registry.alias_history(validate_name(name), validate_alias(alias))

    # --- publishing -----------------------------------------------------------

    def publish(
        self,
        source: Any,
        name: str,
        *,
        architecture: str | None = None,
        config: Mapping[str, Any] | None = None,
        version: int | None = None,
        aliases: Sequence[str] = (),
        description: str | None = None,
        card: str | Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        task: str | None = None,
        license: str | None = None,
        metrics: Mapping[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
        input: InputSpec | Mapping[str, Any] | None = None,
        parent: str | None = None,
        share_weights: bool = True,
        files: Mapping[str, str | os.PathLike[str]] | None = None,
        _fence: Any = None,
    ) -> ModelVersion:
        """Publish ``source`` as a new version of ``name``.

        Args:
            source: an ``nn.Module``, a ``dict[str, Tensor]``, a ``.safetensors`` file, or a
                folder holding ``*.safetensors`` (other files there travel with the version).
                A module from :func:`hub.create` or :func:`hub.load` brings its architecture,
                config and parent.
            name: ``model`` or ``namespace/model``.
            architecture, config: how to rebuild the module (see :func:`hub.create`).
            version: an explicit version number; default the next one.
            aliases: aliases to point at the new version (e.g. ``["production"]``).
            description: one paragraph about the model.
            card: model card text (Markdown), or a dict of card fields (``text`` is the body).
            tags, task, license: how people find it. A new version of the same model as its
                parent (say, a module loaded from it) keeps the parent's where they are not given.
            metrics: ``{name: number}``, e.g. held-out accuracy.
            metadata: any JSON-serializable facts.
            input: what the model takes (an :class:`InputSpec` or a dict of its fields:
                ``kind``, ``shape``, ``value_range``, ``background``, ``feature_names``,
                ``standardizes``), recorded as ``metadata["input"]`` (also accepted there);
                what is left out is filled in from the architecture's config. Default: the
                input facts of the version the source came from (a module from :func:`hub.load`,
                a folder from :meth:`download`) when its architecture and config are unchanged.
                :meth:`input_spec` reads them back.
            parent: the reference this version was derived from.
            share_weights: for a module or state dict with a parent (``parent``, or the
                version a module was loaded from), reuse each of the parent's weight files
                that holds at least half its bytes unchanged (also under a key prefix such
                as ``bert.``) and store only the other tensors; False stores one
                self-contained file.
            files: more files to store with the version, ``{path in the version: local file}``
                (tokenizer files, label maps, ...); not weights, not pickles.
            _fence: internal: ``fn(session)``, run inside the transaction that reserves the
                version number, before commit; what it raises publishes nothing (the
                fine-tuning worker's check that it still owns its job).

        Returns:
            The new :class:`ModelVersion`.

        Raises:
            InvalidReferenceError: bad name, alias, version or parent reference.
            InvalidSourceError, UnsafeFormatError: ``source`` can't be published safely.
            ArchitectureNotFoundError, ArchitectureError, WeightsMismatchError: the weights
                don't fit the architecture.
            VersionExistsError: ``version`` is taken.
            ModelNotFoundError: ``parent`` does not exist.
            InvalidArgumentError: bad tags, metrics, metadata, input facts or card.
            NoSpaceError, ReadOnlyError: the disk is full, or the home is read-only or not this
                user's (the message names the path). A failed publish leaves no blob, pointer
                or registry row behind; where it can't check, it says so and ``hub gc`` removes them.
        """
        from hub import publishing as p

        # 1. Check every input; nothing is written before this block ends.
        validate_name(name)
        alias_list = [validate_alias(a) for a in ([aliases] if isinstance(aliases, str) else aliases)]
        if version is not None:
            version = validate_version(version)
        tag_tuple = p.check_tags(tags) if tags is not None else None
        task, license = p.check_text(task, "task"), p.check_text(license, "license")
        description = p.check_text(description, "description", limit=None)
        metric_values, metadata_values = p.check_metrics(metrics), p.check_metadata(metadata)
        prepared = p.prepare_source(source)
        prepared.extra_files.update(p.check_extra_files(files, prepared))
        architecture = architecture if architecture is not None else prepared.architecture
        if config is not None and not isinstance(config, Mapping):
            raise InvalidArgumentError(f"config must be a dict, not {type(config).__name__}").about("config")
        config = dict(config) if config is not None else (prepared.config if architecture == prepared.architecture else None)
        if architecture is not None:
            from hub.architectures import check_config

            config = check_config(architecture, config or {})
        if input is not None and INPUT_KEY in metadata_values:
            raise InvalidArgumentError(f"the input facts are given twice, as input= and as metadata[{INPUT_KEY!r}]; give them once")
        if input is None:
            input = metadata_values.get(INPUT_KEY)
        if input is None and (architecture, config) == (prepared.architecture, prepared.config):
            input = prepared.input
        input_record = check_input(input, architecture=architecture, config=config)
        if input_record is not None:
            metadata_values[INPUT_KEY] = input_record
        dtype, num_parameters = p.describe_weights(prepared, architecture, config)
        parent_version = self.info(parent) if parent is not None else self._existing_parent(prepared.parent)
        parent_ref = parent_version.ref if parent_version is not None else None
        if parent_version is not None and parent_version.name == name:  # the model's next version: the same kind of model
            task, license = task or parent_version.task, license or parent_version.license
            tag_tuple = parent_version.tags if tag_tuple is None else tag_tuple
        tag_tuple = tag_tuple or ()
        card_bytes = p.render_card(
            card, license=license, tags=tag_tuple, pipeline_tag=task, base_model=parent_ref, metrics=metric_values or None
        )
        if version is not None and self.registry.version_exists(name, version):
            raise VersionExistsError(f"{name}:{version} already exists and versions are immutable; publish without version=").about(
                version="version=")

        # 2-3. gc must not collect a blob this version needs before the registry records it:
        # hold the store from the first blob written (or reused) to the commit; if it fails, nothing is left.
        with self._publishing():
            # 2. Store the bytes (content-addressed: unchanged weights add nothing).
            entries, weights, views = self._store_files(prepared, card_bytes, parent_version if share_weights else None)
            user = settings.current_user()

            # 3. Index it: the registry assigns the number, the manifest records it.
            def make_manifest(number: int) -> tuple[Manifest, str]:
                manifest = Manifest(
                    name=name, version=number, created_at_ms=now_ms(), files=entries, weights=weights,
                    architecture=architecture, config=config or {}, dtype=dtype, num_parameters=num_parameters,
                    task=task, license=license, tags=tag_tuple, description=description, metrics=metric_values,
                    metadata=metadata_values, parent=parent_ref, tied=dict(sorted(prepared.tied.items())), created_by=user,
                    weight_views=views,
                )
                digest, _ = self.blobs.put_bytes(manifest.to_json())
                return manifest, digest

            reserved: list[int] = []

            def on_reserved(manifest: Manifest, digest: str) -> None:
                try:
                    self.refs.reserve_version(name, manifest.version, digest)
                except FileExistsError as exc:
                    raise VersionExistsError(f"{exc}; versions are immutable, so publish without version=").about(
                        version="version=") from None
                reserved.append(manifest.version)

            try:
                published = self.registry.add_version(name, version, make_manifest, on_reserved, alias_list, user, description,
                                                      floor=lambda: self.refs.highest(name), fence=_fence)
            except BaseException:
                for number in reserved:
                    if not self.registry.version_exists(name, number):
                        self.refs.remove_pending(name, number)
                raise
            self.refs.commit_version(name, published.version)
            for alias in alias_list:
                self._write_alias(name, alias, published.version)
            return published

    @contextmanager
    def _publishing(self) -> Iterator[None]:
        """Hold the store (:meth:`BlobStore.in_use`) for a publish; when the publish fails, remove
        the blobs it added, and word a disk failure by its cause (:class:`NoSpaceError`, :class:`ReadOnlyError`)."""
        from hub.errors import StorageError, storage_error

        created: set[str] = set()
        try:
            with self.blobs.in_use(), self.blobs.recording_new() as created:
                yield
        except BaseException as error:
            note = self._discard_new_blobs(created)
            problem = storage_error(error, self.home) if isinstance(error, OSError) else None
            if problem is not None and problem is not error:
                raise type(problem)(f"{problem}{'; ' + note if note else ''}", errno=problem.errno, path=problem.filename) from error
            if note and isinstance(error, StorageError):
                error.message = f"{error.message}; {note}"
            elif note and isinstance(error, HubError) and len(error.args) == 1 and isinstance(error.args[0], str):
                error.args = (f"{error.args[0]}; {note}",)
            elif note:
                error.add_note(note)
            raise

    def _discard_new_blobs(self, new: set[str]) -> str | None:
        """After a failed publish: remove the blobs it added (``new``) that no version references;
        None when that is done, else why they are left for ``hub gc``.

        Under the store's exclusive lock (:meth:`BlobStore.collecting`), which waits for the publishes
        under way to commit, an unreferenced blob is garbage by gc's own rule, also one that another
        publish stored at the same time: that one failed too, or it would be referenced now.
        """
        from hub import blobstore

        if not new:
            return None
        left = f"its {len(new)} new blob(s) are left for `hub gc`"
        if blobstore.fcntl is None:
            return f"{left} (no file locks on this system)"
        if self.blobs.held_here:
            return f"{left} (this process still holds the store)"
        try:
            with self.blobs.collecting(timeout=CLEANUP_WAIT_S):
                from hub.reconcile import unindexed_digests

                if self.db.schema_revision() is not None:  # what gc keeps: the registry's, and versions only the store knows
                    referenced = self.registry.referenced_digests() | unindexed_digests(self)
                elif not self.refs.files():
                    referenced = set()  # a new hub whose registry was never created: nothing references anything
                else:
                    return f"{left} (the registry has no tables yet, and refs/ has pointers)"
                for digest in sorted(new - referenced):
                    self.blobs.path(digest).unlink(missing_ok=True)
        except TimeoutError:
            return f"{left} (other publishes held the store for {CLEANUP_WAIT_S:g} s)"
        except (HubError, OSError) as exc:
            return f"{left} (the registry could not be read to check them: {exc})"
        return None

    def _store_files(
        self, prepared: Any, card_bytes: bytes | None, parent: ModelVersion | None
    ) -> tuple[tuple[FileEntry, ...], tuple[str, ...], dict[str, dict[str, Any]]]:
        """Write a prepared source's weights, files and card into the blob store.

        In-memory tensors reuse ``parent``'s weight files where they can
        (:func:`hub.publishing.share_with_parent`); only the other tensors are written.

        Returns:
            ``(files, weight file paths, weight views)`` for the manifest.
        """
        from hub.publishing import new_weights_path, share_with_parent, stored_as_checked
        from hub.safetensors_io import iter_safetensors_bytes

        files: dict[str, tuple[str, int]] = {}
        weights, views = sorted(prepared.weight_files), {}
        if prepared.tensors is not None:
            tensors = prepared.tensors
            if parent is not None:
                usable = [e for e in map(parent.file, parent.weight_files) if self.blobs.claim(e.sha256, e.size)]
                views, tensors = share_with_parent(tensors, {e.path: self.blobs.path(e.sha256) for e in usable})
                files.update((e.path, (e.sha256, e.size)) for e in usable if e.path in views)
            weights = list(views)
            if tensors:
                weights.append(new_weights_path(views))
                chunks, _ = iter_safetensors_bytes(tensors)
                files[weights[-1]] = self.blobs.write(chunks)
            elif list(views.values()) == [{"prefix": "", "skip": []}]:
                views = {}  # the parent's one file, unchanged: plain whole-file reuse, as before sharing
        for path, local in prepared.weight_files.items():
            files[path] = self.blobs.put_file(local, check=stored_as_checked(local, prepared.headers[path]))
        for path, local in prepared.extra_files.items():
            files[path] = self.blobs.put_file(local)
        if card_bytes is not None:
            files["README.md"] = self.blobs.put_bytes(card_bytes)
        entries = tuple(FileEntry(path, sha, size) for path, (sha, size) in sorted(files.items()))
        return entries, tuple(weights), views

    def _existing_parent(self, parent: str | None) -> ModelVersion | None:
        """The version a module remembers as its parent, if it is in this registry."""
        if parent is None:
            return None
        try:
            return self.info(parent)
        except HubError:
            return None

    def import_hf(self, source: str, name: str | None = None, *, revision: str | None = None, convert_pickle: bool = False,
                  auto_class: str | None = None, aliases: Sequence[str] = (), task: str | None = None, license: str | None = None,
                  tags: Iterable[str] = (), description: str | None = None, card: str | Mapping[str, Any] | None = None) -> ModelVersion:
        """Publish a model in the Hugging Face layout as a new version.

        Args:
            source: a local folder (``config.json``, ``*.safetensors`` or shards with their
                index, tokenizer files, ``README.md``), or a Hugging Face repo id fetched with
                ``huggingface_hub.snapshot_download`` (honouring ``HF_HUB_OFFLINE``,
                ``HF_ENDPOINT`` and ``HF_TOKEN``).
            name: the hub name (default: the repo id, or the folder's name, lowercased).
            revision: the repo revision to fetch.
            convert_pickle: convert pickle weights (``pytorch_model.bin``, ``*.pt``) with
                ``torch.load(weights_only=True)`` instead of refusing them; recorded in metadata.
            auto_class: the transformers auto class to build it with (default: read from
                ``config.json``'s ``architectures``, e.g. ``BertForSequenceClassification`` gives
                ``AutoModelForSequenceClassification``; ``AutoModel`` when it names no known head).
            aliases, task, license, tags, description, card: as for :meth:`publish`; task, license
                and tags given here replace those read from the folder's model card, and a card
                given here replaces its ``README.md``.

        Returns:
            The new :class:`ModelVersion`: architecture ``transformers`` when there is a
            ``config.json``; task, license and tags from the model card's YAML.

        Raises:
            UnsafeFormatError: only pickle weights and no ``convert_pickle``.
            ModelNotFoundError: the repo can't be fetched.
            InvalidReferenceError: no valid name could be made.
            ArchitectureError: ``config.json`` has no ``model_type``, or ``auto_class`` is not one.
            WeightsMismatchError: the weights don't fit the model the config describes.
        """
        from hub.huggingface import import_hf

        return import_hf(self, source, name, revision=revision, convert_pickle=convert_pickle, auto_class=auto_class,
                         aliases=aliases, task=task, license=license, tags=tags, description=description, card=card)

    def load_tokenizer(self, ref: str) -> Any:
        """The tokenizer published with a model.

        Returns:
            ``transformers.AutoTokenizer`` when transformers is installed, else a
            ``tokenizers.Tokenizer`` from ``tokenizer.json``.

        Raises:
            ModelNotFoundError: see :meth:`info`, or the version has no tokenizer files.
            IntegrityError: a tokenizer file's blob is missing or damaged.
            UnsafeFormatError: a file path would leave the folder, or the tokenizer can't be loaded
                without running code shipped with the model (which modelhub never does).
        """
        version = self.info(ref)
        small = [f for f in version.files if f.path not in version.weight_files and not f.path.endswith(".safetensors")]
        if not any(f.path in ("tokenizer.json", "tokenizer_config.json", "vocab.txt") for f in small):
            raise ModelNotFoundError(f"{version.ref} has no tokenizer files (tokenizer.json, tokenizer_config.json, vocab.txt)")
        folder = self.home / "snapshots" / folder_name(version.name) / f"{version.version}-tokenizer"
        destinations = {entry: folder / check_relative_path(entry.path) for entry in small}  # every path checked first
        for entry, destination in destinations.items():
            if not (destination.is_file() and destination.stat().st_size == entry.size):
                destination.parent.mkdir(parents=True, exist_ok=True)
                self._copy_blob(version, entry.path, entry.sha256, entry.size, destination)
        try:
            from transformers import AutoTokenizer
        except ImportError:
            from tokenizers import Tokenizer

            return Tokenizer.from_file(str(folder / "tokenizer.json"))
        try:  # never the model's own code (tokenizer_config.json's auto_map): transformers would ask on stdin
            return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        except (ValueError, OSError) as exc:
            raise UnsafeFormatError(
                f"{version.ref}: its tokenizer can't be loaded ({str(exc)[:300]}); modelhub never runs code shipped "
                "with a model, so a tokenizer must be one transformers has (tokenizer.json or a known tokenizer_class)"
            ) from None

    # --- loading --------------------------------------------------------------

    def load(self, ref: str, *, device: Any = "auto", dtype: Any = None, strict: bool = True, verify: bool = False) -> nn.Module:
        """Load a published model, ready to use.

        Built on the meta device (no random init), given its safetensors weights
        straight on ``device``, and put in eval mode. ``model.hub_version`` is its
        :class:`ModelVersion`, so publishing it again records it as the parent.

        Args:
            ref: ``name``, ``name:VERSION`` or ``name@ALIAS``.
            device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda:1"``, a ``torch.device``.
            dtype: cast floating weights to this (``torch.float16`` or ``"bfloat16"``).
            strict: require the weights to match the module exactly.
            verify: check every weight file's sha256 first (sizes are always checked).

        Raises:
            InvalidReferenceError, ModelNotFoundError: see :meth:`info`.
            DeviceError: the device is not available.
            IntegrityError: weight bytes missing, truncated or (with ``verify``) corrupt.
            WeightsMismatchError: the version has no architecture, or weights that don't fit it.
        """
        from hub.loader import load_module

        return load_module(self.blobs, self.info(ref), device=device, dtype=dtype, strict=strict, verify=verify)

    def load_state_dict(self, ref: str, *, device: Any = "cpu", dtype: Any = None, verify: bool = False) -> dict[str, torch.Tensor]:
        """The version's weights as ``{name: tensor}`` on ``device``.

        Raises:
            See :meth:`load`.
        """
        from hub.loader import load_weights

        return load_weights(self.blobs, self.info(ref), device=device, dtype=dtype, verify=verify)

    def download(self, ref: str, local_dir: str | os.PathLike[str] | None = None) -> Path:
        """Copy a version's files into a folder, under their own names, checking every hash.

        The folder also gets ``modelhub.json`` (the version's manifest), so that
        publishing the folder again keeps the architecture and records the parent,
        and, for a ``transformers`` model without one, its ``config.json``. A version
        that shares weight files with another gets one ``model.safetensors`` holding
        exactly its tensors instead, and a ``modelhub.json`` that lists that file.

        Args:
            local_dir: where to put them (default ``<home>/snapshots/<namespace>+<model>/<version>``).

        Returns:
            The folder.

        Raises:
            IntegrityError: a stored file is missing or corrupt (nothing half-copied is left).
            UnsafeFormatError: a file path would escape the folder.
        """
        from hub.publishing import MANIFEST_FILE, WEIGHTS_FILE

        version = self.info(ref)
        target = Path(local_dir) if local_dir is not None else self.home / "snapshots" / folder_name(version.name) / str(version.version)
        root = target.resolve()
        entries = [e for e in version.files if not (version.weight_views and e.path in version.weight_files)]
        destinations = {}
        for entry in entries:  # every path and the manifest checked before anything is written
            destination = destinations[entry] = target / check_relative_path(entry.path)
            if not destination.resolve().is_relative_to(root):
                raise UnsafeFormatError(f"{version.ref}: file {entry.path!r} would be written outside {target}")
        manifest = self.blobs.read_bytes(version.digest) if self.blobs.exists(version.digest) else None
        if manifest is None or hashlib.sha256(manifest).hexdigest() != version.digest:
            problem = "is missing" if manifest is None else "does not match its sha256 (corrupted)"
            raise IntegrityError(f"{version.ref}: manifest: blob {version.digest} {problem}; run `hub verify`")
        target.mkdir(parents=True, exist_ok=True)
        for entry, destination in destinations.items():
            destination.parent.mkdir(parents=True, exist_ok=True)
            self._copy_blob(version, entry.path, entry.sha256, entry.size, destination)
        if version.weight_views:
            from hub.loader import stored_tensors
            from hub.safetensors_io import iter_safetensors_bytes

            chunks, _ = iter_safetensors_bytes(stored_tensors(self.blobs, version, verify=True), {"format": "pt"})
            merged = FileEntry(WEIGHTS_FILE, *self._write_file(target / WEIGHTS_FILE, chunks))
            record = Manifest.from_json(manifest, source=f"{version.ref} manifest")
            files = tuple(sorted([*entries, merged], key=lambda e: e.path))
            manifest = replace(record, files=files, weights=(WEIGHTS_FILE,), weight_views={}).to_json()
        if version.architecture == "transformers" and not any(e.path == "config.json" for e in version.files):
            (target / "config.json").write_text(json.dumps(version.config["hf_config"], indent=2, sort_keys=True))
        (target / MANIFEST_FILE).write_bytes(manifest)
        return target

    def _write_file(self, destination: Path, chunks: Iterable[bytes | memoryview], *, expected_sha256: str | None = None,
                    what: str = "") -> tuple[str, int]:
        """Write ``chunks`` to ``destination`` through a temporary file and a rename, hashing them.

        Returns:
            The bytes' ``(sha256, size)``.

        Raises:
            IntegrityError: they don't hash to ``expected_sha256`` (``what`` names them); nothing is left.
        """
        import hashlib

        fd, temp = temp_file(destination.parent)
        try:
            digest, size = hashlib.sha256(), 0
            with open(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                    nbytes = memoryview(chunk).nbytes
                    size += nbytes
                    if self.blobs.on_bytes is not None:
                        self.blobs.on_bytes(nbytes)
            if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
                raise IntegrityError(f"{what}: blob {expected_sha256} is corrupted; run `hub verify`")
            os.replace(temp, destination)
            return digest.hexdigest(), size
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _copy_blob(self, version: ModelVersion, path: str, sha256: str, size: int, destination: Path) -> None:
        problem = self.blobs.problem(sha256, size, check_hash=False)
        if problem:
            raise IntegrityError(f"{version.ref}: file {path!r}: {problem}; run `hub verify`")
        with open(self.blobs.path(sha256), "rb") as blob:
            chunks = iter(lambda: blob.read(CHUNK_SIZE), b"")
            self._write_file(destination, chunks, expected_sha256=sha256, what=f"{version.ref}: file {path!r}")

    # --- aliases and deletion -------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> AliasChange | None:
        """Point ``alias`` at ``version`` of ``name`` (the move is kept in its history).

        Returns:
            The change, or None if it already pointed there.

        Raises:
            InvalidReferenceError: bad name, alias (``latest`` is reserved) or version.
            ModelNotFoundError, VersionNotFoundError: no such live version.
        """
        validate_name(name)
        validate_alias(alias)
        version = validate_version(version)
        with self.blobs.in_use():  # gc, which repairs pointers from the registry, waits for both writes
            change = self.registry.set_alias(name, alias, version, settings.current_user())
            self._write_alias(name, alias, version)
        return change

    def _write_alias(self, name: str, alias: str, version: int | None) -> None:
        """After a committed alias change: its pointer, and its history in the store (append-only)."""
        from hub.reconcile import write_history

        self.refs.set_alias(name, alias, version)
        write_history(self, name, alias)

    def delete_alias(self, name: str, alias: str) -> AliasChange:
        """Remove ``alias`` from ``name``.

        Raises:
            InvalidReferenceError, ModelNotFoundError, AliasNotFoundError.
        """
        with self.blobs.in_use():
            change = self.registry.delete_alias(validate_name(name), validate_alias(alias), settings.current_user())
            self._write_alias(name, alias, None)
        return change

    def delete_version(self, ref: str) -> ModelVersion:
        """Delete one version (``name:VERSION``); its number is never reused and aliases on it are removed.

        Its blobs are freed by :meth:`gc` when no other version shares them.

        Raises:
            InvalidReferenceError: ``ref`` does not name an explicit version.
            ModelNotFoundError, VersionNotFoundError.
        """
        parsed = parse_reference(ref)
        if parsed.version is None:
            raise InvalidArgumentError(f"delete needs an explicit version like '{parsed.name}:3', not {ref!r}")
        version = self.registry.resolve(parsed)
        with self.blobs.in_use():
            for change in self.registry.delete_version(parsed.name, parsed.version, settings.current_user()):
                self._write_alias(parsed.name, change.alias, None)
            self.refs.mark_deleted(parsed.name, parsed.version)
        return version

    # --- maintenance ----------------------------------------------------------

    def _all_versions(self, ref: str | None) -> list[ModelVersion]:
        if ref is not None:
            return [self.info(ref)]
        return [v for m in self.list_models(limit=None) for v in self.list_versions(m.name)]

    def verify(self, ref: str | None = None, *, min_age_seconds: float = settings.GC_MIN_AGE_S) -> VerifyReport:
        """Check stored bytes against manifests: every live version, or just ``ref``.

        Each file's size and sha256 are checked, each weight file's safetensors header,
        and each manifest against the registry. Leftovers (interrupted writes, blobs no
        version needs, pointer files a killed process left behind) are listed for
        :meth:`gc`; they are not problems. Versions or alias moves only the store knows
        of, and pointers that disagree with the registry, are problems for :meth:`reindex`.

        Args:
            ref: one version to check (no leftovers are listed then); None for all.
            min_age_seconds: list only leftovers older than this (as :meth:`gc` removes only
                those): a younger temporary file, unreferenced blob or pointer may be a publish or
                alias move still in flight, not a leftover. 0 lists all.

        Raises:
            InvalidReferenceError, ModelNotFoundError: for a bad ``ref``.
            InvalidArgumentError: a negative ``min_age_seconds``.
        """
        if not min_age_seconds >= 0:
            raise InvalidArgumentError(f"min_age_seconds must be >= 0, got {min_age_seconds}").about("min_age_seconds")
        checked, problems = [], []
        for version in self._all_versions(ref):
            checked.append(version.ref)
            problem = self.blobs.problem(version.digest, None, check_hash=True)
            if problem:
                problems.append(f"{version.ref}: manifest: {problem}")
            else:
                try:
                    manifest = Manifest.from_json(self.blobs.read_bytes(version.digest), source=f"{version.ref} manifest")
                    if (manifest.name, manifest.version, manifest.files) != (version.name, version.version, version.files):
                        problems.append(f"{version.ref}: manifest does not match the registry; run `hub reindex`")
                except HubError as exc:
                    problems.append(f"{version.ref}: manifest: {exc}")
            for entry in version.files:
                problem = self.blobs.problem(entry.sha256, entry.size, check_hash=True)
                if problem is None and entry.path in version.weight_files:
                    try:  # whole and hashing right, but can it load?
                        read_header(self.blobs.path(entry.sha256))
                    except (UnsafeFormatError, OSError) as exc:
                        problem = str(exc)
                if problem:
                    problems.append(f"{version.ref}: file {entry.path!r}: {problem}")
        leftovers = []
        if ref is None:
            from hub.reconcile import store_repairs

            repairs, disagreements = store_repairs(self, min_age_seconds=0)  # every disagreement, however recent
            if min_age_seconds > 0:
                repairs = store_repairs(self, min_age_seconds)[0]
            leftovers = [str(p) for p in self._garbage(min_age_seconds)] + [str(r.path) for r in repairs]
            problems += disagreements
        return VerifyReport(tuple(checked), tuple(problems), tuple(leftovers))

    def _garbage(self, min_age_seconds: float) -> list[Path]:
        from hub.reconcile import unindexed_digests

        now = time.time()
        referenced = self.registry.referenced_digests()
        referenced |= unindexed_digests(self)  # versions only the store knows: evidence for `hub reindex`
        candidates = list(self.blobs.temp_files())
        candidates += [self.blobs.path(d) for d in self.blobs.digests() if d not in referenced]
        return sorted(p for p in candidates if self.blobs.age_seconds(p, now) >= min_age_seconds)

    def _stale_uploads(self, min_age_seconds: float) -> list[tuple[Path, int]]:
        """Upload folders (``uploads/<digest>/``) whose files are all older than ``min_age_seconds``
        and that no queued or running job reads from, each with its size in bytes."""
        uploads = self.home / "uploads"
        if not uploads.is_dir():
            return []
        needed = [Path(os.path.realpath(self.home / path)) for path in self.registry.pending_job_files()]  # relative: in the home
        now, stale = time.time(), []
        for folder in sorted(uploads.iterdir()):
            real = Path(os.path.realpath(folder))
            if any(path == real or real in path.parents for path in needed):
                continue
            try:
                tree = folder.rglob("*") if folder.is_dir() and not folder.is_symlink() else ()
                entries = [folder.lstat(), *(entry.lstat() for entry in tree)]
            except FileNotFoundError:  # being written or removed right now
                continue
            if now - max(entry.st_mtime for entry in entries) >= min_age_seconds:
                stale.append((folder, sum(entry.st_size for entry in entries if stat.S_ISREG(entry.st_mode))))
        return stale

    def gc(self, *, min_age_seconds: float = settings.GC_MIN_AGE_S, dry_run: bool = False) -> GcReport:
        """Remove blobs that no live version needs, files left by interrupted writes, and
        uploads (``HUB_HOME/uploads``, where the web UI keeps what it was given) that no
        queued or running fine-tuning job reads.

        Pointer files under ``refs/`` that disagree with the registry (left by a process killed
        between the two writes) are rewritten from it, or removed; they are listed with the rest.

        It waits for publishes under way to commit (they hold the store while their blobs
        are not yet recorded), so even ``min_age_seconds=0`` never takes a blob a new version needs.
        On a full disk it works too: it removes first and writes its repairs after.

        Args:
            min_age_seconds: spare anything written more recently than this (also where the
                store can't be locked: on Windows, keep it above the longest publish).
            dry_run: only report what would go (this works on a read-only home too).

        Raises:
            ReadOnlyError: the home is read-only (or not this user's): it can't be collected there.
        """
        if not min_age_seconds >= 0:
            raise InvalidArgumentError(f"min_age_seconds must be >= 0, got {min_age_seconds}").about("min_age_seconds")
        from hub.reconcile import check_related, store_repairs

        removed, freed = [], 0
        with nullcontext() if dry_run else self.blobs.collecting():  # waits for running publishes to commit
            check_related(self)
            full_disk = []  # repairs that found no space: done again once the garbage is gone
            for repair in store_repairs(self, min_age_seconds)[0]:
                if not dry_run and not _applied(repair, full_disk):
                    continue
                removed.append(str(repair.path))
            for path in self._garbage(min_age_seconds):
                try:
                    size = path.stat().st_size
                    if not dry_run:
                        path.unlink()
                except FileNotFoundError:
                    continue
                removed.append(str(path))
                freed += size
            for folder, size in self._stale_uploads(min_age_seconds):
                if not dry_run and folder.is_dir() and not folder.is_symlink():
                    shutil.rmtree(folder, ignore_errors=True)
                elif not dry_run:
                    folder.unlink(missing_ok=True)
                removed.append(str(folder))
                freed += size
            for repair in full_disk:
                _applied(repair, None)
                removed.append(str(repair.path))
        return GcReport(tuple(removed), freed)

    def reindex(self, *, dry_run: bool = False, force: bool = False) -> ReindexReport:
        """Bring the registry up to date with the store (pointer files, manifests, alias history).

        Safe to run at any time, beside publishers on other machines: it holds the store's
        exclusive lock (as ``gc`` does), adds what the store holds and the registry lacks (a lost
        or new database is rebuilt whole; alias history comes back with who moved what, when),
        deletes what the store marks deleted, and keeps registry rows the store has no evidence
        against. A SQLite registry file that is damaged is moved aside and rebuilt.

        Args:
            dry_run: only report what would change.
            force: let the store win where the two disagree, and mark registry versions the store
                has no pointer for deleted (their numbers stay taken), instead of refusing.

        Returns:
            A :class:`ReindexReport`.

        Raises:
            ReindexRefusedError: without ``force``: the store is empty or another hub's while the
                registry is not, or they disagree about a version or an alias's history.
        """
        from hub.reconcile import plan_reindex, store_repairs

        with nullcontext() if dry_run else self.blobs.collecting():
            moved_aside, readable = None, True
            try:
                self.db.ensure_schema()
            except DamagedRegistryError:
                readable = False
                moved_aside = f"{self.db.shown_url} (would be moved aside)" if dry_run else str(self.db.move_aside())
            report, changes = plan_reindex(self, force=force, dry_run=dry_run, registry_readable=readable)
            report = replace(report, moved_aside=moved_aside)
            if not dry_run:
                self.registry.reconcile(changes, settings.current_user())
                for repair in store_repairs(self, min_age_seconds=0)[0]:
                    repair.apply()
            return report

    def upgrade_db(self) -> str:
        """Migrate the registry schema to the newest revision (``hub db upgrade``); return it."""
        self.db.upgrade()
        self.db.ensure_schema()
        return self.db.schema_revision() or ""
