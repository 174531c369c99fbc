"""Hugging Face interop: take in a model in the Hugging Face layout.

A folder (or a repo id, fetched with ``huggingface_hub.snapshot_download``)
holding ``config.json``, ``model.safetensors`` or shards with their index,
tokenizer files and a README model card becomes one version: its files travel
with it, its architecture is ``transformers`` (the auto class named by the
config's ``architectures``), and the card's YAML gives task, license, tags and
lineage. Pickle weights are refused unless ``convert_pickle=True``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import InvalidArgumentError, InvalidReferenceError, InvalidSourceError, ModelNotFoundError, UnsafeFormatError
from hub.limits import loads
from hub.publishing import PICKLE_SUFFIXES, LocalFiles, list_folder
from hub.reference import validate_name

if TYPE_CHECKING:
    from hub.api import Hub
    from hub.entities import ModelVersion

__all__ = ["import_hf", "publish_hf_files", "card_fields", "auto_class_for"]


# Weights of other frameworks: not loadable by torch, left behind.
OTHER_FRAMEWORKS = {".h5", ".msgpack", ".onnx", ".ot", ".tflite", ".gguf", ".mlmodel"}
_HEADS = [
    ("ForSequenceClassification", "AutoModelForSequenceClassification"),
    ("ForTokenClassification", "AutoModelForTokenClassification"),
    ("ForQuestionAnswering", "AutoModelForQuestionAnswering"),
    ("ForMultipleChoice", "AutoModelForMultipleChoice"),
    ("ForMaskedLM", "AutoModelForMaskedLM"),
    ("ForCausalLM", "AutoModelForCausalLM"),
    ("LMHeadModel", "AutoModelForCausalLM"),
    ("ForConditionalGeneration", "AutoModelForSeq2SeqLM"),
    ("ForImageClassification", "AutoModelForImageClassification"),
    ("ForPreTraining", "AutoModelForPreTraining"),
]
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def auto_class_for(config: dict[str, Any]) -> str:
    """The transformers auto class for a ``config.json``: by the head its ``architectures`` names."""
    architectures = config.get("architectures") or []
    name = architectures[0] if architectures else ""
    return next((auto for suffix, auto in _HEADS if name.endswith(suffix)), "AutoModel")


def _fetch(source: str, revision: str | None) -> Path:
    """A local folder for ``source``: itself, or a snapshot of the Hugging Face repo it names."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        return folder
    if not _REPO_ID.fullmatch(source):
        raise InvalidReferenceError(f"{source!r} is neither a folder nor a Hugging Face repo id like 'org/model'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(source, revision=revision))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelNotFoundError(
            f"can't fetch {source!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}); "
            "check the repo id and the network (HF_HUB_OFFLINE, HF_ENDPOINT, HF_TOKEN), or give a local folder"
        ) from None


def _default_name(source: str, folder: Path, local: bool) -> str:
    name = folder.resolve().name.lower() if local else source.lower()
    try:
        return validate_name(name)
    except InvalidReferenceError:
        raise InvalidReferenceError(f"{name!r} is not a valid model name; give the name to import it as, e.g. 'acme/model'") from None


def _convert_pickles(pickles: dict[str, Path], staging: Path) -> dict[str, Path]:
    """Each pickle weight file as safetensors, loaded with ``torch.load(weights_only=True)`` (no code runs)."""
    import torch
    from safetensors.torch import save_file

    converted = {}
    for relative, path in pickles.items():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise UnsafeFormatError(f"{path} does not hold a plain dict of tensors; convert it yourself")
        target = Path(relative).with_suffix(".safetensors").as_posix().replace("pytorch_model", "model")
        save_file({k: v.contiguous() for k, v in state.items()}, staging / target.replace("/", "__"))
        converted[target] = staging / target.replace("/", "__")
    return converted


def _check_index(files: dict[str, Path], folder: str | Path) -> None:
    """A shard index must name only shards that are there, and every tensor's shard.

    Raises:
        InvalidSourceError: unreadable index, or a shard it names is missing.
    """
    index = files.get("model.safetensors.index.json")
    if index is None:
        return
    try:
        weight_map = loads(index.read_text())["weight_map"]  # ValueError: also nested too deep
        shards = set(weight_map.values())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidSourceError(f"{index} is not a safetensors shard index ({exc}); re-save the model with save_pretrained") from None
    missing = sorted(shard for shard in shards if shard not in files)
    if missing:
        raise InvalidSourceError(f"{index} names shard(s) {missing} that {folder} does not have; download them too")


def _read_config(path: Path) -> dict[str, Any]:
    """A ``config.json``'s contents.

    Raises:
        InvalidSourceError: not UTF-8 JSON holding an object.
    """
    try:
        config = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        config = exc
    if not isinstance(config, dict):
        problem = f" ({str(config)[:200]})" if isinstance(config, Exception) else ""
        raise InvalidSourceError(f"{path} is not a JSON object{problem}; it must be the model's transformers config.json")
    return config


