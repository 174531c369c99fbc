"""Publishing a version: check every input, store its bytes, then index it, so nothing half-made is ever visible.

The order: check every input (nothing is written before that ends); write the blobs (the store is
held, :meth:`BlobStore.in_use`, from the first blob to the commit, so gc can't take one); write
the manifest blob; reserve the version's pointer and its registry row in one transaction. A
publish that fails takes back the blobs it added (:meth:`Publisher._discard_new_blobs`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub import settings
from hub.entities import FileEntry, ModelVersion
from hub.errors import HubError, InvalidArgumentError, VersionExistsError
from hub.gc_roots import keep_of
from hub.inputs import METADATA_KEY as INPUT_KEY
from hub.inputs import InputSpec, check_input
from hub.manifest import Manifest
from hub.reference import validate_alias, validate_name, validate_version
from hub.registry.store import now_ms

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["Publisher", "CLEANUP_WAIT_S"]

CLEANUP_WAIT_S = 10.0  # how long a failed publish waits for others to commit before it removes its new blobs


class Publisher:
    """New versions: :meth:`publish`, :meth:`import_hf`.

    Args:
        hub: the :class:`Hub` it publishes into.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

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
        parent_version = self.hub.info(parent) if parent is not None else self._existing_parent(prepared.parent)
        parent_ref = parent_version.ref if parent_version is not None else None
        if parent_version is not None and parent_version.name == name:  # the model's next version: the same kind of model
            task, license = task or parent_version.task, license or parent_version.license
            tag_tuple = parent_version.tags if tag_tuple is None else tag_tuple
        tag_tuple = tag_tuple or ()
        card_bytes = p.render_card(
            card, license=license, tags=tag_tuple, pipeline_tag=task, base_model=parent_ref, metrics=metric_values or None
        )
        if version is not None and self.hub.registry.version_exists(name, version):
            raise VersionExistsError(f"{name}:{version} already exists and versions are immutable; publish without version=").about(
                version="version=")

        # 2-3. gc must not collect a blob this version needs before the registry records it:
        # hold the store from the first blob written (or reused) to the commit; if it fails, nothing is left.
        with self._publishing():
            # 2. Store the bytes (content-addressed: unchanged weights add nothing).
            entries, weights, views = self._store_files(prepared, card_bytes, parent_version if share_weights else None)
            draft = Manifest(
                name=name, version=1, created_at_ms=0, files=entries, weights=weights, architecture=architecture,
                config=config or {}, dtype=dtype, num_parameters=num_parameters, task=task, license=license, tags=tag_tuple,
                description=description, metrics=metric_values, metadata=metadata_values, parent=parent_ref,
                tied=dict(sorted(prepared.tied.items())), weight_views=views,
            )
            return self.commit(draft, version=version, aliases=alias_list, fence=_fence)

    def publish_stored(self, draft: Manifest, *, version: int | None = None, aliases: Sequence[str] = ()) -> ModelVersion:
        """Index a version whose every blob is already stored (a client uploaded them to ``hub serve``).

        Args:
            draft: its manifest (the number, time and author are filled in: see :meth:`commit`).
            version, aliases: as for :meth:`publish`.

        Raises:
            InvalidReferenceError: a bad alias or version.
            MissingBlobsError: a file's blob is not stored, or has another size or hash; nothing is indexed.
            VersionExistsError: ``version`` is taken.
        """
        from hub.errors import MissingBlobsError

        aliases = [validate_alias(a) for a in aliases]
        version = validate_version(version) if version is not None else None
        with self._publishing():  # gc spares claimed blobs until the commit
            missing = sorted({f.sha256 for f in draft.files if not self.hub.blobs.claim(f.sha256, f.size)})
            if missing:
                raise MissingBlobsError(missing)
            return self.commit(draft, version=version, aliases=aliases)

    def commit(self, draft: Manifest, *, version: int | None = None, aliases: Sequence[str] = (),
               fence: Any = None) -> ModelVersion:
        """Index a version whose blobs are stored: the registry assigns its number, the manifest records it.

        What :meth:`publish` ends with, and what the server runs for a client's publish
        (:mod:`hub.server`), whose blobs arrived first.

        Args:
            draft: the manifest but for its number, time and author, which are filled in here
                (the author is :func:`hub.settings.current_user`: on the server, the token's user).
            version: an explicit number; default the next one.
            aliases: (checked) aliases to point at the new version.
            fence: see :meth:`publish`'s ``_fence``.

        Returns:
            The new :class:`ModelVersion`.

        Raises:
            VersionExistsError: ``version`` is taken.
        """
        name, user = draft.name, settings.current_user()

        def make_manifest(number: int) -> tuple[Manifest, str]:
            manifest = replace(draft, version=number, created_at_ms=now_ms(), created_by=user)
            digest, _ = self.hub.blobs.put_bytes(manifest.to_json())
            return manifest, digest

        reserved: list[int] = []

        def on_reserved(manifest: Manifest, digest: str) -> None:
            try:
                self.hub.refs.reserve_version(name, manifest.version, digest)
            except FileExistsError as exc:
                raise VersionExistsError(f"{exc}; versions are immutable, so publish without version=").about(
                    version="version=") from None
            reserved.append(manifest.version)

        try:
            published = self.hub.registry.add_version(name, version, make_manifest, on_reserved, aliases, user, draft.description,
                                                      floor=lambda: self.hub.refs.highest(name), fence=fence)
        except BaseException:
            for number in reserved:
                if not self.hub.registry.version_exists(name, number):
                    self.hub.refs.remove_pending(name, number)
            raise
        self.hub.refs.commit_version(name, published.version)
        for alias in aliases:
            self.hub.aliases.write_alias(name, alias, published.version)
        return published

    @contextmanager
    def _publishing(self) -> Iterator[None]:
        """Hold the store (:meth:`BlobStore.in_use`) for a publish; when the publish fails, remove
        the blobs it added, and word a disk failure by its cause (:class:`NoSpaceError`, :class:`ReadOnlyError`)."""
        from hub.errors import StorageError, storage_error

        created: set[str] = set()
        try:
            with self.hub.blobs.in_use(), self.hub.blobs.recording_new() as created:
                yield
        except BaseException as error:
            note = self._discard_new_blobs(created)
            problem = storage_error(error, self.hub.home) if isinstance(error, OSError) else None
            if problem is not None and problem is not error:
                raise type(problem)(f"{problem}{'; ' + note if note else ''}", errno=problem.errno, path=problem.filename) from error
            if note and isinstance(error, StorageError):
                error.message = f"{error.message}; {note}"
            elif note and isinstance(error, HubError) and len(error.args) == 1 and isinstance(error.args[0], str):
                error.args = (f"{error.args[0]}; {note}",)
            elif note:
                error.add_note(note)
            raise

    def discard_unreferenced(self, digests: set[str]) -> str | None:
        """Remove the blobs ``digests`` that no version references, as a failed publish removes its new blobs
        (the same lock and the same rule; the parts of a Hugging Face multipart upload once assembled).

        Returns:
            None when that is done, else why they are left for ``hub gc``.
        """
        return self._discard_new_blobs(set(digests))

    def _discard_new_blobs(self, new: set[str]) -> str | None:
        """After a failed publish: remove the blobs it added (``new``) that no version references;
        None when that is done, else why they are left for ``hub gc``.

        Under the store's exclusive lock (:meth:`BlobStore.collecting`), which waits for the publishes
        under way to commit, an unreferenced blob is garbage by gc's own rule, also one that another
        publish stored at the same time: that one failed too, or it would be referenced now.
        """
        if not new:
            return None
        left = f"its {len(new)} new blob(s) are left for `hub gc`"
        if not self.hub.blobs.locks_work:
            return f"{left} (no file locks on this system)"
        if self.hub.blobs.held_here:
            return f"{left} (this process still holds the store)"
        try:
            with self.hub.blobs.collecting(timeout=CLEANUP_WAIT_S):
                from hub.reconcile import unindexed_digests

                if self.hub.db.schema_revision() is not None:  # what gc keeps: the registry's, and versions only the store knows
                    referenced = self.hub.registry.referenced_digests() | unindexed_digests(self.hub) | keep_of(self.hub).digests
                elif not self.hub.refs.files():
                    referenced = set()  # a new hub whose registry was never created: nothing references anything
                else:
                    return f"{left} (the registry has no tables yet, and refs/ has pointers)"
                for digest in sorted(new - referenced):
                    self.hub.blobs.delete(digest)
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
                usable = [e for e in map(parent.file, parent.weight_files) if self.hub.blobs.claim(e.sha256, e.size)]
                views, tensors = share_with_parent(tensors, {e.path: self.hub.blobs.local_path(e.sha256) for e in usable})
                files.update((e.path, (e.sha256, e.size)) for e in usable if e.path in views)
            weights = list(views)
            if tensors:
                weights.append(new_weights_path(views))
                chunks, _ = iter_safetensors_bytes(tensors)
                files[weights[-1]] = self.hub.blobs.write(chunks)
            elif list(views.values()) == [{"prefix": "", "skip": []}]:
                views = {}  # the parent's one file, unchanged: plain whole-file reuse, as before sharing
        for path, local in prepared.weight_files.items():
            files[path] = self._claim(prepared, path) or self.hub.blobs.put_file(local, check=stored_as_checked(local, prepared.headers[path]))
        for path, local in prepared.extra_files.items():
            files[path] = self._claim(prepared, path) or self.hub.blobs.put_file(local)
        if card_bytes is not None:
            files["README.md"] = self.hub.blobs.put_bytes(card_bytes)
        entries = tuple(FileEntry(path, sha, size) for path, (sha, size) in sorted(files.items()))
        return entries, tuple(weights), views

    def _claim(self, prepared: Any, path: str) -> tuple[str, int] | None:
        """The ``(sha256, size)`` of a source file that is a stored blob already (claimed, not copied); None
        for a file to copy in.

        Raises:
            MissingBlobsError: the blob is gone, or has another size or hash.
        """
        from hub.errors import MissingBlobsError

        known = prepared.stored.get(path)
        if known is not None and not self.hub.blobs.claim(*known):
            raise MissingBlobsError([known[0]])
        return known

    def _existing_parent(self, parent: str | None) -> ModelVersion | None:
        """The version a module remembers as its parent, if it is in this registry."""
        if parent is None:
            return None
        try:
            return self.hub.info(parent)
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

        return import_hf(self.hub, source, name, revision=revision, convert_pickle=convert_pickle, auto_class=auto_class,
                         aliases=aliases, task=task, license=license, tags=tags, description=description, card=card)
