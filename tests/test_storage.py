"""The storage interface (:class:`hub.storage.BlobStore`), run on every backend through the ``blob_store``
fixture: what any backend must do, without looking at how it keeps the bytes."""

import hashlib
import threading

import pytest

from hub import IntegrityError
from hub.storage import BlobStore

pytestmark = pytest.mark.one_backend  # nothing here depends on the registry backend


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_blob_is_named_by_its_sha256_and_read_whole_by_range_or_as_a_stream(blob_store: BlobStore):
    data = bytes(range(256)) * 10
    digest, size = blob_store.write([data[:1000], memoryview(data[1000:])])
    assert (digest, size) == (sha(data), len(data))
    assert blob_store.exists(digest) and blob_store.size(digest) == len(data)
    assert blob_store.read_bytes(digest) == data
    assert blob_store.read_range(digest, 10, 5) == data[10:15]
    assert blob_store.read_range(digest, len(data) - 3, 100) == data[-3:]  # fewer at the end
    with blob_store.open(digest) as stream:
        assert stream.read() == data
    assert list(blob_store.digests()) == [digest]


def test_a_missing_blob_is_reported_not_invented(blob_store: BlobStore):
    missing = sha(b"never stored")
    assert not blob_store.exists(missing) and blob_store.size(missing) is None
    assert "missing" in blob_store.problem(missing, None, check_hash=False)
    with pytest.raises(IntegrityError, match="missing"):
        blob_store.read_bytes(missing)
    with pytest.raises(IntegrityError, match="missing"):
        blob_store.read_range(missing, 0, 1)


def test_a_stream_with_a_wrong_sha256_is_refused_and_leaves_nothing(blob_store: BlobStore):
    with pytest.raises(IntegrityError, match="expected"):
        blob_store.write(iter([b"abc", b"def"]), expected_sha256=sha(b"something else"))
    assert list(blob_store.digests()) == [] and blob_store.leftovers("blobs") == []
    digest, _ = blob_store.write([b"abc", b"def"], expected_sha256=sha(b"abcdef"))
    assert digest == sha(b"abcdef")


def test_the_same_bytes_are_stored_once_and_a_new_one_is_recorded(blob_store: BlobStore):
    with blob_store.recording_new() as created:
        first, _ = blob_store.put_bytes(b"one")
        again, _ = blob_store.put_bytes(b"one")
    assert first == again and created == {first}
    with blob_store.recording_new() as created:
        blob_store.put_bytes(b"one")
    assert created == set()  # it was there already


def test_delete_removes_a_blob_and_forgets_it(blob_store: BlobStore):
    keep, _ = blob_store.put_bytes(b"keep")
    drop, _ = blob_store.put_bytes(b"drop")
    blob_store.delete(drop)
    blob_store.delete(drop)  # nothing when gone
    assert sorted(blob_store.digests()) == [keep] and not blob_store.exists(drop)


def test_problem_and_claim_check_size_and_hash(blob_store: BlobStore):
    digest, size = blob_store.put_bytes(b"0123456789")
    assert blob_store.problem(digest, size, check_hash=True) is None
    assert "expected 11" in blob_store.problem(digest, 11, check_hash=False)
    assert blob_store.claim(digest, size) and not blob_store.claim(digest, 11)
    assert not blob_store.claim(sha(b"absent"), 3)


def test_copy_to_writes_a_verified_local_file(blob_store: BlobStore, tmp_path):
    digest, size = blob_store.put_bytes(b"weights")
    target = tmp_path / "out" / "w.bin"
    target.parent.mkdir()
    blob_store.copy_to(digest, target, size=size)
    assert target.read_bytes() == b"weights"
    with pytest.raises(IntegrityError, match="expected 99"):
        blob_store.copy_to(digest, tmp_path / "out" / "other", size=99)
    assert sorted(p.name for p in target.parent.iterdir()) == ["w.bin"]  # nothing half-copied
    local = blob_store.local_path(digest)
    assert local is None or local.read_bytes() == b"weights"


def test_write_local_refuses_bytes_that_do_not_hash_as_expected(blob_store: BlobStore, tmp_path):
    with pytest.raises(IntegrityError, match="corrupted"):
        blob_store.write_local(tmp_path / "f", [b"abc"], expected_sha256=sha(b"abd"))
    assert list(tmp_path.iterdir()) == []
    assert blob_store.write_local(tmp_path / "f", [b"abc"]) == (sha(b"abc"), 3) and (tmp_path / "f").read_bytes() == b"abc"