def card_fields(text: str) -> dict[str, Any]:
    """The YAML front matter of a model card (``README.md``'s text), as the Hugging Face Hub reads it.

    Raises:
        InvalidArgumentError: YAML that does not parse, or that is not a mapping of fields.
    """
    from huggingface_hub import ModelCard

    try:
        return ModelCard(text).data.to_dict()
    except Exception as exc:  # yaml.YAMLError, ValueError (not a mapping), TypeError (odd fields)
        raise InvalidArgumentError(f"the model card's YAML front matter is not valid: {str(exc)[:500]}; fix the block "
                                   "between the two '---' lines at the top of README.md") from None


def _card_fields(readme: Path | None) -> dict[str, Any]:
    if readme is None:
        return {}
    try:
        return card_fields(readme.read_text(encoding="utf-8", errors="replace"))
    except InvalidArgumentError:  # a README without (valid) YAML is still a README
        return {}


def import_hf(hub: Hub, source: str, name: str | None = None, *, revision: str | None = None, convert_pickle: bool = False,
              auto_class: str | None = None, **details: Any) -> ModelVersion:
    """Publish a Hugging Face model folder or repo as a new version; see :meth:`hub.Hub.import_hf`."""
    if not isinstance(source, str) or not source:
        raise InvalidArgumentError(f"source must be a folder or a repo id, not {source!r}")
    local = Path(source).expanduser().is_dir()
    folder = _fetch(source, revision)
    name = validate_name(name) if name is not None else _default_name(source, folder, local)
    # a Hugging Face cache snapshot is links into its repo's blobs/ folder: links may go that far, no further
    listed = list_folder(folder, links_within=None if local else folder.parent.parent)
    metadata: dict[str, Any] = {"source": str(folder.resolve()) if local else source}
    if revision:
        metadata["revision"] = revision
    return publish_hf_files(hub, LocalFiles(listed.files, str(folder)), name, metadata=metadata, convert_pickle=convert_pickle,
                            auto_class=auto_class, **details)


def publish_hf_files(hub: Hub, source: LocalFiles, name: str, *, metadata: dict[str, Any], convert_pickle: bool = False,
                     auto_class: str | None = None, **details: Any) -> ModelVersion:
    """Publish files in the Hugging Face layout (a folder's, or a commit's over ``hub serve``) as a new version
    of ``name``, as :func:`import_hf` does: other frameworks' weights left out, pickles refused (or converted),
    the architecture from ``config.json``, task, license, tags and lineage from the card's YAML, and a
    ``modelhub.json`` among them honoured as ``hub publish`` of a folder honours it.

    Args:
        source: the files; those in ``source.stored`` are claimed from the store, not copied.
        name: the model.
        metadata: facts to record (``source``, ...); the card's ``base_model``, ``datasets``, ``language``
            and ``library_name`` are added.
        convert_pickle, auto_class, details: as for :meth:`hub.Hub.import_hf`.

    Returns:
        The new version.

    Raises:
        UnsafeFormatError: only pickle weights and no ``convert_pickle``.
        InvalidSourceError: a bad ``config.json`` or shard index, no weights.
        MissingBlobsError: a file of ``source.stored`` is no longer in the store.
        And what :meth:`hub.Hub.publish` raises.
    """
    files = {p: f for p, f in source.files.items() if f.suffix.lower() not in OTHER_FRAMEWORKS}
    pickles = {p: f for p, f in files.items() if f.suffix.lower() in PICKLE_SUFFIXES and not p.endswith(("training_args.bin",))}
    files = {p: f for p, f in files.items() if f.suffix.lower() not in PICKLE_SUFFIXES}
    has_safetensors = any(p.endswith(".safetensors") for p in files)
    folder, metadata = source.origin, dict(metadata)
    with tempfile.TemporaryDirectory(prefix="hub-import-") as staging:
        if pickles and not has_safetensors:
            if not convert_pickle:
                raise UnsafeFormatError(
                    f"{folder} holds only pickle weights ({', '.join(sorted(pickles))}), which can run code when loaded; "
                    "pass convert_pickle=True to convert them with torch.load(weights_only=True)"
                ).about(convert_pickle="convert_pickle=True")
            files.update(_convert_pickles(pickles, Path(staging)))
            metadata["converted_from_pickle"] = sorted(pickles)
        elif pickles:
            metadata["skipped_pickle_files"] = sorted(pickles)
        _check_index(files, folder)
        architecture, config = None, None
        if "config.json" in files:
            hf_config = _read_config(files["config.json"])
            architecture, config = "transformers", {"auto_class": auto_class or auto_class_for(hf_config), "hf_config": hf_config}
        card = _card_fields(files.get("README.md"))
        for key in ("base_model", "datasets", "language", "library_name"):
            if card.get(key):
                metadata[key] = card[key]
        from_card = {"task": card.get("pipeline_tag"), "license": card.get("license") if isinstance(card.get("license"), str) else None,
                     "tags": [t for t in card.get("tags") or [] if isinstance(t, str)]}
        given = {key: value for key, value in details.items() if value not in (None, (), [], "")}
        stored = {p: known for p, known in source.stored.items() if p in files}
        return hub.publish(LocalFiles(files, folder, stored), name, architecture=architecture, config=config, metadata=metadata,
                           **{**from_card, **given})
