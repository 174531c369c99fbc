"""Turning what a user hands to ``publish`` into checked weights, files and metadata.

Everything here only reads and checks: nothing is written until every input
has been validated, so bad input leaves the store and registry untouched.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.architectures import create_empty
from hub.errors import InvalidArgumentError, InvalidSourceError, UnsafeFormatError, WeightsMismatchError
from hub.families import family_for
from hub.limits import MAX_JSON_DEPTH, too_deep
from hub.manifest import check_relative_path
from hub.safetensors_io import FLOATING, SafetensorsHeader, TensorInfo, dedupe_shared, read_header

if TYPE_CHECKING:
    import torch

__all__ = ["LocalFiles", "list_folder", "PreparedSource", "prepare_source", "describe_weights", "count_parameters",
           "count_stored_parameters", "stored_as_checked", "share_with_parent", "new_weights_path", "check_text", "check_tags", "check_metrics", "check_metadata", "check_extra_files", "render_card"]

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "modelhub.json"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
# Buffers every PyTorch normalization layer names so (BatchNorm, InstanceNorm, SyncBatchNorm): statistics, not parameters.
NORM_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
MAX_TEXT = 128


@dataclass
class PreparedSource:
    """Checked weights and files, ready to store.

    ``tensors`` are in-memory weights (stored as ``model.safetensors``);
    ``weight_files`` and ``extra_files`` are files on disk, by their path in the version.
    """

    tensors: dict[str, torch.Tensor] | None = None
    tied: dict[str, str] = field(default_factory=dict)
    weight_files: dict[str, Path] = field(default_factory=dict)
    headers: dict[str, SafetensorsHeader] = field(default_factory=dict)  # of each weight file, as checked
    extra_files: dict[str, Path] = field(default_factory=dict)
    infos: dict[str, TensorInfo] = field(default_factory=dict)
    architecture: str | None = None
    config: dict[str, Any] | None = None
    parent: str | None = None
    num_parameters: int | None = None
    input: dict[str, Any] | None = None  # the input facts of the version it came from (kept when the config is)
    stored: dict[str, tuple[str, int]] = field(default_factory=dict)  # files that are blobs already: (sha256, size)


def count_parameters(module: torch.nn.Module) -> int:
    """How many parameters ``module`` has: what every path that knows the module records.

    Its ``parameters()``, each once (tied weights are one parameter); buffers (BatchNorm's
    running statistics, ``num_batches_tracked``, the mlp's standardization) are not parameters.
    A module on the meta device counts the same as a real one.
    """
    return sum(p.numel() for p in module.parameters())


def count_stored_parameters(infos: Mapping[str, TensorInfo]) -> int:
    """How many parameters weights with no architecture hold, as far as the weights alone tell.

    Without a module, a parameter can't be told from a buffer in general (a buffer is whatever a
    module registers as one), so the rule is: every stored tensor (each once: tied names are stored
    once) except those named as PyTorch's normalization layers name their statistics
    (``*.running_mean``, ``*.running_var``, ``*.num_batches_tracked``). Other buffers (an mlp's
    ``input_mean``) count; publish with an architecture to count exactly.
    """
    return sum(info.numel for name, info in infos.items() if name.rpartition(".")[2] not in NORM_STATISTICS)


def _tensor_info(tensor: torch.Tensor) -> TensorInfo:
    return TensorInfo(str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape), 0, 0)


def _from_state_dict(state: Mapping[Any, Any], what: str) -> PreparedSource:
    import torch

    for key, value in state.items():
        if not isinstance(key, str) or not key:
            raise InvalidSourceError(f"{what} has a key {key!r}; keys must be non-empty strings")
        if not isinstance(value, torch.Tensor):
            raise InvalidSourceError(f"{what} entry {key!r} is a {type(value).__name__}, not a torch.Tensor")
        if value.is_meta:
            raise InvalidSourceError(f"{what} entry {key!r} is on the meta device and has no data; load real weights first")
    if not state:
        raise InvalidSourceError(f"{what} holds no tensors; there is nothing to publish")
    tensors, tied = dedupe_shared(state)
    return PreparedSource(tensors=tensors, tied=tied, infos={k: _tensor_info(v) for k, v in tensors.items()})


def _checked_header(path: Path) -> SafetensorsHeader:
    try:
        header = read_header(path)
    except OSError as exc:
        raise InvalidSourceError(f"can't read {path}: {exc}") from None
    if not header.tensors:  # as a state dict without tensors is refused
        raise InvalidSourceError(f"{path} holds no tensors; there is nothing to publish (save the weights into it, "
                                 "or leave the empty file out)")
    return header


@dataclass(frozen=True)
class LocalFiles:
    """An explicit set of files to publish: ``{path in the version: file on disk}``.

    ``stored`` names the files that are blobs of the hub's store already, ``{path: (sha256, size)}``
    (their ``files`` entry is where those bytes can be read): a publish claims them instead of copying.
    """

    files: dict[str, Path]
    origin: str
    stored: dict[str, tuple[str, int]] = field(default_factory=dict)


def stored_as_checked(source: Path, checked: SafetensorsHeader) -> Callable[[Path], None]:
    """A check for :meth:`BlobStore.write`: the stored copy of the weight file ``source`` holds the
    header that was checked before the copy, and the bytes that header describes.

    A file truncated or rewritten while it was copied (a trainer still writing it) would otherwise
    be acknowledged as a version that can't load.
    """
    def check(stored: Path) -> None:
        try:
            header = read_header(stored)
        except UnsafeFormatError as exc:
            header, problem = None, str(exc).split(": ", 1)[-1].split("; re-save", 1)[0]
        else:
            problem = "its header changed"
        if header is None or header.tensors != checked.tensors or header.metadata != checked.metadata:
            raise InvalidSourceError(
                f"{source} changed while it was copied into the hub ({problem}); nothing was published. "
                "Publish it again once whatever writes it has finished"
            )

    return check


def list_folder(folder: Path, *, links_within: Path | None = None) -> LocalFiles:
    """Every file under ``folder`` (hidden ones left out), refusing links (to files or folders) that
    lead out of ``links_within`` (default: the folder itself)."""
    files, root = {}, (links_within or folder).resolve()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise UnsafeFormatError(f"{path} is a link to {path.resolve()}, outside {links_within or folder}; copy the file in instead")
        if path.is_dir():
            continue
        files[relative] = path
    return LocalFiles(files, str(folder))


def _from_files(source: LocalFiles) -> PreparedSource:
    prepared = PreparedSource(stored=dict(source.stored))
    for relative, path in sorted(source.files.items()):
        check_relative_path(relative)
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise UnsafeFormatError(
                f"{path} is a pickle file, which can run code when loaded; convert it to safetensors "
                "(safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')) and remove it"
            )
        if relative == MANIFEST_FILE:
            _apply_manifest_defaults(prepared, path)
        elif path.suffix == ".safetensors":
            header = prepared.headers[relative] = _checked_header(path)
            prepared.weight_files[relative] = path
            for name, info in header.tensors.items():
                if name in prepared.infos:
                    raise InvalidSourceError(f"tensor {name!r} is in two weight files of {source.origin}; each tensor must be stored once")
                prepared.infos[name] = info
        else:
            prepared.extra_files[relative] = path
    if not prepared.weight_files:
        raise InvalidSourceError(f"{source.origin} holds no *.safetensors file; put the weights there (pickle formats are refused)")
    return prepared


def _apply_manifest_defaults(prepared: PreparedSource, path: Path) -> None:
    """Use a downloaded version's ``modelhub.json`` for architecture, config and parent."""
    from hub.manifest import Manifest

    manifest = Manifest.from_json(path.read_bytes(), source=str(path))
    prepared.architecture, prepared.config = manifest.architecture, manifest.config
    prepared.parent = f"{manifest.name}:{manifest.version}"
    prepared.tied = dict(manifest.tied)
    prepared.input = manifest.metadata.get("input")


