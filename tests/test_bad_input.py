"""The cross-cutting bad-input catalogue (issue "Reliability and security").

One realistic hub (two published models, an alias, a deleted version, a finished
and a queued fine-tune job, an earlier upload), then one table of bad inputs
across every way in: references, ``hub`` and ``finetune`` command lines, data
files and configs for fine-tuning, and web UI uploads (zips included). Each
case must raise one specific error class with a message that says what was
wrong, and leave the registry and the store byte for byte as they were.

The per-module catalogues stay where they are (tests/test_api.py, test_cli.py,
test_data.py, test_finetune.py); the cases here are the ones they don't hold,
and each runs against a hub with something in it to damage.
"""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

import finetune
import hub
from conftest import ROOT, Upload, state
from hub.errors import (
    AliasNotFoundError,
    ColumnNotFoundError,
    ConfigError,
    DeviceError,
    EmptyDataError,
    InvalidArgumentError,
    InvalidReferenceError,
    InvalidValueError,
    JobNotFoundError,
    JobStateError,
    LabelError,
    ModelNotFoundError,
    ShapeMismatchError,
    TooFewRowsError,
    UnreadableDataError,
    UnsafeFormatError,
    VersionNotFoundError,
)

pytestmark = pytest.mark.one_backend  # bad input is refused before anything is written, whatever the backend; test_access and test_server check refusals on both

sklearn = pytest.importorskip("sklearn.datasets")
DIGITS = sklearn.load_digits()
PIXELS = [f"pixel_{i}" for i in range(64)]
HEADER = [*PIXELS, "label"]
BASE = "acme/digits-mlp@production"


# --- the realistic hub ----------------------------------------------------------------


def digit_rows(count: int = 200, start: int = 0) -> list[list[Any]]:
    """Real handwritten digits: 64 pixel values (0..16) and the label, as CSV cells."""
    return [[int(v) for v in x] + [int(y)] for x, y in zip(DIGITS.data[start : start + count], DIGITS.target[start : start + count])]


