"""Loading stored weights: straight from safetensors onto the target device.

The module is built on the meta device (no memory, no random init), the
weights are opened with ``safe_open`` on the target device (memory-mapped on
the CPU, copied once onto an accelerator), and ``load_state_dict(assign=True)``
hands them to the module without a second copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.architectures import create, create_empty
from hub.storage import BlobStore
from hub.entities import ModelVersion
from hub.errors import DeviceError, IntegrityError, UnsafeFormatError, WeightsMismatchError
from hub.families import family_for
from hub.safetensors_io import read_header

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["resolve_device", "resolve_dtype", "check_files", "stored_tensors", "load_weights", "build_module", "load_module"]


def resolve_device(device: Any = "auto") -> torch.device:
    """The ``torch.device`` for ``device``: ``"auto"`` picks cuda, then mps, then cpu.

    Raises:
        DeviceError: malformed, or not available on this machine.
    """
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"device {device!r} is not a device ({exc}); use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'").about(
            "device") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r}: CUDA is not available on this machine; use 'auto' or 'cpu'").about("device")
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)").about("device")
        return torch.device("cuda", index)
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"device {device!r}: MPS is not available on this machine; use 'auto' or 'cpu'").about("device")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'mps'").about("device")
    return resolved


def resolve_dtype(dtype: Any) -> torch.dtype | None:
    """A floating ``torch.dtype`` from a dtype or its name (``"bfloat16"``), or None.

    Raises:
        WeightsMismatchError: not a floating dtype.
    """
    import torch

    if dtype is None:
        return None
    resolved = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise WeightsMismatchError(f"dtype {dtype!r} is not a floating dtype; use e.g. torch.float16 or 'bfloat16'")
    return resolved


def check_files(blobs: BlobStore, version: ModelVersion, paths: Any, *, verify: bool) -> dict[str, Path]:
    """The blob path of each of ``paths``, after checking size (always) and sha256 (``verify``).

    Raises:
        IntegrityError: naming the model, version and file.
    """
    found = {}
    for path in paths:
        entry = version.file(path)
        problem = blobs.problem(entry.sha256, entry.size, check_hash=verify)
        if problem:
            raise IntegrityError(f"{version.ref}: file {path!r}: {problem}; restore it or republish, then run `hub verify`")
        found[path] = blobs.local_path(entry.sha256)
    return found


def stored_tensors(blobs: BlobStore, version: ModelVersion, *, device: Any = "cpu", verify: bool = False) -> dict[str, torch.Tensor]:
    """The tensors the version stores, by name, on ``device``: each weight file read through its view
    (only the tensors it uses, renamed with its prefix), tied aliases left out.

    Raises:
        IntegrityError: a weight file is missing, truncated or (with ``verify``) corrupt.
        UnsafeFormatError: a weight file is not valid safetensors.
    """
    from safetensors import SafetensorError, safe_open

    target = resolve_device(device)
    state: dict[str, torch.Tensor] = {}
    for path, blob in check_files(blobs, version, version.weight_files, verify=verify).items():
        view = version.weight_views.get(path, {"prefix": "", "skip": []})
        try:
            _check_header_once(blob)  # the same checks as at publish: a blob replaced by one of the same size is seen here
            with safe_open(blob, framework="pt", device=str(target)) as f:
                if view["skip"]:
                    skip = set(view["skip"])
                    tensors = {name: f.get_tensor(name) for name in f.offset_keys() if name not in skip}
                else:
                    tensors = f.get_tensors()
        except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
            raise UnsafeFormatError(f"{version.ref}: {path!r} is not valid safetensors ({exc}); run `hub verify`") from exc
        state.update({view["prefix"] + name: tensor for name, tensor in tensors.items()} if view["prefix"] else tensors)
    return state


_checked_headers: set[tuple[str, int, int]] = set()


def _check_header_once(blob: Path) -> None:
    """:func:`read_header`'s checks, once per process for a blob file that has not changed since
    (same size and modification time): blobs are immutable, and repeated loads stay fast."""
    stat = blob.stat()
    key = (str(blob), stat.st_size, stat.st_mtime_ns)
    if key not in _checked_headers:
        read_header(blob)
        _checked_headers.add(key)


def load_weights(blobs: BlobStore, version: ModelVersion, *, device: Any = "cpu", dtype: Any = None, verify: bool = False) -> dict[str, torch.Tensor]:
    """The version's tensors by name, on ``device`` (tied names share one tensor).

    Raises:
        IntegrityError: a weight file is missing, truncated or (with ``verify``) corrupt.
        UnsafeFormatError: a weight file is not valid safetensors.
        DeviceError, WeightsMismatchError: a bad ``device`` or ``dtype``.
    """
    cast = resolve_dtype(dtype)
    state = stored_tensors(blobs, version, device=device, verify=verify)
    if cast is not None:
        state = {k: v.to(cast) if v.is_floating_point() else v for k, v in state.items()}
    for dropped, kept in version.tied.items():
        state[dropped] = state[kept]
    return state


def build_module(version: ModelVersion, device: Any = None) -> nn.Module:
    """Build the version's architecture: parameters on the meta device (no memory, no init) and
    buffers real on the CPU (or left to its family's ``finish``), or, with ``device``, everything real there.

    Raises:
        WeightsMismatchError: the version has no architecture to build.
    """
    import torch

    if not version.architecture:
        raise WeightsMismatchError(
            f"{version.ref} was published without an architecture, so it can't be built; "
            "use hub.load_state_dict() and load the weights into your own module"
        )
    if device is None:
        return create_empty(version.architecture, **version.config)
    with torch.device(device):
        return create(version.architecture, **version.config)


def computed_buffers(module: nn.Module) -> set[str]:
    """Names of buffers the module computes itself (non-persistent): never taken from a checkpoint."""
    return {
        f"{prefix}.{name}" if prefix else name
        for prefix, owner in module.named_modules()
        for name in owner._non_persistent_buffers_set
    }


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The submodule holding tensor ``name`` (``"a.b.weight"``) and the tensor's own name there."""
    owner_name, _, attr = name.rpartition(".")
    return module.get_submodule(owner_name), attr


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    owner, attr = _owner(module, name)
    return owner._parameters[attr] if attr in owner._parameters else owner._buffers[attr]


def _complete(module: nn.Module, version: ModelVersion, device: torch.device) -> None:
    """Move computed buffers to ``device``, and give real values to parameters the weights lacked
    (``strict=False``) from a freshly initialised build."""
    for owner in module.modules():
        for name, buffer in owner._buffers.items():
            if buffer is not None and buffer.device != device:
                owner._buffers[name] = buffer.to(device)
    missing = [name for name, p in module.named_parameters() if p.is_meta]
    if missing:
        fresh = dict(build_module(version, device).named_parameters())
        for name in missing:
            owner, attr = _owner(module, name)
            owner._parameters[attr] = fresh[name]


def load_module(blobs: BlobStore, version: ModelVersion, *, device: Any = "auto", dtype: Any = None, strict: bool = True, verify: bool = False) -> nn.Module:
    """Build ``version``'s module on the meta device and give it its weights on ``device``.

    Returns:
        The module in eval mode; ``module.hub_version`` is ``version``.

    Raises:
        WeightsMismatchError: the weights don't fit the architecture (with ``strict``).
        IntegrityError, UnsafeFormatError, DeviceError: see :func:`load_weights`.
    """
    target = resolve_device(device)
    module = build_module(version)
    state = load_weights(blobs, version, device=target, dtype=dtype, verify=verify)
    family = family_for(version.architecture)
    state = family.map_checkpoint(module, state)  # e.g. a checkpoint with a head loads into its base model
    for name in computed_buffers(module) & state.keys():  # older checkpoints saved some (BERT's position_ids)
        del state[name]
    try:
        result = module.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shapes that differ
        raise WeightsMismatchError(f"{version.ref}: the stored weights don't fit architecture {version.architecture!r}: {exc}") from None
    family.finish(module, target)  # tied weights, buffers the checkpoint lacks
    missing = [k for k in result.missing_keys if _tensor(module, k).is_meta]
    if strict and (missing or result.unexpected_keys):
        raise WeightsMismatchError(
            f"{version.ref}: the stored weights don't fit architecture {version.architecture!r}: "
            f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}; load with strict=False to accept that"
        )
    _complete(module, version, target)
    module.eval()
    module.hub_version = version
    return module
