"""A publish never acknowledges bytes it has not verified (issue "Reliability, round 2", items 2 and 3).

- A blob of the right name and size that is already in the store may be damaged (a flipped bit):
  republishing the same weights must not acknowledge a version that is corrupt from birth. The
  freshly hashed bytes replace it; a parent's weight file reused by a fine-tune is hashed first.
- A weight file that changes while it is copied in (a trainer still writing it) must not become
  an unloadable version that ``hub verify`` calls ok: the stored copy's header, offsets and size
  are checked before it gets its name, or the publish fails and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import hub
from conftest import state

BIG = 5 * 1024 * 1024  # floats: 20 MB, more than one 16 MB copy chunk


def flip_a_byte(path: Path, offset: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def weights_blob(home: Path, version: hub.ModelVersion) -> Path:
    return home / "blobs" / version.file(version.weight_files[0]).sha256


@pytest.mark.parametrize("source", ["state dict", "file"])
def test_republishing_over_a_damaged_blob_stores_verified_bytes(hub_home, tmp_path, source):
    tensors = {"w": torch.arange(64.0), "b": torch.ones(8)}
    save_file(tensors, tmp_path / "model.safetensors")
    publish = (lambda: hub.publish(tensors, "acme/m")) if source == "state dict" else (lambda: hub.publish(tmp_path / "model.safetensors", "acme/m"))
    first = publish()
    blob = weights_blob(hub_home, first)
    flip_a_byte(blob)  # same name, same size, other bytes
    assert not hub.verify(first.ref).ok
    second = publish()
    assert second.file(second.weight_files[0]).sha256 == blob.name
    assert hub.verify(second.ref).ok, hub.verify(second.ref).problems
    assert torch.equal(hub.load_state_dict(second.ref, verify=True)["w"], tensors["w"])
    assert hub.verify().ok  # the first version's blob is whole again too


def test_a_fine_tune_does_not_reuse_a_damaged_parent_weight_file(hub_home):
    body = {"body.weight": torch.randn(256, 256), "head.weight": torch.randn(10, 256)}
    parent = hub.publish(body, "acme/base")
    flip_a_byte(weights_blob(hub_home, parent))
    child_weights = {**body, "head.weight": torch.zeros(10, 256)}
    child = hub.publish(child_weights, "acme/tuned", parent=parent.ref)
    assert hub.verify(child.ref).ok, hub.verify(child.ref).problems
    loaded = hub.load_state_dict(child.ref, verify=True)
    assert torch.equal(loaded["body.weight"], body["body.weight"]) and torch.equal(loaded["head.weight"], torch.zeros(10, 256))


def test_a_healthy_parent_weight_file_is_still_shared(hub_home):
    body = {"body.weight": torch.randn(256, 256), "head.weight": torch.randn(10, 256)}
    parent = hub.publish(body, "acme/base")
    child = hub.publish({**body, "head.weight": torch.zeros(10, 256)}, "acme/tuned", parent=parent.ref)
    assert parent.file(parent.weight_files[0]).sha256 in {f.sha256 for f in child.files}  # shared, not copied
    assert hub.verify(child.ref).ok


@pytest.mark.parametrize("change", ["truncated", "grown", "rewritten"])
def test_a_weight_file_that_changes_while_it_is_copied_is_refused_and_nothing_is_written(hub_home, tmp_path, change):
    source = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(BIG), "b": torch.zeros(4)}, source)
    hub.publish({"other": torch.zeros(2)}, "acme/other")
    before = state(hub_home)
    blobs = hub.default_hub().blobs
    size = source.stat().st_size
    rewritten = tmp_path / "rewritten.safetensors"
    save_file({"w": torch.ones(BIG // 2), "x": torch.zeros(BIG // 2), "b": torch.zeros(4)}, rewritten)

    def writer_still_writing(nbytes: int) -> None:  # the copy has its first chunk; the trainer goes on
        blobs.on_bytes = None
        if change == "truncated":
            with open(source, "r+b") as f:
                f.truncate(size // 2)
        elif change == "grown":
            with open(source, "ab") as f:
                f.write(b"\0" * 4096)
        else:  # written over in place (a rename to a new file would leave the copy a whole, consistent old one)
            with open(source, "r+b") as f:
                f.write(rewritten.read_bytes())

    blobs.on_bytes = writer_still_writing
    try:
        with pytest.raises(hub.InvalidSourceError, match="changed while it was copied"):
            hub.publish(source, "acme/m")
    finally:
        blobs.on_bytes = None
    assert state(hub_home) == before
    assert hub.verify().ok and hub.verify(min_age_seconds=0).leftovers == ()