def prepare_source(source: Any) -> PreparedSource:
    """Check ``source`` (module, state dict, ``.safetensors`` file or folder) and describe what it holds.

    Raises:
        InvalidSourceError: an unsupported type, an empty or non-tensor state dict, a missing path.
        UnsafeFormatError: pickle files, malformed safetensors, links out of the folder.
    """
    # A module or a tensor can only come from a process that imported torch; publishing files does without it.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(source, torch.nn.Module):
        prepared = _from_state_dict(source.state_dict(), f"module {type(source).__name__}")
        spec = getattr(source, "hub_architecture", None)
        if spec is not None:
            prepared.architecture, prepared.config = spec.name, dict(spec.config)
        loaded_from = getattr(source, "hub_version", None)
        if loaded_from is not None:
            prepared.parent = loaded_from.ref
            if spec is None and loaded_from.architecture:
                prepared.architecture, prepared.config = loaded_from.architecture, dict(loaded_from.config)
            if (prepared.architecture, prepared.config) == (loaded_from.architecture, loaded_from.config):
                prepared.input = loaded_from.metadata.get("input")
        prepared.num_parameters = count_parameters(source)
        return prepared
    if isinstance(source, Mapping):
        return _from_state_dict(source, "state dict")
    if isinstance(source, LocalFiles):
        return _from_files(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        if path.is_dir():
            return _from_files(list_folder(path))
        if not path.is_file():
            raise InvalidSourceError(f"{path} does not exist; give a module, a state dict, a .safetensors file or a folder")
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise UnsafeFormatError(f"{path} is a pickle file, which can run code when loaded; convert it to .safetensors first")
        if path.suffix != ".safetensors":
            raise InvalidSourceError(f"{path} is not a .safetensors file; give a module, a state dict, a .safetensors file or a folder")
        header = _checked_header(path)
        return PreparedSource(weight_files={path.name: path}, headers={path.name: header}, infos=dict(header.tensors))
    if torch is not None and isinstance(source, torch.Tensor):
        raise InvalidSourceError("a single tensor can't be published; wrap it in a dict: {'weight': tensor}")
    raise InvalidSourceError(
        f"can't publish a {type(source).__name__}; give an nn.Module, a dict of tensors, a .safetensors file or a folder"
    )


def describe_weights(prepared: PreparedSource, architecture: str | None, config: dict[str, Any] | None) -> tuple[str | None, int]:
    """Check the weights fit ``architecture`` and return ``(dtype, num_parameters)``.

    The architecture is built on the meta device and its state dict compared
    with the stored tensors, so a version that can't be loaded is never published.
    ``num_parameters`` is :func:`count_parameters` of that module, or of the module published;
    for weights alone, :func:`count_stored_parameters`.

    Raises:
        ArchitectureNotFoundError, ArchitectureError: bad architecture or config.
        WeightsMismatchError: missing, unexpected or mis-shaped tensors.
    """

    by_dtype: dict[str, int] = {}
    for info in prepared.infos.values():
        by_dtype[info.dtype] = by_dtype.get(info.dtype, 0) + info.numel
    floating = {d: n for d, n in by_dtype.items() if d in FLOATING}
    pool = floating or by_dtype
    dtype = max(sorted(pool), key=pool.__getitem__) if pool else None
    num_parameters = prepared.num_parameters if prepared.num_parameters is not None else count_stored_parameters(prepared.infos)
    if architecture is None:
        return dtype, num_parameters
    from hub.loader import computed_buffers

    module = create_empty(architecture, **(config or {}))
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    ignored = computed_buffers(module)
    stored = {k: v.shape for k, v in prepared.infos.items() if k not in ignored}
    stored.update({dropped: stored[kept] for dropped, kept in prepared.tied.items() if kept in stored})
    # the family maps the checkpoint's names (a checkpoint with a head loads into its base model, as from_pretrained does)
    stored = {k: shape for k, shape in family_for(architecture).map_checkpoint(module, stored).items() if k not in ignored}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    misshaped = [f"{k}: {stored[k]} vs {expected[k]}" for k in sorted(set(expected) & set(stored)) if tuple(stored[k]) != expected[k]]
    if missing or unexpected or misshaped:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
                 f"shapes differ ({'; '.join(misshaped[:5])})" if misshaped else ""]
        raise WeightsMismatchError(
            f"the weights don't fit architecture {architecture!r} with config {config}: "
            f"{', '.join(p for p in parts if p)}; fix the config, or publish the weights alone, without an architecture"
        ).about("architecture", "config")
    return dtype, count_parameters(module)


