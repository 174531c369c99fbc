"""Reliability and security: damaged blobs are caught, hostile files are refused, no model code runs.

1. Integrity: a flipped byte, a truncated, extended or missing blob is caught, naming the
   model, version and file, for weights, the manifest, the README card and extra files.
2. Hostile files: malformed safetensors through every entry point that reads them, paths that
   would leave a folder, links out of a published folder, models that ship custom code.
3. No unsafe loading in the source tree (an ``ast`` walk over hub/, finetune/ and webui/).
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import hub
from conftest import ROOT, assert_same_tensors, is_sqlite, state
from hub import ArchitectureError, IntegrityError, InvalidSourceError, UnsafeFormatError
from hub.storage import FileStore as BlobStore, sha256_file
from hub.manifest import Manifest, check_relative_path
from hub.safetensors_io import read_header

pytestmark = pytest.mark.one_backend  # nothing here depends on the registry backend


def make_mlp(seed: int = 0, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    return hub.create("mlp", **({"in_features": 4, "hidden": [8], "out_features": 3} | config))


def blob(home: Path, digest: str) -> Path:
    return home / "blobs" / digest


# --- 1. integrity ------------------------------------------------------------------------

CARD = "---\nlicense: mit\n---\n\n# Iris classifier\n\nThree classes of iris.\n"


def publish_with_every_kind_of_file(tmp_path: Path) -> hub.ModelVersion:
    """acme/iris:1 with weights, a README card, a tokenizer-like file and a label file (all distinct bytes)."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "petal": 1}}}))
    (extra / "labels.txt").write_text("setosa\nversicolor\nvirginica\n")
    return hub.publish(make_mlp(), "acme/iris", card=CARD,
                       files={"tokenizer.json": extra / "tokenizer.json", "labels.txt": extra / "labels.txt"})


KINDS = ["model.safetensors", "README.md", "tokenizer.json", "manifest"]


def digest_of(version: hub.ModelVersion, kind: str) -> str:
    return version.digest if kind == "manifest" else version.file(kind).sha256


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":  # same size, one bit pattern changed: only a hash check sees it
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif how == "truncate":
        path.write_bytes(data[:-5])
    elif how == "extend":
        path.write_bytes(data + b"\0" * 7)
    else:
        path.unlink()


DAMAGES = ["flip", "truncate", "extend", "missing"]
FILE_PROBLEM = {"flip": "(corrupted)", "truncate": "(truncated or overwritten)", "extend": "(truncated or overwritten)", "missing": "is missing"}


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_verify_reports_damage_naming_model_version_and_file(hub_home, tmp_path, kind, how):
    version = publish_with_every_kind_of_file(tmp_path)
    hub.publish(make_mlp(1), "acme/other")
    assert hub.verify().ok
    damage(blob(hub_home, digest_of(version, kind)), how)
    where = "acme/iris:1: manifest: " if kind == "manifest" else f"acme/iris:1: file {kind!r}: "
    # the manifest has no size of its own to compare: truncated or extended, it no longer hashes to its name
    fragment = FILE_PROBLEM[how] if kind != "manifest" or how == "missing" else "(corrupted)"
    for report in (hub.verify("acme/iris"), hub.verify()):
        assert len(report.problems) == 1, report.problems
        assert report.problems[0].startswith(where) and fragment in report.problems[0]
    assert hub.verify("acme/other").ok


READERS = {  # the call that reads each kind of file and must catch damage to it
    "model.safetensors": lambda: hub.load("acme/iris", device="cpu", verify=True),
    "README.md": lambda: hub.read_card("acme/iris"),
    "tokenizer.json": lambda: hub.download("acme/iris"),
    "manifest": lambda: hub.download("acme/iris"),
}


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_reading_a_damaged_file_raises_integrity_error_naming_it(hub_home, tmp_path, kind, how):
    version = publish_with_every_kind_of_file(tmp_path)
    damage(blob(hub_home, digest_of(version, kind)), how)
    named = "acme/iris:1: manifest" if kind == "manifest" else f"acme/iris:1: file {kind!r}"
    with pytest.raises(IntegrityError) as error:
        READERS[kind]()
    assert named in str(error.value) and "hub verify" in str(error.value)


@pytest.mark.parametrize("how", ["flip", "truncate", "missing"])
@pytest.mark.parametrize("kind", KINDS)
def test_download_refuses_a_damaged_blob_without_a_partial_file(hub_home, tmp_path, kind, how):
    version = publish_with_every_kind_of_file(tmp_path)
    damage(blob(hub_home, digest_of(version, kind)), how)
    target = tmp_path / "download"
    with pytest.raises(IntegrityError, match="acme/iris:1: " + ("manifest" if kind == "manifest" else f"file '{kind}'")):
        hub.download("acme/iris", target)
    left = sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) if target.exists() else []
    assert not any(".tmp-" in name or name.endswith(".incomplete") for name in left), left
    assert "modelhub.json" not in left  # written last: a folder without it is an unfinished download
    if kind != "manifest":
        assert kind not in left
    else:
        assert left == []  # the manifest is checked before anything is copied


def test_download_checks_the_hash_of_every_file_it_writes(tmp_path):
    version = publish_with_every_kind_of_file(tmp_path)
    folder = hub.download("acme/iris", tmp_path / "copy")
    for entry in version.files:
        assert sha256_file(folder / entry.path) == (entry.sha256, entry.size), entry.path
    assert Manifest.from_json((folder / "modelhub.json").read_bytes()).files == version.files


