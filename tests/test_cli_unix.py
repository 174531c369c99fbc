"""The command lines behave like Unix tools (issue 13, item 4): a closed pipe ends them quietly,
errors name flags (the Python API keeps Python names), an unknown model or alias gets the names
that exist, ``hub verify`` on a healthy hub says only "ok", and a read on a ``HUB_HOME`` that
does not exist says so and creates nothing."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import finetune
import hub
from conftest import ROOT, is_sqlite
from hub.errors import AliasNotFoundError, ColumnNotFoundError, ConfigError, HubNotFoundError, ModelNotFoundError

pytestmark = pytest.mark.one_backend  # the command line's wording and exit codes; the registry-elsewhere tests below run on both


def publish_iris(name: str = "acme/iris", seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    options = {"aliases": ["production"], "task": "classification", **kwargs}
    return hub.publish(hub.create("mlp", in_features=4, hidden=[8], out_features=3), name, **options)


def run(program: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", program, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def one_line_error(result: subprocess.CompletedProcess, program: str = "hub") -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"{program}: error: ") and result.stdout == "", result
    return lines[0]


# --- a closed pipe ------------------------------------------------------------------


def into_a_closed_pipe(program: str, *args: str) -> tuple[int, str]:
    """Run ``python -m PROGRAM ARGS`` with its stdout a pipe whose reader has already gone (as
    ``| head`` leaves it once it has its lines): the exit status and stderr."""
    process = subprocess.Popen([sys.executable, "-m", program, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    process.stdout.close()  # long before the interpreter is up and prints
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr.decode()


def test_hub_and_finetune_end_quietly_when_the_reader_of_their_output_goes(hub_home):
    publish_iris()
    assert into_a_closed_pipe("hub", "list") == (0, "")
    assert into_a_closed_pipe("hub", "versions", "acme/iris", "--json") == (0, "")
    assert into_a_closed_pipe("finetune", "list") == (0, "")


def test_hub_info_piped_into_head(hub_home):
    publish_iris(description="a long story. " * 100_000)  # 1.4 MB: far more than a pipe holds
    result = subprocess.run(["bash", "-c", f"{sys.executable} -m hub info acme/iris | head -1; exit ${{PIPESTATUS[0]}}"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.split() == ["ref", "acme/iris:1"]


# --- errors name flags on the command line, Python names in Python ------------------------


@pytest.fixture
def tiny_table(tmp_path) -> Path:
    """Iris-like rows: four features and a ``label`` column."""
    path = tmp_path / "tiny.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "c", "d", "label"])
        writer.writerows([[i, i % 3, i % 5, 1, i % 3] for i in range(40)])
    return path


def test_a_missing_column_names_the_flag_on_the_command_line_and_the_field_in_python(hub_home, tiny_table, tmp_path):
    publish_iris()
    with pytest.raises(ColumnNotFoundError) as caught:
        finetune.submit("acme/iris", tiny_table, output="me/x", config={"label_column": "target", "batch_size": 4})
    assert "DataSpec(label_column=...)" in str(caught.value) and caught.value.settings == {"label_column": "DataSpec(label_column=...)"}

    line = one_line_error(run("finetune", "submit", "acme/iris", str(tiny_table), "-o", "me/x", "--label-column", "target",
                              "--batch-size", "4"), "finetune")
    assert "Rename the column or set --label-column" in line and "DataSpec" not in line, line

    settings = tmp_path / "settings.yaml"
    settings.write_text("label_column: target\nbatch_size: 4\n")
    line = one_line_error(run("finetune", "submit", "acme/iris", str(tiny_table), "-o", "me/x", "--config", str(settings)), "finetune")
    assert f"Rename the column or set label_column in {settings}" in line, line  # set by the file: the file's key


def test_out_of_range_settings_name_their_flags(hub_home, tiny_table):
    publish_iris()
    with pytest.raises(ConfigError, match=r"^validation_fraction must be between 0 and 1"):
        finetune.submit("acme/iris", tiny_table, output="me/x", config={"validation_fraction": 1.5})
    line = one_line_error(run("finetune", "submit", "acme/iris", str(tiny_table), "-o", "me/x", "--validation-fraction", "1.5"),
                          "finetune")
    assert line == "finetune: error: --validation-fraction must be between 0 and 1, got 1.5", line
    assert "--min-age must be >= 0" in one_line_error(run("hub", "gc", "--min-age", "-1"))
    with pytest.raises(hub.InvalidArgumentError, match="^min_age_seconds must be >= 0"):
        hub.gc(min_age_seconds=-1)


# --- did you mean, and which aliases there are ---------------------------------------------


def test_an_unknown_model_gets_the_closest_name(hub_home):
    publish_iris()
    publish_iris("acme/digits")
    with pytest.raises(ModelNotFoundError, match=r"'acme/irsi' is not in the registry \(did you mean 'acme/iris'\?\)"):
        hub.info("acme/irsi")
    with pytest.raises(ModelNotFoundError) as caught:
        hub.list_versions("zzz/qqq")
    assert "did you mean" not in str(caught.value)
    assert "did you mean 'acme/digits'?" in one_line_error(run("hub", "info", "acme/digit@production"))
    assert "did you mean 'acme/iris'?" in one_line_error(run("hub", "tag", "iris:1", "staging"))


def test_history_of_an_alias_that_never_was_names_those_there_are(hub_home):
    publish_iris()
    hub.set_alias("acme/iris", "staging", 1)
    with pytest.raises(AliasNotFoundError, match=r"has no alias 'nope'; its aliases are \['production', 'staging'\]"):
        hub.alias_history("acme/iris", "nope")
    line = one_line_error(run("hub", "history", "acme/iris", "nope"))
    assert "model 'acme/iris' has no alias 'nope'; its aliases are ['production', 'staging']" in line, line
    hub.delete_alias("acme/iris", "staging")  # gone, but its history stays readable
    result = run("hub", "history", "acme/iris", "staging")
    assert result.returncode == 0 and [line.split()[-2:] for line in result.stdout.splitlines()[1:]] == [["-", "1"], ["1", "-"]]


# --- verify says "ok" on a healthy hub ---------------------------------------------------


def test_verify_leaves_writes_in_flight_alone_and_keeps_ok_clean(hub_home):
    publish_iris()
    in_flight = hub_home / "blobs" / ".tmp-now.incomplete"  # a publish writing its weights right now
    in_flight.write_bytes(b"half a blob")
    assert run("hub", "verify").stdout == "checked 1 version(s): ok\n"
    assert hub.verify().leftovers == () and hub.verify(min_age_seconds=0).leftovers == (str(in_flight),)

    old = hub_home / "blobs" / ".tmp-yesterday.incomplete"  # one a killed process left
    old.write_bytes(b"half a blob")
    os.utime(old, (time.time() - 86_400,) * 2)
    result = run("hub", "verify")
    assert result.returncode == 0 and result.stdout.splitlines() == [
        "checked 1 version(s): ok",
        "1 leftover(s) of interrupted writes or deleted versions, older than 3600 s; `hub gc` removes them:",
        f"  {old}",
    ]
    assert json.loads(run("hub", "verify", "--json", "--min-age", "0").stdout)["leftovers"] == sorted([str(in_flight), str(old)])


# --- a HUB_HOME that does not exist ----------------------------------------------------------


READS = [["list"], ["list", "digits", "--json"], ["info", "acme/iris"], ["versions", "acme/iris"],
         ["history", "acme/iris", "production"], ["verify"], ["download", "acme/iris", "--to", "{tmp}/out"],
         ["gc", "--dry-run"], ["tag", "acme/iris:1", "staging"], ["delete", "acme/iris:1"]]


@pytest.mark.parametrize("args", READS, ids=[" ".join(a[:2]) for a in READS])
def test_a_read_of_a_hub_that_is_not_there_says_so_and_creates_nothing(hub_home, tmp_path, args):
    if not is_sqlite():
        pytest.skip("the default registry, a SQLite file in HUB_HOME")
    assert not hub_home.exists()
    line = one_line_error(run("hub", *[a.format(tmp=tmp_path) for a in args]))
    assert line == (f"hub: error: no hub at {hub_home}: `hub demo` makes one with sample models, or `hub publish` "
                    "creates it; set HUB_HOME to use another"), line
    assert not hub_home.exists() and not (tmp_path / "out").exists()


def test_finetune_reads_of_a_hub_that_is_not_there_and_a_write_that_makes_one(hub_home, tmp_path):
    if not is_sqlite():
        pytest.skip("the default registry, a SQLite file in HUB_HOME")
    assert "no hub at" in one_line_error(run("finetune", "list"), "finetune")
    assert not hub_home.exists()
    with pytest.raises(HubNotFoundError):
        hub.default_hub().check_exists()
    assert not hub_home.exists()
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, tmp_path / "w.safetensors")
    assert run("hub", "publish", str(tmp_path / "w.safetensors"), "acme/w").returncode == 0  # a write makes the hub
    assert run("hub", "list").stdout.splitlines()[1].split()[0] == "acme/w"
    assert run("finetune", "list").stdout == "no jobs\n"


@pytest.mark.one_backend(False)
def test_a_registry_elsewhere_still_lists_without_the_folder(hub_home, tmp_path, monkeypatch):
    """A registry outside HUB_HOME (PostgreSQL, or a SQLite file elsewhere) answers list and info
    without the folder, which is not created; what reads the store says where it is missing."""
    if is_sqlite():
        monkeypatch.setenv("HUB_REGISTRY_URL", f"sqlite:///{tmp_path / 'elsewhere' / 'registry.db'}")
    publish_iris()
    hub.default_hub().close()
    elsewhere = tmp_path / "not-here"
    monkeypatch.setenv("HUB_HOME", str(elsewhere))
    assert run("hub", "list").stdout.splitlines()[1].split()[0] == "acme/iris"
    assert json.loads(run("hub", "info", "acme/iris", "--json").stdout)["ref"] == "acme/iris:1"
    line = one_line_error(run("hub", "verify"))
    assert line.startswith(f"hub: error: no hub at {elsewhere}: the folder does not exist, so the files of the registry's "), line
    assert not elsewhere.exists()


@pytest.mark.one_backend(False)
def test_an_empty_registry_elsewhere_is_no_hub_either(hub_home, tmp_path, monkeypatch):
    """A registry outside HUB_HOME that has no modelhub tables yet (a new PostgreSQL database, a SQLite
    file not yet made) is no hub: a read says so and creates neither tables nor folders."""
    if is_sqlite():
        monkeypatch.setenv("HUB_REGISTRY_URL", f"sqlite:///{tmp_path / 'elsewhere' / 'registry.db'}")
    line = one_line_error(run("hub", "list"))
    assert line.startswith(f"hub: error: no hub at {hub_home} with the registry at "), line
    assert not hub_home.exists() and not (tmp_path / "elsewhere").exists()
    if not is_sqlite():
        assert hub.default_hub().db.schema_revision() is None  # no tables made in the database either