def _best_prefix(stored: Iterable[str], names: Iterable[str]) -> str:
    """The prefix (``""``, ``"bert."``, ``"backbone."``, ...) that turns the most ``stored`` names into ``names``."""
    known = set(stored)
    counts: dict[str, int] = {}
    for name in names:
        for prefix in ["", *(name[: i + 1] for i, char in enumerate(name) if char == ".")]:
            if name[len(prefix) :] in known:
                counts[prefix] = counts.get(prefix, 0) + 1
    return max(counts, key=lambda prefix: (counts[prefix], -len(prefix)), default="")


def _fits(info: TensorInfo, tensor: torch.Tensor) -> bool:
    """True when ``tensor`` has the dtype and shape that ``info`` describes."""
    described = _tensor_info(tensor)
    return (info.dtype, info.shape) == (described.dtype, described.shape)


def _raw(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor's bytes as a flat uint8 tensor (no copy for a contiguous CPU tensor)."""
    import torch

    return tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)


def share_with_parent(
    tensors: Mapping[str, torch.Tensor], parent_files: Mapping[str, Path]
) -> tuple[dict[str, dict[str, Any]], dict[str, torch.Tensor]]:
    """Find which of a parent's weight files new tensors can reuse, and what is left to store.

    Each parent file is read lazily (memory-mapped), under the key prefix that
    matches the most of its names. A file is reused when the tensors it holds
    unchanged (same name after the prefix, dtype, shape and bytes) are at least
    half its weight bytes; each new tensor is taken from one file at most.

    Args:
        tensors: the new tensors by name (tied aliases removed).
        parent_files: the parent's weight files, ``{path in the version: safetensors file}``.

    Returns:
        ``(views, rest)``: ``{reused path: {"prefix": str, "skip": [stored names not used]}}``,
        and the tensors no reused file holds.

    Raises:
        UnsafeFormatError: a parent file is not valid safetensors.
    """
    import torch
    from safetensors import safe_open

    views: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for path, blob in parent_files.items():
        stored = read_header(blob).tensors
        sizes = {name: info.end - info.start for name, info in stored.items()}
        prefix = _best_prefix(stored, tensors)
        candidates = {
            name: prefix + name for name, info in stored.items()
            if prefix + name in tensors and prefix + name not in taken and _fits(info, tensors[prefix + name])
        }
        if 2 * sum(sizes[name] for name in candidates) < sum(sizes.values()):
            continue  # can't reach half, whatever the bytes
        with safe_open(blob, framework="pt") as f:
            same = [name for name, key in candidates.items() if torch.equal(_raw(f.get_tensor(name)), _raw(tensors[key]))]
        if same and 2 * sum(sizes[name] for name in same) >= sum(sizes.values()):
            views[path] = {"prefix": prefix, "skip": sorted(set(stored) - set(same))}
            taken.update(candidates[name] for name in same)
    return views, {name: tensor for name, tensor in tensors.items() if name not in taken}