def test_load_tokenizer_refuses_a_damaged_extra_file(hub_home, tmp_path):
    version = publish_with_every_kind_of_file(tmp_path)
    damage(blob(hub_home, version.file("tokenizer.json").sha256), "flip")
    with pytest.raises(IntegrityError, match="acme/iris:1: file 'tokenizer.json'.*corrupted"):
        hub.load_tokenizer("acme/iris")
    folder = hub_home / "snapshots" / "acme+iris" / "1-tokenizer"
    assert not (folder / "tokenizer.json").exists()
    assert not [p for p in folder.rglob("*") if ".tmp-" in p.name]


# verify=False is the fast default: sizes are always checked, hashes only with verify=True.


@pytest.mark.parametrize("how", ["truncate", "extend"])
def test_without_verify_a_size_change_is_still_caught(hub_home, how):
    version = hub.publish(make_mlp(), "acme/iris")
    damage(blob(hub_home, version.files[0].sha256), how)
    for call in (lambda: hub.load("acme/iris", device="cpu"), lambda: hub.load_state_dict("acme/iris")):
        with pytest.raises(IntegrityError, match=r"acme/iris:1: file 'model.safetensors'.*truncated or overwritten"):
            call()


def test_without_verify_a_same_size_flip_in_the_data_is_not_caught_by_design(hub_home):
    """The documented trade-off: verify=False reads no byte it doesn't need, so a flipped byte in the
    tensor data loads (changed); verify=True and hub.verify() catch it."""
    version = hub.publish(make_mlp(), "acme/iris")
    original = {k: v.clone() for k, v in hub.load_state_dict("acme/iris").items()}  # a copy, not a view of the mapped file
    damage(blob(hub_home, version.files[0].sha256), "flip")  # the last byte: tensor data
    changed = hub.load_state_dict("acme/iris")
    assert sorted(changed) == sorted(original)
    assert [k for k in original if not torch.equal(original[k], changed[k])] == ["layers.2.weight"]
    hub.load("acme/iris", device="cpu")  # loads, with that tensor changed
    with pytest.raises(IntegrityError, match="corrupted"):
        hub.load("acme/iris", device="cpu", verify=True)
    assert not hub.verify("acme/iris").ok


def test_without_verify_a_same_size_flip_in_the_header_is_refused_as_unsafe(hub_home):
    version = hub.publish(make_mlp(), "acme/iris")
    path = blob(hub_home, version.files[0].sha256)
    data = bytearray(path.read_bytes())
    data[8] ^= 0xFF  # the header's opening brace
    path.write_bytes(bytes(data))
    with pytest.raises(UnsafeFormatError, match="acme/iris:1: 'model.safetensors' is not valid safetensors"):
        hub.load("acme/iris", device="cpu")
    with pytest.raises(IntegrityError, match="corrupted"):
        hub.load("acme/iris", device="cpu", verify=True)


def test_put_file_with_a_wrong_expected_hash_stores_nothing(tmp_path):
    store = BlobStore(tmp_path / "home")
    source = tmp_path / "weights.bin"
    source.write_bytes(b"\x01" * 100_000)
    right, size = sha256_file(source)
    with pytest.raises(IntegrityError, match=f"expected {'0' * 64}"):
        store.put_file(source, expected_sha256="0" * 64)
    assert list(store.blobs.iterdir()) == []  # neither the blob nor a temporary file
    flipped = right[:-1] + ("0" if right[-1] != "0" else "1")
    with pytest.raises(IntegrityError):
        store.put_file(source, expected_sha256=flipped)
    assert list(store.blobs.iterdir()) == []
    assert store.put_file(source, expected_sha256=right) == (right, size)
    assert [p.name for p in store.blobs.iterdir()] == [right] and sha256_file(store.path(right)) == (right, size)


# --- 2. hostile safetensors --------------------------------------------------------------