def test_keys_are_written_read_replaced_renamed_and_deleted(blob_store: BlobStore):
    assert blob_store.read_text("refs/m/versions/1") is None
    assert blob_store.write_text("refs/m/versions/1", "abc")
    assert blob_store.read_text("refs/m/versions/1") == "abc"
    assert blob_store.write_text("refs/m/versions/1", "def")  # replace
    assert blob_store.read_text("refs/m/versions/1") == "def"
    assert blob_store.rename("refs/m/versions/1", "refs/m/versions/1.deleted")
    assert blob_store.read_text("refs/m/versions/1") is None and blob_store.read_text("refs/m/versions/1.deleted") == "def"
    assert not blob_store.rename("refs/m/versions/1", "refs/m/versions/2")  # not there
    blob_store.delete_key("refs/m/versions/1.deleted")
    blob_store.delete_key("refs/m/versions/1.deleted")  # nothing when gone
    assert blob_store.read_text("refs/m/versions/1.deleted") is None


def test_an_exclusive_write_refuses_an_existing_key(blob_store: BlobStore):
    assert blob_store.write_text("refs/m/history/prod/1", "first", exclusive=True)
    assert not blob_store.write_text("refs/m/history/prod/1", "second", exclusive=True)
    assert blob_store.read_text("refs/m/history/prod/1") == "first"


def test_exclusive_writers_racing_for_one_key_leave_exactly_one_winner(blob_store: BlobStore):
    results: list[bool] = []
    threads = [threading.Thread(target=lambda i=i: results.append(blob_store.write_text("refs/m/versions/7.pending", str(i), exclusive=True)))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1 and blob_store.read_text("refs/m/versions/7.pending") in {str(i) for i in range(8)}


def test_list_gives_one_level_or_every_key_below_a_prefix(blob_store: BlobStore):
    for key in ("refs/a/versions/1", "refs/a/versions/2", "refs/a/aliases/prod", "refs/b/versions/1"):
        blob_store.write_text(key, "x")
    assert blob_store.list("refs") == ["a", "b"]
    assert blob_store.list("refs/a") == ["aliases", "versions"]
    assert blob_store.list("refs/a/versions") == ["1", "2"]
    assert blob_store.list("refs/a", recursive=True) == ["aliases/prod", "versions/1", "versions/2"]
    assert blob_store.list("refs/none") == [] and blob_store.list("refs/none", recursive=True) == []


def test_keys_have_ages_sizes_and_locations(blob_store: BlobStore):
    import time

    blob_store.write_text("refs/a/aliases/prod", "12")
    now = time.time()
    assert 0 <= blob_store.age_seconds("refs/a/aliases/prod", now) < 60
    assert blob_store.age_seconds("refs/a/aliases/gone", now) == 0.0
    assert blob_store.key_size("refs/a/aliases/prod") == 2 and blob_store.key_size("refs/a/aliases/gone") is None
    digest, _ = blob_store.put_bytes(b"blob")
    assert blob_store.key_size(f"blobs/{digest}") == 4  # blob keys are keys too
    assert digest in blob_store.location(f"blobs/{digest}")
    assert blob_store.leftovers("refs") == []


def test_in_use_is_shared_and_collecting_waits_for_it(blob_store: BlobStore):
    if not blob_store.locks_work:
        pytest.skip("no cross-process locks on this system")
    with blob_store.in_use(), blob_store.in_use():  # shared, and it nests
        assert blob_store.held_here
        done = threading.Event()

        def collect() -> None:
            with blob_store.collecting():
                done.set()

        collector = threading.Thread(target=collect)
        collector.start()
        assert not done.wait(0.3)  # gc waits while a writer holds the store
    collector.join(10)
    assert done.is_set() and not blob_store.held_here


def test_collecting_gives_up_after_its_timeout(blob_store: BlobStore):
    if not blob_store.locks_work:
        pytest.skip("no cross-process locks on this system")
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        with blob_store.collecting():
            started.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    started.wait(10)
    try:
        with pytest.raises(TimeoutError, match="still held"), blob_store.collecting(timeout=0.2):
            pass
    finally:
        release.set()
        holder.join(10)