def new_weights_path(reused: Iterable[str]) -> str:
    """Where newly stored tensors go: ``model.safetensors``, or beside reused files that have that
    path, ``model-changed.safetensors`` (then ``model-changed-2.safetensors``, ...)."""
    reused = set(reused)
    paths = (WEIGHTS_FILE, "model-changed.safetensors", *(f"model-changed-{n}.safetensors" for n in range(2, len(reused) + 2)))
    return next(path for path in paths if path not in reused)


def check_text(value: Any, what: str, *, limit: int | None = MAX_TEXT) -> str | None:
    """A None or a string of at most ``limit`` characters.

    Raises:
        InvalidArgumentError: otherwise.
    """
    if value is None:
        return None
    if not isinstance(value, str) or (limit is not None and not 0 < len(value) <= limit):
        raise InvalidArgumentError(f"{what} must be a non-empty string of at most {limit} characters, got {value!r}").about(what)
    return value


def check_tags(tags: Iterable[Any]) -> tuple[str, ...]:
    """Tags as a sorted tuple of unique strings.

    Raises:
        InvalidArgumentError: a tag is not a non-empty string, or ``tags`` is a bare string.
    """
    if isinstance(tags, str):
        raise InvalidArgumentError(f"tags must be a list of strings, not the string {tags!r}; write tags=[{tags!r}]")
    return tuple(sorted({check_text(t, "a tag") for t in tags}))  # type: ignore[misc]


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Metrics as ``{name: finite float}``.

    Raises:
        InvalidArgumentError: a name is not a string or a value is not a finite number.
    """
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidArgumentError(f"metrics must be a dict of name to number, not {type(metrics).__name__}").about("metrics")
    checked = {}
    for key, value in metrics.items():
        check_text(key, "a metric name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgumentError(f"metric {key!r} must be a finite number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # a whole number beyond float range; not shown, as Python can't print one of over 4,300 digits
            digits = int(abs(value).bit_length() * math.log10(2)) + 1
            raise InvalidArgumentError(f"metric {key!r} is a whole number of about {digits:,} digits, too large for a "
                                       "float (at most about 1.8e308); give a finite number") from None
        if not math.isfinite(number):
            raise InvalidArgumentError(f"metric {key!r} must be a finite number, got {value!r}")
        checked[key] = number
    return checked


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metadata as a dict of string keys to JSON values.

    Raises:
        InvalidArgumentError: keys that are not strings, or values that are not JSON.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) and k for k in metadata):
        raise InvalidArgumentError("metadata must be a dict with non-empty string keys").about("metadata")
    if too_deep(dict(metadata)):
        raise InvalidArgumentError(f"metadata nests lists and dicts more than {MAX_JSON_DEPTH} deep; keep it to a few levels").about(
            "metadata")
    try:
        json.dumps(dict(metadata), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"metadata must hold only JSON values (numbers, strings, lists, dicts): {exc}").about(
            "metadata") from None
    return dict(metadata)


def check_extra_files(files: Mapping[str, Any] | None, prepared: PreparedSource) -> dict[str, Path]:
    """Check the extra files given to ``publish(files=...)``.

    Raises:
        InvalidSourceError: not a mapping, a missing file, or a path the source already has.
        UnsafeFormatError: a path that leaves the version folder, a pickle, or weights.
    """
    if files is None:
        return {}
    if not isinstance(files, Mapping):
        raise InvalidSourceError(f"files must be a dict of {{path in the version: local file}}, not {type(files).__name__}")
    checked = {}
    taken = {*prepared.weight_files, *prepared.extra_files, WEIGHTS_FILE, "README.md", MANIFEST_FILE}
    for relative, local in files.items():
        check_relative_path(relative)
        path = Path(local).expanduser()
        if not path.is_file():
            raise InvalidSourceError(f"files[{relative!r}]: {path} is not a file")
        if path.suffix.lower() in PICKLE_SUFFIXES or relative.endswith(".safetensors"):
            raise UnsafeFormatError(f"files[{relative!r}] is a weight or pickle file; publish weights as the source, in safetensors")
        if relative in taken:
            raise InvalidSourceError(f"files[{relative!r}]: the version already has a file at that path")
        checked[relative] = path
    return checked


def render_card(card: str | Mapping[str, Any] | None, **defaults: Any) -> bytes | None:
    """A Hugging Face style ``README.md``: YAML front matter, then text.

    Args:
        card: the card's text (kept as given), or a dict of front-matter fields
            whose ``text`` entry becomes the body; None for no card.
        defaults: front-matter fields filled in where the dict has none (license, tags, ...).

    Raises:
        InvalidArgumentError: ``card`` is neither text nor a dict.
    """
    if card is None:
        return None
    if isinstance(card, str):
        return card.encode()
    if not isinstance(card, Mapping):
        raise InvalidArgumentError(f"card must be text or a dict, not {type(card).__name__}")
    import yaml

    fields = dict(card)
    body = str(fields.pop("text", ""))
    for key, value in defaults.items():
        if value not in (None, (), [], {}) and key not in fields:
            fields[key] = list(value) if isinstance(value, tuple) else value
    try:
        front = yaml.safe_dump(fields, sort_keys=True, allow_unicode=True) if fields else ""
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"card fields must be plain values (text, numbers, lists, dicts): {exc}") from None
    return (f"---\n{front}---\n\n{body}".rstrip() + "\n").encode()