def st_file(header: dict | bytes, data: bytes = b"", *, length: int | None = None, size: int | None = None) -> bytes:
    """Safetensors-shaped bytes. ``size``: pad the header with spaces (JSON whitespace) to make the file that long."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    if size is not None:
        assert size >= 8 + len(raw) + len(data), "the case does not fit in the file it replaces"
        raw += b" " * (size - 8 - len(raw) - len(data))
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def entry(dtype="F32", shape=(2,), offsets=(0, 8)) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@dataclass(frozen=True)
class Bad:
    """A malformed safetensors file: ``build(size)`` makes it, ``size`` bytes long when given."""

    id: str
    build: Callable[[int | None], bytes]
    fragment: str  # in the UnsafeFormatError's message
    same_size: bool = True  # can replace a stored blob of the same size


def header_case(id: str, header: dict | bytes, data: bytes, fragment: str) -> Bad:
    return Bad(id, lambda size: st_file(header, data, size=size), fragment)


TENSOR = entry()
BAD = [
    Bad("empty-file", lambda size: b"", "shorter than the 8-byte header length", same_size=False),
    Bad("shorter-than-8-bytes", lambda size: b"\x10\0\0", "shorter than the 8-byte header length", same_size=False),
    Bad("length-beyond-the-file", lambda size: st_file({"a": TENSOR}, b"\0" * 8, length=(size or 100) + 1000, size=size), "but the file has only"),
    Bad("length-2**40-in-a-tiny-file", lambda size: st_file(b"{}", length=2**40, size=size), "more than the"),
    Bad("length-200MB-in-a-small-file", lambda size: st_file(b"{}", length=200_000_000, size=size), "more than the"),
    Bad("length-2**64-1", lambda size: st_file(b"{}", length=2**64 - 1, size=size), "more than the"),
    header_case("invalid-json", b"{not json", b"", "not JSON"),
    header_case("non-string-key", b'{1: {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8, "not JSON"),
    header_case("json-array", b"[1, 2]", b"", "not a JSON object"),
    header_case("json-null", b"null", b"", "not a JSON object"),
    header_case("not-utf8", b'{"a\xff": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8, "not JSON"),
    header_case("utf16-json", json.dumps({"a": TENSOR}).encode("utf-16"), b"\0" * 8, "not JSON"),
    header_case("byte-order-mark", b"\xef\xbb\xbf" + json.dumps({"a": TENSOR}).encode(), b"\0" * 8, "not JSON"),
    header_case("lone-surrogate-name", b'{"\\ud800": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8, "not JSON"),
    header_case("nested-100000-deep", b"[" * 50_000 + b"]" * 50_000, b"", "not JSON"),
    header_case("5000-digit-number", b'{"a": {"dtype": "F32", "shape": [' + b"1" * 5000 + b'], "data_offsets": [0, 8]}}', b"\0" * 8, "not JSON"),
    header_case("duplicate-key", b'{"a": ' + json.dumps(TENSOR).encode() + b', "a": ' + json.dumps(TENSOR).encode() + b"}", b"\0" * 8, "twice"),
    header_case("duplicate-field", b'{"a": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8, "twice"),
    header_case("entry-not-an-object", {"a": 5}, b"", "unknown dtype"),
    header_case("unknown-dtype", {"a": entry(dtype="F33")}, b"\0" * 8, "unknown dtype"),
    header_case("dtype-not-a-string", {"a": entry(dtype=4)}, b"\0" * 8, "unknown dtype"),
    header_case("dtype-a-list", {"a": entry(dtype=["F32"])}, b"\0" * 8, "unknown dtype"),
    header_case("dtype-an-object", {"a": entry(dtype={"F32": 1})}, b"\0" * 8, "unknown dtype"),
    header_case("shape-times-dtype-too-big", {"a": entry(shape=(3,))}, b"\0" * 8, "shape [3] of F32 but 8 bytes"),
    header_case("shape-times-dtype-too-small", {"a": entry(dtype="F64", shape=(2,))}, b"\0" * 8, "shape [2] of F64 but 8 bytes"),
    header_case("negative-dim", {"a": entry(shape=(-2,))}, b"\0" * 8, "invalid shape"),
    header_case("negative-dims-multiply-right", {"a": entry(shape=(-1, -2))}, b"\0" * 8, "invalid shape"),
    header_case("float-dim", {"a": entry(shape=(2.0,))}, b"\0" * 8, "invalid shape"),
    header_case("bool-dim", {"a": entry(shape=(True, True))}, b"\0" * 8, "invalid shape"),
    header_case("shape-not-a-list", {"a": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}, b"\0" * 8, "invalid shape"),
    header_case("dims-beyond-int64", {"a": entry(shape=(2**64 - 1, 0), offsets=(0, 0))}, b"", "invalid shape"),
    header_case("dims-overflow-together", {"a": entry(shape=(2**32, 2**32, 0), offsets=(0, 0))}, b"", "invalid shape"),
    header_case("overlapping-offsets", {"a": entry(), "b": entry(offsets=(4, 12))}, b"\0" * 12, "overlaps"),
    header_case("same-offsets-twice", {"a": entry(), "b": entry()}, b"\0" * 8, "overlaps"),
    header_case("gap-before-a-tensor", {"a": entry(offsets=(8, 16))}, b"\0" * 16, "gap"),
    header_case("offsets-out-of-range", {"a": entry(shape=(2**20,), offsets=(0, 2**22))}, b"\0" * 8, "file has"),
    header_case("data-past-the-last-tensor", {"a": entry()}, b"\0" * 16, "file has"),
    header_case("data-shorter-than-the-offsets", {"a": entry()}, b"\0" * 4, "file has"),
    header_case("no-tensors-but-data", {}, b"\0" * 8, "file has"),
    header_case("offsets-reversed", {"a": entry(offsets=(8, 0))}, b"\0" * 8, "but -8 bytes"),
    header_case("negative-offset", {"a": entry(offsets=(-8, 0))}, b"\0" * 8, "invalid data_offsets"),
    header_case("one-offset", {"a": entry(offsets=(8,))}, b"\0" * 8, "invalid data_offsets"),
    header_case("float-offsets", {"a": entry(offsets=(0.0, 8.0))}, b"\0" * 8, "invalid data_offsets"),
    header_case("metadata-a-list", {"__metadata__": [], "a": TENSOR}, b"\0" * 8, "__metadata__"),
    header_case("metadata-a-string", {"__metadata__": "format=pt", "a": TENSOR}, b"\0" * 8, "__metadata__"),
    header_case("metadata-false", {"__metadata__": False, "a": TENSOR}, b"\0" * 8, "__metadata__"),
    header_case("metadata-number-value", {"__metadata__": {"epoch": 3}, "a": TENSOR}, b"\0" * 8, "__metadata__"),
    header_case("metadata-nested-value", {"__metadata__": {"k": {"x": "y"}}, "a": TENSOR}, b"\0" * 8, "__metadata__"),
    header_case("metadata-null-value", {"__metadata__": {"k": None}, "a": TENSOR}, b"\0" * 8, "__metadata__"),
]


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.id)
def test_read_header_refuses_fast_and_without_allocating(tmp_path, bad):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(bad.build(None))
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(UnsafeFormatError, match=r"is not a valid safetensors file: .*" + re.escape(bad.fragment)):
            read_header(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 4 * 1024 * 1024 + 20 * path.stat().st_size, peak  # what the file holds, never what it claims


def test_a_header_claiming_huge_lengths_does_not_raise_peak_memory(tmp_path):
    """In a fresh interpreter, peak RSS (ru_maxrss) does not move while the claims are refused."""
    for length in (2**40, 200_000_000, 99_000_000):
        (tmp_path / f"{length}.safetensors").write_bytes(st_file(b"{}", length=length))
    script = f"""