def write_csv(path: Path, rows: list[list[Any]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@dataclass
class Ctx:
    """What the cases work with: folders outside HUB_HOME, the good data, the jobs' ids."""

    tmp: Path
    data: Path
    job: str
    queued: str
    monkeypatch: pytest.MonkeyPatch

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def spoiled(self, name: str, change: Callable[[list[list[Any]]], Any], header: list[str] = HEADER) -> Path:
        """The good digits with ``change`` applied to their rows (in place)."""
        rows = digit_rows()
        change(rows)
        return write_csv(self.tmp / name, rows, header)


@pytest.fixture
def ctx(hub_home, tmp_path, monkeypatch) -> Ctx:
    """The hub every case runs against:

    - ``acme/digits-mlp`` 1 (``production``), 2 (``staging``), 3 (deleted);
    - ``acme/digits-cnn`` 1;
    - ``me/digits-ft`` 1, published by a finished fine-tune job of ``acme/digits-mlp@production``,
      and a second job of it still queued;
    - one earlier upload under ``uploads/``.
    """
    for seed, aliases in ((0, ["production"]), (1, ["staging"]), (2, [])):
        torch.manual_seed(seed)
        hub.publish(hub.create("mlp", in_features=64, hidden=[16], out_features=10), "acme/digits-mlp", aliases=aliases,
                    task="classification", tags=["digits"], metrics={"accuracy": 0.1 * (seed + 1)})
    hub.delete_version("acme/digits-mlp:3")
    torch.manual_seed(3)
    hub.publish(hub.create("convnet", in_channels=1, image_size=8, num_classes=10), "acme/digits-cnn")
    folder = tmp_path / "inputs"
    folder.mkdir()
    data = write_csv(folder / "digits.csv", digit_rows())
    done = finetune.run(BASE, data, output="me/digits-ft", config={"epochs": 1, "batch_size": 32})
    queued = finetune.submit(BASE, data, output="me/digits-ft", config={"epochs": 1, "batch_size": 32})
    from webui.common import store_upload

    store_upload(Upload("digits.csv", data.read_bytes()), allowed=(".csv",))
    job = next(j for j in finetune.list_jobs() if j.result == done.ref)
    assert hub.verify().ok and done.parent == "acme/digits-mlp:1"
    return Ctx(folder, data, job.id, queued.id, monkeypatch)


# --- command lines ----------------------------------------------------------------------


@dataclass(frozen=True)
class Exit:
    """A command line's expected exit status: 1 for an error, 2 for a usage mistake."""

    code: int


def cli(program: str, *args: str, files: dict[str, bytes | str] | None = None) -> Callable[[Ctx], subprocess.CompletedProcess]:
    """Run ``python -m PROGRAM ARGS``; ``{data}``, ``{tmp}``, ``{job}`` in ARGS are filled in from the case's Ctx.
    ``files``: written into the case's folder first (outside HUB_HOME), by name."""

    def run(c: Ctx) -> subprocess.CompletedProcess:
        for name, content in (files or {}).items():
            c.file(name, content)
        filled = [a.format(data=c.data, tmp=c.tmp, job=c.job, queued=c.queued) for a in args]
        return subprocess.run([sys.executable, "-m", program, *filled], capture_output=True, text=True, timeout=120, cwd=ROOT)

    run.program = program  # type: ignore[attr-defined]
    return run


# --- the cases that need a file ------------------------------------------------------------


def submit(data: Callable[[Ctx], Path], **options: Any) -> Callable[[Ctx], Any]:
    """``finetune.submit`` of the realistic base on the data ``data(ctx)`` writes."""
    options = {"output": "me/digits-ft", "config": {"epochs": 1, "batch_size": 32}, **options}
    return lambda c: finetune.submit(BASE, data(c), **options)


def with_config(name: str, text: str | bytes) -> Callable[[Ctx], Any]:
    """``finetune.submit`` with a config file holding ``text`` (``{tmp}`` in it: the case's folder)."""

    def call(c: Ctx) -> Any:
        content = text.replace("{tmp}", str(c.tmp)) if isinstance(text, str) else text
        return finetune.submit(BASE, c.data, output="me/digits-ft", config=c.file(name, content))

    return call


def set_row(row: int, column: int, value: Any) -> Callable[[list[list[Any]]], None]:
    """Spoil one cell (``row`` counts from 1, as messages do)."""
    return lambda rows: rows[row - 1].__setitem__(column, value)


def npz_with_objects(c: Ctx) -> Path:
    path = c.tmp / "digits.npz"
    np.savez(path, x=DIGITS.data[:64], y=np.array([{"label": int(y)} for y in DIGITS.target[:64]], dtype=object))
    return path


def store(upload: Upload, allowed: tuple[str, ...]) -> Path:
    from webui.common import store_upload

    return store_upload(upload, allowed=allowed)


class Staged:
    """A case in two steps: ``arrange(ctx)`` runs before the snapshot (a step that succeeds and may
    write), then ``act(ctx, arranged)`` is the bad input that must change nothing."""

    def __init__(self, arrange: Callable[[Ctx], Any], act: Callable[[Ctx, Any], Any]) -> None:
        self.arrange, self.act = arrange, act


def upload_zip(entries: Callable[[zipfile.ZipFile], None], *, patch: Callable[[bytearray], None] | None = None,
               limit_mb: int | None = None, max_files: int | None = None) -> Staged:
    """Upload a zip as the fine-tune page does: ``store_upload`` keeps it (that succeeds), then
    ``extract_zip`` must refuse it and write nothing. ``entries`` fills the zip; ``patch`` edits its bytes."""

    def arrange(c: Ctx) -> Path:
        import io

        import webui.common

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            entries(archive)
        data = bytearray(buffer.getvalue())
        if patch is not None:
            patch(data)
        if limit_mb is not None:
            c.monkeypatch.setattr(webui.common, "MAX_UPLOAD_MB", limit_mb)
        if max_files is not None:
            c.monkeypatch.setattr(webui.common, "MAX_ZIP_FILES", max_files)
        return store(Upload("images.zip", bytes(data)), (".csv", ".zip"))

    def act(c: Ctx, stored: Path) -> Path:
        from webui.common import extract_zip

        return extract_zip(stored)

    return Staged(arrange, act)


def entry(name: str, data: bytes = b"x", *, mode: int | None = None) -> Callable[[zipfile.ZipFile], None]:
    """A harmless image entry, then ``name`` (with Unix ``mode`` bits, e.g. a symlink's 0o120777)."""

    def add(archive: zipfile.ZipFile) -> None:
        archive.writestr("images/0/0001.png", b"\x89PNG not really")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        archive.writestr(info, data)

    return add


def zeros(name: str, size: int) -> Callable[[zipfile.ZipFile], None]:
    """One entry of ``size`` zero bytes, written in 1 MB pieces (deflates about 1000:1)."""

    def add(archive: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as out:
            for start in range(0, size, 1 << 20):
                out.write(bytes(min(1 << 20, size - start)))

    return add


def understate_sizes(data: bytearray) -> None:
    """Make every entry claim to unpack to 100 bytes (local headers and central directory)."""
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        while at != -1:
            struct.pack_into("<I", data, at + offset, 100)
            at = data.find(signature, at + 4)


def encrypt_flags(data: bytearray) -> None:
    """Mark every entry as encrypted (general purpose bit 0), as a password-protected zip is."""
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at != -1:
            data[at + offset] |= 1
            at = data.find(signature, at + 4)


def a_key_per_row(rows: int) -> str:
    """JSONL whose rows each name a feature of their own: a table of rows x rows cells from a small file."""
    return "".join(f'{{"feature_{i}": 1, "label": {i % 2}}}\n' for i in range(rows))


WEIGHTS = safetensors.torch.save({"w": torch.zeros(2)})
NO_TENSORS = safetensors.torch.save({})
DEEP_JSON = "[" * 100_000 + "]" * 100_000
FOUR_HUNDRED_DIGITS = "1" * 400


def many_files(count: int) -> Callable[[zipfile.ZipFile], None]:
    def add(archive: zipfile.ZipFile) -> None:
        for i in range(count):
            archive.writestr(f"images/0/{i:05d}.png", b"")

    return add


# --- the catalogue ---------------------------------------------------------------------------

S = pytest.param

CASES = [
    # references, through the Python API
    S(lambda c: hub.load("Acme/Digits-MLP"), InvalidReferenceError, "invalid character 'A'", id="ref-uppercase"),
    S(lambda c: hub.load("acme/digits\u2010mlp"), InvalidReferenceError, "U+2010", id="ref-unicode-hyphen"),
    S(lambda c: hub.info("acme/digits-mlp:1@production"), InvalidReferenceError, "both a version and an alias", id="ref-version-and-alias"),
    S(lambda c: hub.info("acme/digits-mlp:v2"), InvalidReferenceError, "'v2' is not a positive integer", id="ref-version-not-a-number"),
    S(lambda c: hub.info("acme/digits-mlp:0"), InvalidReferenceError, "'0' is not a positive integer", id="ref-version-zero"),
    S(lambda c: hub.info("acme/digits-mlp:"), InvalidReferenceError, "'' is not a positive integer", id="ref-version-empty"),
    S(lambda c: hub.info("acme/team/digits"), InvalidReferenceError, "has 3 parts", id="ref-three-parts"),
    S(lambda c: hub.info("acme/.hidden"), InvalidReferenceError, "must start with a lowercase letter or digit", id="ref-dot-part"),
    S(lambda c: hub.info("acme/" + "x" * 65), InvalidReferenceError, "at most 64 allowed", id="ref-too-long"),
    S(lambda c: hub.info("acme/"), InvalidReferenceError, "has an empty part", id="ref-empty-part"),
    S(lambda c: hub.info(""), InvalidReferenceError, "the reference is empty", id="ref-empty"),
    S(lambda c: hub.info(None), InvalidReferenceError, "must be a string, not NoneType", id="ref-none"),
    S(lambda c: hub.load("acme/digits-mlp@Prod"), InvalidReferenceError, "alias 'Prod' is invalid", id="ref-alias-uppercase"),
    S(lambda c: hub.load("acme/nope"), ModelNotFoundError, "'acme/nope' is not in the registry", id="ref-unknown-model"),
    S(lambda c: hub.load("acme/digits-mlp:99"), VersionNotFoundError, "no version 99; its live versions are [1, 2]", id="ref-unknown-version"),
    S(lambda c: hub.load("acme/digits-mlp:3"), VersionNotFoundError, "no version 3", id="ref-deleted-version"),
    S(lambda c: hub.load("acme/digits-mlp@canary"), AliasNotFoundError, "its aliases are ['production', 'staging']", id="ref-unknown-alias"),
    S(lambda c: hub.load_state_dict("me/digits-ft@production"), AliasNotFoundError, "has no alias 'production'", id="ref-alias-of-other-model"),
    S(lambda c: hub.load("acme/digits-mlp", device="tpu"), DeviceError, "tpu", id="load-unknown-device"),
    S(lambda c: hub.set_alias("acme/digits-mlp:1", "production", 1), InvalidReferenceError, "invalid character ':'", id="alias-ref-as-name"),
    S(lambda c: hub.set_alias("acme/digits-mlp", "production", "two"), InvalidReferenceError, "'two' is not a positive integer", id="alias-version-word"),
    S(lambda c: hub.set_alias("acme/digits-mlp", "production", True), InvalidReferenceError, "True is not a positive integer", id="alias-version-bool"),
    S(lambda c: hub.set_alias("acme/digits-mlp", "production", 3), VersionNotFoundError, "version 3", id="alias-to-deleted-version"),
    S(lambda c: hub.set_alias("acme/digits-mlp", "2fast", 1), InvalidReferenceError, "alias '2fast' is invalid", id="alias-starts-with-digit"),
    S(lambda c: hub.delete_alias("acme/digits-mlp", "latest"), InvalidReferenceError, "'latest' is reserved", id="untag-latest"),
    S(lambda c: hub.delete_version("acme/digits-mlp@production"), InvalidArgumentError, "explicit version like 'acme/digits-mlp:3'", id="delete-by-alias"),
    S(lambda c: hub.delete_version("acme/digits-mlp:3"), VersionNotFoundError, "no version 3", id="delete-twice"),
    S(lambda c: hub.delete_version("acme/nope:1"), ModelNotFoundError, "'acme/nope' is not in the registry", id="delete-unknown-model"),
    S(lambda c: hub.alias_history("acme/digits-mlp", "Production"), InvalidReferenceError, "alias 'Production' is invalid", id="history-bad-alias"),
    S(lambda c: hub.list_versions("acme/digits-mlp:1"), InvalidReferenceError, "invalid character ':'", id="versions-of-a-ref"),
    # the hub command line: one line on stderr, no traceback, exit 1 (error) or 2 (usage)
    S(cli("hub", "info", "acme/digits-mlp:1@production"), Exit(1), "both a version and an alias", id="hub-info-version-and-alias"),
    S(cli("hub", "load", "acme/digits-mlp"), Exit(2), "invalid choice: 'load'", id="hub-unknown-command"),
    S(cli("hub", "info", "acme/digits-mlp@canary"), Exit(1), "has no alias 'canary'", id="hub-info-unknown-alias"),
    S(cli("hub", "tag", "acme/digits-mlp:2", "Prod"), Exit(1), "alias 'Prod' is invalid", id="hub-tag-bad-alias"),
    S(cli("hub", "tag", "acme/digits-mlp:3", "production"), Exit(1), "no version 3", id="hub-tag-deleted-version"),
    S(cli("hub", "delete", "acme/digits-mlp@production"), Exit(1), "explicit version", id="hub-delete-by-alias"),
    S(cli("hub", "history", "acme/digits-mlp", "latest"), Exit(1), "'latest' is reserved", id="hub-history-latest"),
    S(cli("hub", "list", "--limit", "ten"), Exit(2), "invalid int value: 'ten'", id="hub-list-limit-word"),
    S(cli("hub", "gc", "--min-age", "soon"), Exit(2), "invalid float value: 'soon'", id="hub-gc-min-age-word"),
    S(cli("hub", "publish", "{tmp}/digits.csv", "acme/x"), Exit(1), "digits.csv", id="hub-publish-a-csv"),
    S(cli("hub", "publish", "{tmp}/digits.csv", "acme/x", "--config", "{{bad"), Exit(1), "--config must be JSON", id="hub-publish-bad-config-json"),
    S(cli("hub", "publish", "{tmp}/digits.csv", "acme/x", "--metadata", "@{tmp}/missing.json"), Exit(1), "--metadata must be JSON", id="hub-publish-missing-metadata-file"),
    S(cli("hub", "verify", "acme/digits-mlp:3"), Exit(1), "no version 3", id="hub-verify-deleted-version"),
    S(cli("hub", "publish", "{tmp}/w.safetensors", "acme/x", "--metrics", f'{{{{"accuracy": {FOUR_HUNDRED_DIGITS}}}}}', files={"w.safetensors": WEIGHTS}),
      Exit(1), "metric 'accuracy' is a whole number of about 400 digits, too large for a float", id="hub-publish-metric-of-400-digits"),
    S(cli("hub", "publish", "{tmp}/w.safetensors", "acme/x", "--metrics", "@{tmp}/deep.json", files={"w.safetensors": WEIGHTS, "deep.json": DEEP_JSON}),
      Exit(1), "--metrics must be JSON (or @file.json): it nests arrays or objects more than 100 deep", id="hub-publish-metrics-nested-100000-deep"),
    S(cli("hub", "publish", "{tmp}/w.safetensors", "acme/x", "--metadata", "@{tmp}/deep.json", files={"w.safetensors": WEIGHTS, "deep.json": DEEP_JSON}),
      Exit(1), "nests arrays or objects more than 100 deep", id="hub-publish-metadata-nested-100000-deep"),
    S(cli("hub", "publish", "{tmp}/empty.safetensors", "acme/x", files={"empty.safetensors": NO_TENSORS}), Exit(1),
      "empty.safetensors holds no tensors; there is nothing to publish", id="hub-publish-no-tensors"),
    S(lambda c: hub.publish(c.file("w.safetensors", WEIGHTS), "acme/x", metrics={"accuracy": 10**400}), InvalidArgumentError,
      "too large for a float", id="publish-metric-beyond-float"),
    S(lambda c: hub.publish(c.file("w.safetensors", WEIGHTS), "acme/x", metadata={"a": json.loads("[" * 500 + "]" * 500)}),
      InvalidArgumentError, "metadata nests lists and dicts more than 100 deep", id="publish-metadata-500-deep"),
    # the finetune command line
    S(lambda c: finetune.get_job("job-that-is-not-there"), JobNotFoundError, "`finetune list` shows the jobs", id="job-unknown"),
    S(lambda c: finetune.cancel(c.job), JobStateError, "only queued or running jobs can be cancelled", id="job-cancel-finished"),
    S(lambda c: finetune.list_jobs("done"), InvalidArgumentError, "status 'done' is not a job state", id="job-list-bad-status"),
    S(cli("finetune", "status", "job-that-is-not-there"), Exit(1), "no fine-tuning job 'job-that-is-not-there'", id="finetune-status-unknown-job"),
    S(cli("finetune", "cancel", "{job}"), Exit(1), "has already succeeded", id="finetune-cancel-finished-job"),
    S(cli("finetune", "submit", BASE, "{data}", "-o", "me/x", "--epochs", "two"), Exit(2), "invalid int value: 'two'", id="finetune-epochs-word"),
    S(cli("finetune", "submit", BASE, "{data}", "-o", "me/x", "--task", "translation"), Exit(2), "invalid choice: 'translation'", id="finetune-unknown-task"),
    S(cli("finetune", "submit", BASE, "{data}"), Exit(2), "required: --output", id="finetune-no-output"),
    S(cli("finetune", "submit", BASE, "{tmp}/missing.csv", "-o", "me/x"), Exit(1), "does not exist", id="finetune-missing-data"),
    S(cli("finetune", "submit", BASE, "{data}", "-o", "me/x", "--validation-fraction", "1.5"), Exit(1), "--validation-fraction must be between 0 and 1", id="finetune-fraction-out-of-range"),
    S(cli("finetune", "submit", BASE, "{data}", "-o", "me/x", "--config", "{tmp}/missing.yaml"), Exit(1), "can't read fine-tune config", id="finetune-missing-config"),
    S(cli("finetune", "submit", "acme/nope", "{data}", "-o", "me/x"), Exit(1), "'acme/nope' is not in the registry", id="finetune-unknown-base"),
    S(cli("finetune", "list", "--status", "done"), Exit(2), "invalid choice: 'done'", id="finetune-list-bad-status"),
    # data files for fine-tuning: the real digits, spoiled
    S(submit(lambda c: c.spoiled("text.csv", set_row(17, 3, "abc"))), InvalidValueError, "row 17, column 'pixel_3'", id="data-text-in-a-pixel"),
    S(submit(lambda c: c.spoiled("inf.csv", set_row(40, 10, "inf"))), InvalidValueError, "infinite", id="data-infinite-pixel"),
    S(submit(lambda c: c.spoiled("hole.csv", set_row(100, 63, ""))), InvalidValueError, "row 100, column 'pixel_63'", id="data-empty-cell"),
    S(submit(lambda c: c.spoiled("short.csv", lambda rows: rows[5].__delitem__(slice(-2, None)))), UnreadableDataError,
      "63 values but the header has 65", id="data-short-row"),
    S(lambda c: finetune.submit("acme/digits-mlp:2", c.spoiled("twelve.csv", set_row(8, 64, 12)), output="me/x", task="continue"),
      LabelError, "output head has 10 classes (0..9)", id="data-label-beyond-the-kept-head"),
    S(lambda c: finetune.submit("me/digits-ft", c.spoiled("seven.csv", set_row(9, 64, "seven")), output="me/digits-ft", task="continue"),
      LabelError, "'seven' is not one of the 10 known labels", id="data-label-the-base-does-not-know"),
    S(submit(lambda c: c.spoiled("negative.csv", set_row(8, 64, -1))), LabelError, "'-1' is not a class index", id="data-negative-label"),
    S(submit(lambda c: c.spoiled("one-class.csv", lambda rows: [r.__setitem__(64, 3) for r in rows])), LabelError,
      "at least two classes", id="data-one-class"),
    S(submit(lambda c: c.spoiled("wide.csv", lambda rows: [r.insert(0, 0) for r in rows], ["extra", *HEADER])), ShapeMismatchError,
      "65", id="data-extra-column"),
    S(submit(lambda c: c.spoiled("renamed.csv", lambda rows: None, [*PIXELS, "digit"])), ColumnNotFoundError, "label_column", id="data-no-label-column"),
    S(submit(lambda c: c.spoiled("few.csv", lambda rows: rows.__delitem__(slice(20, None)))), TooFewRowsError, "batch of 32", id="data-fewer-rows-than-a-batch"),
    S(submit(lambda c: write_csv(c.tmp / "header.csv", [])), EmptyDataError, "no data rows", id="data-header-only"),
    S(submit(lambda c: c.file("empty.csv", b"")), EmptyDataError, "is empty", id="data-empty-file"),
    S(submit(lambda c: c.file("latin1.csv", c.data.read_bytes().replace(b"pixel_0", b"pix\xe9l_0"))), UnreadableDataError, "UTF-8", id="data-not-utf8"),
    S(submit(lambda c: c.file("digits.pkl", b"\x80\x04K\x01.")), UnreadableDataError, "can't read .pkl", id="data-pickle-suffix"),
    S(submit(npz_with_objects), UnreadableDataError, "Python objects", id="data-npz-object-array"),
    S(submit(lambda c: c.tmp / "missing.csv"), UnreadableDataError, "does not exist", id="data-missing-file"),
    S(submit(lambda c: c.spoiled("long-name.csv", lambda rows: None, ["p" * 131_073, *HEADER[1:]])), UnreadableDataError,
      "column 1 is a name of 131,073 characters, more than the 1,024", id="data-csv-header-cell-over-131072-characters"),
    S(submit(lambda c: c.file("wide.csv", b"c," * 10_000_000 + b"label\n" + b"0," * 10_000_000 + b"1\n")), UnreadableDataError,
      "more than the 100,000 a table may have", id="data-csv-ten-million-columns"),
    S(submit(lambda c: c.file("unclosed.csv", c.data.read_bytes() + b'1,"' + b"2," * (8 * 1024 * 1024 + 1) + b"\n")),
      UnreadableDataError, "longer than 16,777,216 characters", id="data-csv-unclosed-quote-over-the-field-limit"),
    S(submit(lambda c: c.file("deep.jsonl", '{"pixel_0": ' + DEEP_JSON + ', "label": 1}\n')), UnreadableDataError,
      "deep.jsonl, row 1: nests arrays or objects more than 100 deep", id="data-jsonl-nested-100000-deep"),
    S(submit(lambda c: c.file("sparse.jsonl", a_key_per_row(4_000))), UnreadableDataError, "give every row the same keys",
      id="data-jsonl-a-key-per-row"),
    S(submit(lambda c: c.data, task="clasification"), ConfigError, "task 'clasification' is unknown", id="data-unknown-task"),
    S(lambda c: finetune.submit(BASE, c.data, output="me/digits-ft", config={"batch_size": 32},
                                validation_data=c.spoiled("held-out.csv", set_row(3, 0, "nan"))),
      InvalidValueError, "held-out.csv, row 3, column 'pixel_0'", id="data-spoiled-validation-file"),
    S(submit(lambda c: c.data, output="Me/Digits"), InvalidReferenceError, "model name 'Me/Digits'", id="data-bad-output-name"),
    # fine-tune configs
    S(with_config("broken.yaml", "epochs: [3\n"), ConfigError, "can't read fine-tune config", id="config-yaml-syntax"),
    S(with_config("broken.json", '{"epochs": 3,}'), ConfigError, "can't read fine-tune config", id="config-json-syntax"),
    S(with_config("list.yaml", "- epochs: 3\n"), ConfigError, "must be a mapping of settings, not list", id="config-not-a-mapping"),
    S(with_config("typo.yaml", "learning_rte: 0.01\n"), ConfigError, "did you mean 'learning_rate'", id="config-unknown-key"),
    S(with_config("zero.yaml", "epochs: 0\n"), ConfigError, "epochs must be a whole number >= 1", id="config-zero-epochs"),
    S(with_config("yes.yaml", "epochs: yes\n"), ConfigError, "epochs must be a whole number >= 1, got True", id="config-bool-epochs"),
    S(with_config("half.json", '{"batch_size": 0.5}'), ConfigError, "batch_size must be a whole number", id="config-fractional-batch"),
    S(with_config("all.yaml", "validation_fraction: 1\n"), ConfigError, "validation_fraction must be between 0 and 1", id="config-fraction-one"),
    S(with_config("fast.yaml", "learning_rate: fast\n"), ConfigError, "learning_rate must be a number, got 'fast'", id="config-rate-word"),
    S(with_config("nan.yaml", "learning_rate: .nan\n"), ConfigError, "learning_rate must be a positive number", id="config-rate-nan"),
    S(with_config("step.yaml", "scheduler: step\n"), ConfigError, "scheduler 'step' is unknown", id="config-unknown-scheduler"),
    S(with_config("dropout.yaml", "lora_rank: 4\nlora_dropout: 1.0\n"), ConfigError, "lora_dropout in [0, 1)", id="config-dropout-one"),
    S(with_config("label.yaml", "label_column:\n"), ConfigError, "label_column must be a non-empty string", id="config-empty-label-column"),
    S(with_config("evil.yaml", "epochs: !!python/object/apply:os.system ['touch {tmp}/pwned']\n"), ConfigError,
      "can't read fine-tune config", id="config-yaml-python-tag"),
    S(with_config("latin1.yaml", b"label_column: \xe9tiquette\n"), ConfigError, "can't read fine-tune config", id="config-not-utf8"),
    S(lambda c: finetune.submit(BASE, c.data, output="me/x", config=c.tmp / "missing.yaml"), ConfigError, "missing.yaml", id="config-missing-file"),
    S(with_config("deep.json", DEEP_JSON), ConfigError, "nests arrays or objects more than 100 deep", id="config-json-nested-100000-deep"),
    S(with_config("deep.yaml", f"epochs: {DEEP_JSON}\n"), ConfigError, "nests lists or mappings too deep", id="config-yaml-nested-100000-deep"),
    S(with_config("huge.yaml", f"learning_rate: {FOUR_HUNDRED_DIGITS}\n"), ConfigError,
      "learning_rate is a whole number of about 400 digits, too large for a float", id="config-rate-of-400-digits"),
    S(lambda c: finetune.submit(BASE, c.data, output="me/x", config=42), ConfigError, "not int", id="config-wrong-type"),
    # web UI uploads
    S(lambda c: (c.monkeypatch.setattr("webui.common.MAX_UPLOAD_MB", 1), store(Upload("digits.csv", b"0," * 500_001), (".csv",)))[1],
      InvalidArgumentError, "uploads are limited to 1 MB", id="upload-too-big"),
    S(lambda c: store(Upload("digits.exe", b"MZ"), (".csv", ".zip")), InvalidArgumentError, "this field takes .csv, .zip files", id="upload-wrong-suffix"),
    S(lambda c: store(Upload("weights.safetensors.exe", b"MZ"), (".safetensors",)), InvalidArgumentError, "takes .safetensors", id="upload-double-suffix"),
    S(lambda c: store(Upload("digits.csv", b""), (".csv",)), InvalidArgumentError, "digits.csv is empty", id="upload-empty"),
    S(lambda c: store(Upload("../../.csv", b"a,label\n1,0\n"), (".csv",)), InvalidArgumentError, "this field takes", id="upload-dots-only-name"),
    S(upload_zip(lambda a: a.writestr("../evil.png", b"x")), UnsafeFormatError, "'../evil.png' would leave the folder", id="zip-slip"),
    S(upload_zip(entry("images/../../evil.png")), UnsafeFormatError, "would leave the folder", id="zip-slip-nested"),
    S(upload_zip(entry("/tmp/evil.png")), UnsafeFormatError, "'/tmp/evil.png' would leave the folder", id="zip-absolute-path"),
    S(upload_zip(entry("images/1/link.png", b"/etc/passwd", mode=0o120777)), UnsafeFormatError, "is a link", id="zip-symlink"),
    S(upload_zip(zeros("images/0/bomb.png", 41_000_000), limit_mb=10), UnsafeFormatError, "over the limit", id="zip-bomb"),
    S(upload_zip(zeros("images/0/bomb.png", 5_000_000), patch=understate_sizes), UnsafeFormatError, "images.zip can't be unpacked (Bad CRC-32",
      id="zip-bomb-lying-about-its-size"),
    S(upload_zip(entry("images/1/0002.png"), patch=encrypt_flags), UnsafeFormatError, "encrypted, password required", id="zip-encrypted-entry"),
    S(upload_zip(many_files(11), max_files=10), UnsafeFormatError, "over the limit", id="zip-too-many-files"),
    S(upload_zip(zeros("images/0/bomb.png", 50_000_000)), UnsafeFormatError, "that is over the limit of 100 times",
      id="zip-bomb-under-the-total-limit"),
    S(upload_zip(lambda a: None, patch=lambda data: data.__setitem__(slice(None), b"PK\x03\x04 not a zip")),
      UnsafeFormatError, "images.zip is not a zip file", id="zip-not-a-zip"),
]


@pytest.mark.parametrize(("call", "error", "fragment"), CASES)
def test_bad_input_is_refused_and_changes_nothing(ctx, hub_home, call, error, fragment):
    if isinstance(call, Staged):
        call = partial(call.act, ctx, call.arrange(ctx))
    else:
        call = partial(call, ctx)
    before = state(hub_home)
    if isinstance(error, Exit):
        result = call()
        lines = result.stderr.strip().splitlines()
        assert result.returncode == error.code, result.stderr
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"{call.func.program}: error: ") and fragment in lines[0], lines[0]
        assert result.stdout == ""
    else:
        with pytest.raises(error) as caught:
            call()
        assert type(caught.value) is error, repr(caught.value)
        assert fragment in str(caught.value)
    assert state(hub_home) == before
    assert not (ctx.tmp / "pwned").exists()


def test_the_catalogue_is_big_enough():
    assert len(CASES) >= 40


# --- limits checked before the work they bound ---------------------------------------------------
# Inputs that used to cost a minute and gigabytes before they were refused; each limit is now
# checked first, so the refusal costs a small multiple of what it reads (bounds are generous
# for a busy 2-core machine: the work they stand in for took a minute).


def refused_quickly(call: Callable[[], Any], error: type[Exception], fragment: str, *, seconds: float = 2.0,
                    peak_bytes: int = 64 * 1024 * 1024) -> None:
    import time
    import tracemalloc

    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(error, match=fragment):
            call()
        elapsed, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < seconds and peak < peak_bytes, (elapsed, peak)


def distinct_names(count: int) -> bytes:
    """``count`` distinct four-letter column names and a comma after each, built in C (50 MB for ten million)."""
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    numbers, cells = np.arange(count), np.full((count, 5), ord(","), dtype=np.uint8)
    for place in range(4):
        cells[:, 3 - place] = letters[(numbers // len(letters) ** place) % len(letters)]
    return cells.tobytes()


@pytest.mark.one_backend
@pytest.mark.parametrize("data_row", [False, True], ids=["header-only", "with-a-row"])
def test_a_ten_million_column_csv_is_refused_before_it_is_parsed(tmp_path, data_row):
    from finetune.data import MAX_COLUMNS, load_dataset

    path = tmp_path / "wide.csv"
    path.write_bytes(distinct_names(10_000_000) + b"label\n" + (b"0," * 10_000_000 + b"1\n" if data_row else b""))  # 50-70 MB
    refused_quickly(lambda: load_dataset(path, task="classification"), UnreadableDataError, f"more than the {MAX_COLUMNS:,}",
                    peak_bytes=4 * 1024 * 1024)  # a chunk of the first line, never the file


@pytest.mark.one_backend
def test_a_header_with_a_quoted_line_break_is_counted_once_parsed(tmp_path):
    from finetune.data import load_dataset

    path = tmp_path / "wide.csv"
    path.write_bytes(b'"first\nname",' + b"c," * 200_000 + b"label\n")  # the first line holds one column
    refused_quickly(lambda: load_dataset(path, task="classification"), UnreadableDataError, "200,002 columns")


@pytest.mark.one_backend
def test_jsonl_rows_that_each_name_their_own_key_are_refused_before_the_table_is_built(tmp_path):
    from finetune.data import load_dataset

    path = tmp_path / "sparse.jsonl"
    path.write_text(a_key_per_row(20_000))  # 0.6 MB; the table it names has 400 million cells
    refused_quickly(lambda: load_dataset(path, task="classification"), UnreadableDataError, "give every row the same keys")


@pytest.mark.one_backend
def test_a_csv_text_longer_than_the_csv_modules_default_limit_is_read(tmp_path):
    from finetune.data import load_dataset

    text = "word " * 40_000  # 200,000 characters, over the csv module's 131,072
    path = tmp_path / "long.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["text", "label"], [text, "long"], ["short", "short"]])
    dataset = load_dataset(path, task="text-classification")
    assert dataset.inputs == (text, "short") and dataset.label_names == ("long", "short")


@pytest.mark.one_backend
@pytest.mark.parametrize("text", [DEEP_JSON, '{"a": ' + "[" * 101 + "]" * 101 + "}"], ids=["100000-deep", "101-deep"])
def test_jsonl_nested_too_deep_is_refused_without_recursing(tmp_path, text):
    import sys

    from finetune.data import load_dataset

    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "fine", "label": 0}\n' + text + "\n")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # deep in a call stack: the check itself does not recurse
    try:
        with pytest.raises(UnreadableDataError, match="deep.jsonl, row 2: nests arrays or objects more than 100 deep"):
            load_dataset(path, task="text-classification")
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.one_backend
def test_two_sessions_unpacking_the_same_zip_at_once_both_get_the_folder(hub_home):
    """Two browser sessions upload the same zip at once: both store it and unpack it into the one
    folder its hash names, neither fails, and no half-made file or folder is left."""
    import io
    import threading

    from webui.common import extract_zip

    for round_ in range(3):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for i in range(300):
                archive.writestr(f"images/{i % 2}/{i:04d}.png", bytes([round_, i % 256]) * 1000)
        data = buffer.getvalue()
        start, results = threading.Barrier(4), []

        def session() -> None:
            start.wait()
            try:
                results.append(extract_zip(store(Upload("images.zip", data), (".zip",))))
            except Exception as exc:  # noqa: BLE001 - the test reports whatever a session hit
                results.append(exc)

        sessions = [threading.Thread(target=session) for _ in range(4)]
        for thread in sessions:
            thread.start()
        for thread in sessions:
            thread.join()
        assert all(isinstance(result, Path) for result in results) and len(set(results)) == 1, results
        folder = results[0]
        assert sorted(p.name for p in folder.iterdir()) == ["0", "1"] and len(list(folder.rglob("*.png"))) == 300
        leftovers = [p for p in (hub_home / "uploads").rglob("*") if p.name.startswith(".")]
        assert leftovers == []
    import os

    mask = os.umask(0)
    os.umask(mask)
    stored = next((hub_home / "uploads").glob("*/images.zip"))  # readable by a worker of another user, as before
    assert (stored.stat().st_mode & 0o777, folder.stat().st_mode & 0o777) == (0o666 & ~mask, 0o777 & ~mask)
