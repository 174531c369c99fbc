"""Reading the hub: versions and models from the registry, what a model takes and gives, its weights.

The :class:`Hub` methods of the same names call these (their docstrings live here, once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.entities import AliasChange, ModelSummary, ModelVersion
from hub.errors import InvalidArgumentError
from hub.inputs import InputSpec, input_spec_of
from hub.reference import parse_reference, validate_alias, validate_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    import torch
    from torch import nn

    from hub.access import ReadFilter
    from hub.api import Hub
    from hub.families import ModelSpec

__all__ = ["Catalog", "SORTS"]

SORTS = ("name", "updated", "size")


def _only(readable: ReadFilter | None) -> dict[str, ReadFilter]:
    """``readable=`` for the registry where a filter is given (a remote registry takes none: its server filters)."""
    return {} if readable is None else {"readable": readable}


class Catalog:
    """The hub's reads.

    Args:
        hub: the :class:`Hub` whose registry and store it reads.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def info(self, ref: str) -> ModelVersion:
        """The version that ``ref`` names (``name``, ``name:VERSION`` or ``name@ALIAS``).

        Raises:
            InvalidReferenceError: ``ref`` is malformed.
            ModelNotFoundError: no such model, version (``VersionNotFoundError``) or alias (``AliasNotFoundError``).
        """
        return self.hub.registry.resolve(parse_reference(ref))

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
        """Models with a live version, each described by its latest version.

        Args:
            search: text to find in the name or description (case-insensitive).
            task, tag, license: keep models whose latest version has these.
            sort: ``"name"``, ``"updated"`` (newest first) or ``"size"`` (largest first).
            limit: page size (None for all); offset: how many to skip.
            readable: only the models someone may read (:meth:`hub.access.Access.read_filter`), for
                a local hub that serves several people (the web UI); a remote hub's server applies
                its caller's rules itself.

        Raises:
            InvalidArgumentError: a bad sort, limit or offset.
        """
        if sort not in SORTS:
            raise InvalidArgumentError(f"sort {sort!r} is unknown; use one of {', '.join(SORTS)}")
        if (limit is not None and (not isinstance(limit, int) or limit < 0)) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"limit and offset must be non-negative whole numbers, got {limit!r} and {offset!r}").about("limit", "offset")
        return self.hub.registry.list_models(search, task=task, tag=tag, license=license, sort=sort, limit=limit, offset=offset,
                                             **_only(readable))

    def count_models(self, search: str | None = None, *, task: str | None = None, tag: str | None = None,
                     license: str | None = None, readable: ReadFilter | None = None) -> int:
        """How many models :meth:`list_models` finds with these filters (for paging)."""
        return self.hub.registry.count_models(search, task=task, tag=tag, license=license, **_only(readable))

    def model_facets(self, *, readable: ReadFilter | None = None) -> dict[str, list[str]]:
        """``{"task": [...], "tag": [...], "license": [...]}``: the values to filter models by (of the
        models ``readable`` lets through, when given; see :meth:`list_models`)."""
        return self.hub.registry.model_facets(**_only(readable))

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
        return self.hub.registry.list_children(self.info(ref).ref)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every live version of model ``name``, oldest first.

        Raises:
            InvalidReferenceError, ModelNotFoundError.
        """
        return self.hub.registry.list_versions(validate_name(name))

    def alias_history(self, name: str, alias: str) -> list[AliasChange]:
        """Every move of ``alias`` on ``name`` (who, when, from, to), oldest first; an alias since
        removed keeps its history.

        Raises:
            InvalidReferenceError, ModelNotFoundError.
            AliasNotFoundError: ``name`` has no such alias and never had (the message names those it has).
        """
        return self.hub.registry.alias_history(validate_name(name), validate_alias(alias))

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

        version = self.info(ref)
        self.fetch(version, version.weight_files)
        return load_module(self.hub.blobs, version, device=device, dtype=dtype, strict=strict, verify=verify)

    def load_state_dict(self, ref: str, *, device: Any = "cpu", dtype: Any = None, verify: bool = False) -> dict[str, torch.Tensor]:
        """The version's weights as ``{name: tensor}`` on ``device``.

        Raises:
            See :meth:`load`.
        """
        from hub.loader import load_weights

        version = self.info(ref)
        self.fetch(version, version.weight_files)
        return load_weights(self.hub.blobs, version, device=device, dtype=dtype, verify=verify)

    def fetch(self, version: ModelVersion, paths: Iterable[str] | None = None) -> None:
        """Make sure the store holds the blobs of ``version``'s files (``paths``, default all) before
        they are read: nothing to do in a local hub; a remote hub's cache fetches the missing ones at
        once (shards in parallel) instead of one by one as each is read."""

    def model_spec(self, ref: str | ModelVersion) -> ModelSpec:
        """What the model takes and gives: its input (kind, shape, value range, ...), its head
        (the output module and how many outputs), the names of its labels, its task and the
        fine-tuning tasks it fits, as its family knows them from its architecture and config;
        ``.example_inputs()`` makes a batch the model accepts.

        Args:
            ref: a reference (see :meth:`info`), or a :class:`ModelVersion` already read.

        Returns:
            A :class:`hub.families.ModelSpec` (``family`` is ``""`` where no family here knows the
            architecture: then it holds what the config and metadata say).

        Raises:
            ModelNotFoundError: see :meth:`info`.
        """
        from hub.families import model_spec_of

        return model_spec_of(ref if isinstance(ref, ModelVersion) else self.info(ref))

    def all_versions(self, ref: str | None = None) -> list[ModelVersion]:
        """The version ``ref`` names, or with None every live version of every model (one query)."""
        return [self.info(ref)] if ref is not None else self.hub.registry.all_versions()