import resource, sys, time
from pathlib import Path
from hub.safetensors_io import read_header
from hub.errors import UnsafeFormatError
files = sorted(Path({str(tmp_path)!r}).glob("*.safetensors"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
for path in files * 20:
    try:
        read_header(path)
    except UnsafeFormatError:
        pass
    else:
        sys.exit("accepted " + str(path))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, time.perf_counter() - started)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    grown_kib, seconds = result.stdout.split()
    assert int(grown_kib) < 8 * 1024 and float(seconds) < 2.0, result.stdout


def bad_folder(tmp_path: Path, bad: Bad) -> Path:
    folder = tmp_path / "bad-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(bad.build(None))
    (folder / "notes.txt").write_text("travels with the weights\n")
    return folder


ENTRY_POINTS = {
    "publish-file": lambda folder: hub.publish(folder / "model.safetensors", "acme/bad"),
    "publish-folder": lambda folder: hub.publish(folder, "acme/bad"),
    "import-hf": lambda folder: hub.import_hf(str(folder), "acme/bad"),
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.id)
def test_malformed_safetensors_are_refused_by_every_publishing_entry_point(hub_home, tmp_path, bad, entry_point):
    hub.publish({"w": torch.zeros(2)}, "acme/existing")
    folder = bad_folder(tmp_path, bad)
    before = state(hub_home)
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeFormatError, match=re.escape(bad.fragment)):
            ENTRY_POINTS[entry_point](folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak
    assert state(hub_home) == before


@pytest.mark.parametrize("bad", [b for b in BAD if b.same_size], ids=lambda b: b.id)
def test_loading_a_blob_replaced_by_a_malformed_one_of_the_same_size_is_refused(hub_home, bad):
    version = hub.publish(make_mlp(in_features=256, hidden=[128]), "acme/big")  # 133 KB: room for every case
    path = blob(hub_home, version.files[0].sha256)
    path.write_bytes(bad.build(path.stat().st_size))
    assert path.stat().st_size == version.files[0].size
    message = r"acme/big:1: 'model.safetensors' is not valid safetensors .*" + re.escape(bad.fragment)
    with pytest.raises(UnsafeFormatError, match=message):
        hub.load("acme/big", device="cpu")
    with pytest.raises(UnsafeFormatError, match=message):
        hub.load_state_dict("acme/big")
    with pytest.raises(IntegrityError, match="acme/big:1: file 'model.safetensors'.*corrupted"):
        hub.load("acme/big", device="cpu", verify=True)


def test_a_child_of_a_version_whose_blob_was_replaced_does_not_share_it(hub_home):
    """The parent's file fails its sha256, so the child stores its own verified bytes instead of a view of it
    (the same weights: the fresh bytes take the damaged blob's place, which mends the parent too)."""
    parent = hub.publish(make_mlp(), "acme/iris")
    path = blob(hub_home, parent.files[0].sha256)
    path.write_bytes(st_file({"a": entry(shape=(3,))}, b"\0" * 8, size=path.stat().st_size))
    assert not hub.verify(parent.ref).ok
    child = hub.publish(make_mlp(), "acme/iris", parent="acme/iris:1")
    assert child.weight_views == {}
    assert hub.verify(child.ref).ok and hub.verify(parent.ref).ok
    assert torch.equal(hub.load_state_dict(child.ref, verify=True)["layers.0.weight"], make_mlp().state_dict()["layers.0.weight"])


# A header within safetensors' 100 MB can still carry a huge __metadata__ (a map of strings, a few KB
# in real checkpoints): the hub reads at most MAX_METADATA_BYTES of it, measured before it is decoded.


def metadata_file(shape: str, size: int) -> bytes:
    """One tensor and a ``__metadata__`` of about ``size`` bytes, built without a dict of that size."""
    tensor = b'"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}'
    if shape == "many-small-entries":  # the costly kind to parse: two strings, a tuple and a slot per 15 bytes
        entries = b",".join(b'"k%07d":"v"' % i for i in range(size // 15))
        header = b'{"__metadata__": {' + entries + b"}, " + tensor + b"}"
    elif shape == "one-long-value":
        header = b'{"__metadata__": {"notes": "' + b"x" * size + b'"}, ' + tensor + b"}"
    else:  # the key spelled with escapes, after the tensor: it is still the metadata
        header = b"{" + tensor + b', "\\u005f_metadata\\u005f_": {"notes": "' + b"x" * size + b'"}}'
    return st_file(header, b"\0" * 8)


METADATA_SHAPES = ["many-small-entries", "one-long-value", "escaped-key-last"]


@pytest.mark.parametrize("shape", METADATA_SHAPES)
def test_metadata_over_the_hub_limit_is_refused_before_it_is_parsed(tmp_path, shape):
    from hub.safetensors_io import MAX_METADATA_BYTES

    path = tmp_path / "meta.safetensors"
    path.write_bytes(metadata_file(shape, 20_000_000))  # 20 MB: parsed, the small entries cost 370 MB and a second
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(UnsafeFormatError, match=f"its __metadata__ is over {MAX_METADATA_BYTES:,} bytes, the most the hub reads"):
            read_header(path)
        elapsed, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0 and peak < 4 * 1024 * 1024 + 3 * path.stat().st_size, (elapsed, peak)  # the bytes and their text


@pytest.mark.parametrize("shape", METADATA_SHAPES)
def test_metadata_up_to_the_hub_limit_is_read(tmp_path, shape):
    from hub.safetensors_io import MAX_METADATA_BYTES

    path = tmp_path / "meta.safetensors"
    path.write_bytes(metadata_file(shape, MAX_METADATA_BYTES - 100))
    header = read_header(path)
    assert list(header.tensors) == ["w"] and 0.9 * MAX_METADATA_BYTES < len(json.dumps(header.metadata, separators=(",", ":"))) <= MAX_METADATA_BYTES


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_metadata_over_the_hub_limit_is_refused_by_every_publishing_entry_point(hub_home, tmp_path, entry_point):
    hub.publish({"w": torch.zeros(2)}, "acme/existing")
    folder = tmp_path / "meta-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(metadata_file("many-small-entries", 2_000_000))
    before = state(hub_home)
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeFormatError, match="__metadata__ is over"):
            ENTRY_POINTS[entry_point](folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak  # parsed, the 2 MB of metadata cost 37 MB
    assert state(hub_home) == before


def test_loading_a_blob_replaced_by_one_with_huge_metadata_is_refused(hub_home):
    version = hub.publish(make_mlp(in_features=1024, hidden=[1024]), "acme/big")  # 4 MB of weights
    path = blob(hub_home, version.files[0].sha256)
    path.write_bytes(st_file(b'{"__metadata__": {"notes": "' + b"x" * 3_000_000 + b'"}}', size=path.stat().st_size))
    with pytest.raises(UnsafeFormatError, match="acme/big:1: 'model.safetensors' is not valid safetensors .*__metadata__ is over"):
        hub.load_state_dict("acme/big")


def test_a_header_costs_a_small_multiple_of_its_size(tmp_path):
    """Many tensors (the header's real bulk): time and memory in proportion to the header, no more."""
    count = 10_000
    header = {f"layers.{i}.weight": entry(shape=(0,), offsets=(0, 0)) for i in range(count)} | {"w": TENSOR}
    path = tmp_path / "many.safetensors"
    path.write_bytes(st_file(header, b"\0" * 8))  # 0.7 MB
    started = time.perf_counter()
    assert len(read_header(path).tensors) == count + 1
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    try:
        read_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0 and peak < 20 * path.stat().st_size, (elapsed, peak / path.stat().st_size)


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_safetensors_file_without_tensors_is_refused_by_every_publishing_entry_point(hub_home, tmp_path, entry_point):
    """As a state dict without tensors is: there is nothing to publish."""
    from safetensors.torch import save_file

    hub.publish({"w": torch.zeros(2)}, "acme/existing")
    folder = tmp_path / "empty-model"
    folder.mkdir()
    save_file({}, folder / "model.safetensors")
    (folder / "notes.txt").write_text("no weights here\n")
    before = state(hub_home)
    with pytest.raises(InvalidSourceError, match="model.safetensors holds no tensors; there is nothing to publish"):
        ENTRY_POINTS[entry_point](folder)
    assert state(hub_home) == before


# --- 2. paths that would leave a folder --------------------------------------------------

ESCAPING = ["../x", "/abs", "/etc/passwd", "a/../../b", "a/..", "..", ".", "./a", "a/./b", "a//b", "a/", "",
            "a\\b", "..\\x", "C:\\x", "a\x00b", "x\n", "tab\there", "\x1b[31m"]


@pytest.mark.parametrize("path", [*ESCAPING, None, 5, b"model.safetensors", ["a"]], ids=repr)
def test_check_relative_path_refuses(path):
    with pytest.raises(UnsafeFormatError, match="file path"):
        check_relative_path(path)


@pytest.mark.parametrize("path", ["model.safetensors", "1_Pooling/config.json", "a/b/c.txt", "..a", "a..", ".hidden", "é/ü.txt"])
def test_check_relative_path_accepts(path):
    assert check_relative_path(path) == path


@pytest.mark.parametrize("path", ESCAPING, ids=repr)
def test_publish_files_with_an_escaping_path_write_nothing(hub_home, tmp_path, path):
    hub.publish({"w": torch.zeros(2)}, "acme/existing")
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    before = state(hub_home)
    with pytest.raises(UnsafeFormatError, match="file path"):
        hub.publish({"w": torch.ones(2)}, "acme/x", files={path: tmp_path / "vocab.txt"})
    assert state(hub_home) == before


@pytest.mark.parametrize("path", ["../x", "/abs", "a/../../b", "a\\b", "a\x00b"], ids=repr)
def test_a_published_folders_manifest_with_an_escaping_path_is_refused(hub_home, tmp_path, path):
    hub.publish(make_mlp(), "acme/iris")
    folder = hub.download("acme/iris", tmp_path / "copy")
    record = json.loads((folder / "modelhub.json").read_bytes())
    record["files"][0]["path"] = path
    (folder / "modelhub.json").write_text(json.dumps(record))
    before = state(hub_home)
    with pytest.raises(UnsafeFormatError, match="file path"):
        hub.publish(folder, "acme/copy")
    assert state(hub_home) == before


def tamper_registry_path(old: str, new: str) -> None:
    from sqlalchemy import text

    with hub.default_hub().db.engine.begin() as connection:
        connection.execute(text("UPDATE model_version_files SET path = :new WHERE path = :old"), {"new": new, "old": old})


@pytest.mark.one_backend(False)  # what a registry row can hold differs by backend
@pytest.mark.parametrize("path", ["../x", "/tmp/x", "a/../../b", "..\\x", "a\x00b", "sub/../../../x"], ids=repr)
def test_download_and_load_tokenizer_refuse_a_registry_path_that_escapes_and_write_nothing(hub_home, tmp_path, path):
    if "\x00" in path and not is_sqlite():
        pytest.skip("PostgreSQL text can't hold NUL")
    publish_with_every_kind_of_file(tmp_path)
    tamper_registry_path("labels.txt", path)
    before = state(hub_home)
    for call in (lambda: hub.download("acme/iris", tmp_path / "out" / "inside"), lambda: hub.download("acme/iris"),
                 lambda: hub.load_tokenizer("acme/iris")):
        with pytest.raises(UnsafeFormatError, match="file path"):
            call()
    assert state(hub_home) == before
    assert not (tmp_path / "out").exists()


def test_download_refuses_to_write_through_a_link_out_of_the_target(hub_home, tmp_path):
    publish_with_every_kind_of_file(tmp_path)
    tamper_registry_path("tokenizer.json", "sub/tokenizer.json")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(outside)
    with pytest.raises(UnsafeFormatError, match="outside"):
        hub.download("acme/iris", target)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in target.iterdir()) == ["sub"]  # nothing copied before the refusal


def linked_folder(tmp_path: Path, how: str) -> Path:
    folder = tmp_path / "linked"
    folder.mkdir()
    save_file({"w": torch.zeros(2)}, folder / "model.safetensors")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE KEY")
    if how == "file-link-out":
        (folder / "notes.txt").symlink_to(secret / "id_rsa")
    elif how == "dir-link-out":
        (folder / "extra").symlink_to(secret)
    elif how == "link-chain-out":  # an inside link to an inside link to outside
        (folder / "hop").symlink_to(secret / "id_rsa")
        (folder / "notes.txt").symlink_to(folder / "hop")
    elif how == "relative-link-out":
        (folder / "notes.txt").symlink_to(Path("..") / "secret" / "id_rsa")
    elif how == "weights-link-out":
        save_file({"v": torch.zeros(3)}, secret / "other.safetensors")
        (folder / "other.safetensors").symlink_to(secret / "other.safetensors")
    elif how == "backslash-name":
        (folder / "a\\b.txt").write_text("x")
    return folder


@pytest.mark.parametrize("how", ["file-link-out", "dir-link-out", "link-chain-out", "relative-link-out", "weights-link-out", "backslash-name"])
@pytest.mark.parametrize("entry_point", ["publish-folder", "import-hf"])
def test_a_folder_with_a_link_out_or_a_bad_name_is_refused(hub_home, tmp_path, how, entry_point):
    hub.publish({"w": torch.ones(2)}, "acme/existing")
    folder = linked_folder(tmp_path, how)
    before = state(hub_home)
    with pytest.raises(UnsafeFormatError, match="outside|file path"):
        if entry_point == "publish-folder":
            hub.publish(folder, "acme/linked")
        else:
            hub.import_hf(str(folder), "acme/linked")
    assert state(hub_home) == before


def test_links_inside_a_published_folder_are_followed(tmp_path):
    folder = tmp_path / "linked"
    (folder / "real").mkdir(parents=True)
    save_file({"w": torch.arange(3.0)}, folder / "real" / "weights.data")
    (folder / "model.safetensors").symlink_to(Path("real") / "weights.data")
    (folder / "real" / "vocab.txt").write_text("a\n")
    (folder / "vocab.txt").symlink_to(folder / "real" / "vocab.txt")
    version = hub.import_hf(str(folder), "acme/linked")
    assert {f.path for f in version.files} == {"model.safetensors", "real/weights.data", "real/vocab.txt", "vocab.txt"}
    assert torch.equal(hub.load_state_dict("acme/linked")["w"], torch.arange(3.0))


def test_import_from_a_hugging_face_cache_follows_its_snapshot_links(tmp_path, monkeypatch, hub_home):
    """A Hugging Face cache snapshot is links into the repo's blobs/ folder: those are followed,
    a link from the snapshot out of the cached repo is still refused."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    repo = cache / "models--org--tiny"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    snapshot.mkdir(parents=True)
    save_file({"w": torch.arange(4.0)}, repo / "blobs" / "aaaa")
    (repo / "blobs" / "bbbb").write_text("a\nb\n")
    (snapshot / "model.safetensors").symlink_to(Path("..") / ".." / "blobs" / "aaaa")
    (snapshot / "vocab.txt").symlink_to(Path("..") / ".." / "blobs" / "bbbb")
    version = hub.import_hf("org/tiny", "acme/tiny")
    assert {f.path for f in version.files} == {"model.safetensors", "vocab.txt"}
    assert torch.equal(hub.load_state_dict("acme/tiny")["w"], torch.arange(4.0))
    (tmp_path / "secret.txt").write_text("PRIVATE")
    (snapshot / "notes.txt").symlink_to(tmp_path / "secret.txt")
    before = state(hub_home)
    with pytest.raises(UnsafeFormatError, match="outside"):
        hub.import_hf("org/tiny", "acme/tiny2")
    assert state(hub_home) == before


# --- 2. models that ship code ------------------------------------------------------------

transformers = pytest.importorskip("transformers")


@pytest.fixture
def no_prompt(monkeypatch):
    """transformers asks on stdin before running a model's code; any question is a failure, and
    the answer would be yes (as a hurried user might type), so a question would let the code run."""
    asked = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": (asked.append(prompt), "y")[1])
    yield asked
    assert asked == [], asked


def evil_folder(tmp_path: Path, config_update: dict, *, tokenizer_config: dict | None = None, config: bool = True) -> tuple[Path, Path]:
    """A tiny BERT folder shipping Python files that write a marker when imported; returns (folder, marker)."""
    torch.manual_seed(0)
    folder, marker = tmp_path / "evil-model", tmp_path / "MARKER"
    tiny = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16, max_position_embeddings=16)
    transformers.BertModel(tiny).save_pretrained(folder)
    hf_config = json.loads((folder / "config.json").read_text()) | config_update
    (folder / "config.json").write_text(json.dumps(hf_config))
    if not config:
        (folder / "config.json").unlink()
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code from the model folder ran')\n"
    (folder / "modeling_evil.py").write_text(payload + "import torch\nclass EvilModel(torch.nn.Module):\n    pass\n")
    (folder / "configuration_evil.py").write_text(
        payload + "from transformers import PretrainedConfig\nclass EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
    (folder / "tokenization_evil.py").write_text(payload + "from transformers import BertTokenizer\nclass EvilTokenizer(BertTokenizer):\n    pass\n")
    if tokenizer_config is not None:
        (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "petal", "sepal"]) + "\n")
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return folder, marker


AUTO_MAP = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}


def test_custom_code_beside_a_known_model_type_is_ignored(tmp_path, no_prompt):
    folder, marker = evil_folder(tmp_path, {"auto_map": AUTO_MAP})
    version = hub.import_hf(str(folder), "acme/evil")
    assert {"modeling_evil.py", "configuration_evil.py"} <= {f.path for f in version.files}  # stored as data
    model = hub.load("acme/evil", device="cpu")
    assert type(model) is transformers.BertModel
    reference = transformers.BertModel.from_pretrained(folder, trust_remote_code=False)
    assert_same_tensors(model.state_dict(), reference.state_dict())
    hub.download("acme/evil", tmp_path / "copy")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("config_update", "fragment"),
    [
        ({"architectures": ["EvilForImageClassification"], "auto_map": {"AutoModelForImageClassification": "modeling_evil.EvilModel"}}, "never runs code"),
        ({"model_type": "evil", "auto_map": AUTO_MAP}, "never runs code"),
        ({"architectures": ["EvilForImageClassification"], "auto_map": {"AutoModelForImageClassification": "modeling_evil.EvilModel"},
          "trust_remote_code": True}, "never runs code"),
    ],
    ids=["auto-class-only-in-custom-code", "model-type-only-in-custom-code", "config-asks-for-trust"],
)
def test_a_model_that_needs_its_own_code_is_refused_with_a_hub_error(hub_home, tmp_path, no_prompt, config_update, fragment):
    folder, marker = evil_folder(tmp_path, config_update)
    hub.publish({"w": torch.zeros(2)}, "acme/existing")
    before = state(hub_home)
    with pytest.raises(ArchitectureError, match=fragment):
        hub.import_hf(str(folder), "acme/evil")
    assert state(hub_home) == before
    assert not marker.exists()


def test_a_tokenizer_that_needs_its_own_code_is_refused_with_a_hub_error(tmp_path, no_prompt):
    auto_map = {"tokenizer_class": "EvilTokenizer", "auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}
    folder, marker = evil_folder(tmp_path, {}, tokenizer_config=auto_map, config=False)
    hub.import_hf(str(folder), "acme/evil")
    with pytest.raises(UnsafeFormatError, match="acme/evil:1: .*tokenizer.*never runs code"):
        hub.load_tokenizer("acme/evil")
    assert not marker.exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"bert"', "\xff"])
def test_a_config_json_that_is_not_a_json_object_is_refused(hub_home, tmp_path, text):
    folder, _ = evil_folder(tmp_path, {})
    (folder / "config.json").write_bytes(text.encode("latin-1"))
    hub.publish({"w": torch.zeros(2)}, "acme/existing")
    before = state(hub_home)
    with pytest.raises(InvalidSourceError, match="config.json is not a JSON object"):
        hub.import_hf(str(folder), "acme/evil")
    assert state(hub_home) == before


# --- 3. no unsafe loading in the source tree ----------------------------------------------

SOURCE_DIRS = ("hub", "finetune", "webui")
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "marshal", "shelve"}
FORBIDDEN_CALLS = {
    "torch.jit.load": "TorchScript archives hold code",
    "torch.package.PackageImporter": "torch.package archives hold code",
    "yaml.load": "use yaml.safe_load", "yaml.load_all": "use yaml.safe_load_all",
    "yaml.full_load": "use yaml.safe_load", "yaml.unsafe_load": "use yaml.safe_load",
}
# Imports by a computed name. Each one allowed here takes its name from the same file, never from a
# model's files, manifest or config:
DYNAMIC_IMPORTS = {
    ("hub/__init__.py", "_LAZY[name]"): "lazy public names: the module comes from the _LAZY table beside it",
    ("finetune/__init__.py", "_LAZY[name]"): "the same lazy table for finetune",
    ("hub/server/__init__.py", "_LAZY[name]"): "the same lazy table for the server (FastAPI only when asked for)",
}
# Entry points load code named by installed packages (group ``modelhub.architectures``): code the
# user chose to install, never a name read from a model. Only the architecture registry reads them.
ENTRY_POINT_LOADERS = {"hub/architectures.py"}


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_loading(source: str, relative: str) -> list[str]:
    """Every unsafe loading pattern in ``source`` (a file at ``relative``), as ``file:line: what``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {"np": "numpy"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    found.append(f"{relative}:{node.lineno}: imports {alias.name}, which unpickles")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            if node.module.split(".")[0] in PICKLE_MODULES:
                found.append(f"{relative}:{node.lineno}: imports from {node.module}, which unpickles")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        where = f"{relative}:{node.lineno}"
        trust = _keyword(node, "trust_remote_code")
        if trust is not None and not _is_constant(trust, False):
            found.append(f"{where}: trust_remote_code={ast.unparse(trust)} (only a literal False is allowed)")
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("from_pretrained", "from_config"):
            receiver = ast.unparse(node.func.value)
            if ("Auto" in receiver or "transformers" in receiver) and not _is_constant(trust, False):
                found.append(f"{where}: {receiver}.{node.func.attr}() without trust_remote_code=False")
        if name is None:
            continue
        if name == "torch.load" and not _is_constant(_keyword(node, "weights_only"), True):
            found.append(f"{where}: torch.load without weights_only=True")
        elif name == "numpy.load" and not _is_constant(_keyword(node, "allow_pickle"), False):
            found.append(f"{where}: numpy.load without allow_pickle=False")
        elif name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
            found.append(f"{where}: {name}() runs code from a string")
        elif name in ("importlib.import_module", "import_module", "importlib.__import__"):
            argument = node.args[0] if node.args else _keyword(node, "name")
            if not isinstance(argument, ast.Constant) and (relative, ast.unparse(argument)) not in DYNAMIC_IMPORTS:
                found.append(f"{where}: import_module({ast.unparse(argument)}) imports a computed name")
        elif name.endswith("entry_points") and name.startswith("importlib") and relative not in ENTRY_POINT_LOADERS:
            found.append(f"{where}: loads entry points outside the architecture registry")
        elif name in FORBIDDEN_CALLS:
            found.append(f"{where}: {name}: {FORBIDDEN_CALLS[name]}")
    return found


def source_files() -> list[Path]:
    return sorted(path for folder in SOURCE_DIRS for path in (ROOT / folder).rglob("*.py"))


def test_no_unsafe_loading_anywhere_in_the_source_tree():
    files = source_files()
    assert len(files) > 30 and any(p.name == "loader.py" for p in files)
    found = [problem for path in files for problem in unsafe_loading(path.read_text(), path.relative_to(ROOT).as_posix())]
    assert found == []


def test_the_allowed_dynamic_imports_still_exist_and_are_the_only_ones():
    """The allow-lists name real calls (so they can't outlive them and hide a new one)."""
    seen, entry_point_files = set(), set()
    for path in source_files():
        relative, tree = path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                text = ast.unparse(node.func)
                if text.endswith("import_module") and node.args and not isinstance(node.args[0], ast.Constant):
                    seen.add((relative, ast.unparse(node.args[0])))
                if text == "entry_points":
                    entry_point_files.add(relative)
    assert seen == set(DYNAMIC_IMPORTS)
    assert entry_point_files == ENTRY_POINT_LOADERS


UNSAFE_SNIPPETS = [
    "import torch\ntorch.load(path)",
    "import torch\ntorch.load(path, weights_only=False)",
    "import torch\ntorch.load(path, weights_only=flag)",
    "from torch import load\nload(path)",
    "import torch as T\nT.load(path)",
    "import torch\ntorch.jit.load(path)",
    "import pickle",
    "from pickle import loads",
    "import dill",
    "import joblib\njoblib.load(path)",
    "import numpy as np\nnp.load(path)",
    "import numpy\nnumpy.load(path, allow_pickle=True)",
    "eval(text)",
    "exec(text)",
    "compile(text, 'f', 'exec')",
    "__import__(name)",
    "import importlib\nimportlib.import_module(config['module'])",
    "from importlib import import_module\nimport_module(name)",
    "from importlib.metadata import entry_points\nentry_points(group='x')",
    "load_model(path, trust_remote_code=True)",
    "load_model(path, trust_remote_code=trust)",
    "import transformers\ntransformers.AutoModel.from_pretrained(path)",
    "from transformers import AutoTokenizer\nAutoTokenizer.from_pretrained(path, local_files_only=True)",
    "import transformers\ngetattr(transformers, auto_class).from_config(config)",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.unsafe_load(text)",
]
SAFE_SNIPPETS = [
    "import torch\ntorch.load(path, map_location='cpu', weights_only=True)",
    "import numpy as np\nnp.load(path, allow_pickle=False)",
    "model.eval()",
    "import re\nre.compile('x')",
    "import importlib\nimportlib.import_module('json')",
    "from transformers import AutoTokenizer\nAutoTokenizer.from_pretrained(path, trust_remote_code=False)",
    "import yaml\nyaml.safe_load(text)",
    "from safetensors.torch import load_file\nload_file(path)",
    "from alembic.script import ScriptDirectory\nScriptDirectory.from_config(config)",
]


@pytest.mark.parametrize("snippet", UNSAFE_SNIPPETS)
def test_the_source_check_catches(snippet):
    assert len(unsafe_loading(snippet, "somewhere.py")) >= 1


@pytest.mark.parametrize("snippet", SAFE_SNIPPETS)
def test_the_source_check_allows(snippet):
    assert unsafe_loading(snippet, "somewhere.py") == []


# --- 4. the web UI listens on this machine only unless asked ------------------------------


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (Linux: /proc/net/tcp and tcp6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]  # each 32-bit word is little-endian
                found.add(str(__import__("ipaddress").ip_address(b"".join(words))) if width == 32 else ".".join(map(str, words[0])))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_the_documented_streamlit_command_listens_on_loopback_only(tmp_path):
    """``streamlit run webui/app.py`` (the command webui/__init__.py names) started in the project
    root binds 127.0.0.1, not every interface: the UI publishes and deletes without asking who you are."""
    import socket
    import urllib.request

    import webui

    assert "streamlit run webui/app.py --server.address 127.0.0.1" in " ".join(webui.__doc__.split())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "webui/app.py", "--server.port", str(port),
                               "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not listening_addresses(port):
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.poll() is not None else "not serving"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as response:
            assert response.status == 200
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        server.terminate()
        server.wait(30)
