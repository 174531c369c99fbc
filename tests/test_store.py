"""The blob store and the safetensors writer/reader."""

import json
import re
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from hub import IntegrityError, UnsafeFormatError
from hub.storage import sha256_file
from hub.safetensors_io import dedupe_shared, iter_safetensors_bytes, read_header

pytestmark = pytest.mark.one_backend  # nothing here depends on the registry backend


def serialize(tensors, metadata=None) -> bytes:
    chunks, _ = iter_safetensors_bytes(tensors, metadata)
    return b"".join(bytes(c) for c in chunks)


def sample_tensors():
    torch.manual_seed(0)
    return {
        "w": torch.randn(5, 3),
        "b": torch.arange(4),
        "half": torch.randn(3, dtype=torch.bfloat16),
        "flag": torch.tensor(True),
        "empty": torch.empty(0, 2),
        "transposed": torch.randn(3, 4).t(),
    }


def test_bytes_equal_safetensors_save_file(tmp_path):
    tensors = {k: v.contiguous() for k, v in sample_tensors().items()}
    save_file(tensors, tmp_path / "ref.safetensors", metadata={"k": "v"})
    assert serialize(sample_tensors(), {"k": "v"}) == (tmp_path / "ref.safetensors").read_bytes()


def test_serialization_is_deterministic_and_loadable(tmp_path):
    first, second = serialize(sample_tensors()), serialize(dict(reversed(list(sample_tensors().items()))))
    assert first == second
    (tmp_path / "m.safetensors").write_bytes(first)
    loaded = load_file(tmp_path / "m.safetensors")
    for key, value in sample_tensors().items():
        assert torch.equal(loaded[key], value)


def test_dedupe_shared_keeps_one_copy_of_tied_tensors():
    weight = torch.randn(4, 4)
    unique, tied = dedupe_shared({"embed.weight": weight, "head.weight": weight, "bias": torch.zeros(4)})
    assert set(unique) == {"bias", "embed.weight"}
    assert tied == {"head.weight": "embed.weight"}


def test_write_is_content_addressed_and_deduplicated(blob_store):
    store = blob_store
    digest, size = store.put_bytes(b"hello world")
    assert store.path(digest).read_bytes() == b"hello world" and size == 11
    assert sha256_file(store.path(digest)) == (digest, 11)
    again, _ = store.write([b"hello ", memoryview(b"world")])
    assert again == digest
    assert sorted(store.digests()) == [digest]
    assert store.temp_files() == []


def test_expected_hash_mismatch_stores_nothing(blob_store):
    store = blob_store
    with pytest.raises(IntegrityError, match="expected"):
        store.write([b"abc"], expected_sha256="0" * 64)
    assert list(store.blobs.iterdir()) == []


def test_failed_write_leaves_no_partial_file(blob_store):
    store = blob_store

    def chunks():
        yield b"x" * 1000
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        store.write(chunks())
    assert list(store.blobs.iterdir()) == []


def test_problem_reports_missing_truncated_and_corrupt(blob_store):
    store = blob_store
    digest, size = store.put_bytes(b"0123456789")
    assert store.problem(digest, size, check_hash=True) is None
    path = store.path(digest)
    path.write_bytes(b"0123456780")
    assert store.problem(digest, size, check_hash=False) is None
    assert "corrupted" in store.problem(digest, size, check_hash=True)
    path.write_bytes(b"01234")
    assert "truncated" in store.problem(digest, size, check_hash=False)
    path.unlink()
    assert "missing" in store.problem(digest, size, check_hash=False)


def write_raw(path, header: dict | bytes, data: bytes = b"", length: int | None = None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "length", "fragment"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 10**12, "more than"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 5000, "only"),
        (b"{not json", b"", None, "not JSON"),
        (b"[1, 2]", b"", None, "not a JSON object"),
        ({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, "shape [3]"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, None, "overlaps"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, None, "file has"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 16, None, "file has"),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16, None, "gap"),
    ],
)
def test_read_header_refuses_malformed_files(tmp_path, header, data, length, fragment):
    path = write_raw(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(UnsafeFormatError, match=re.escape(fragment)):
        read_header(path)


def test_read_header_accepts_real_files(tmp_path):
    save_file({"a": torch.zeros(2, 3), "b": torch.ones(4, dtype=torch.int64)}, tmp_path / "ok.safetensors")
    header = read_header(tmp_path / "ok.safetensors")
    assert {k: (v.dtype, v.shape) for k, v in header.tensors.items()} == {"a": ("float32", (2, 3)), "b": ("int64", (4,))}
