"""The ``hub`` command line, run as real subprocesses (``python -m hub ...``).

Models are set up in-process with the Python API; the subprocess shares the
test's HUB_HOME and registry through the environment (see conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import hub
from conftest import ROOT, assert_same_tensors, snapshot, is_sqlite
from hub.cli import build_parser

pytestmark = pytest.mark.one_backend  # the commands' parsing, wording and output; the registry's own work is tested on both (test_registry, test_api), and the reindex and db tests below run on both

# Every command the parser knows, as typed after `hub` (a nested one as "db upgrade").
COMMANDS = [
    "list", "info", "versions", "history", "publish", "import-hf", "tag", "untag", "download",
    "verify", "gc", "reindex", "delete", "architectures", "ui", "demo", "db upgrade", "serve",
    "user create", "user password", "user list", "token create", "token list", "token revoke",
    "namespace create", "namespace set", "namespace list", "visibility", "export", "exports", "serve-models",
]
READ_ONLY = {
    "list": ["list", "--json"],
    "list (text)": ["list"],
    "info": ["info", "acme/iris@production", "--json"],
    "info (text)": ["info", "acme/iris"],
    "info (not found)": ["info", "nope/model"],
    "versions": ["versions", "acme/iris", "--json"],
    "history": ["history", "acme/iris", "production", "--json"],
}


# --- helpers ----------------------------------------------------------------------


def publish_iris(name: str = "acme/iris", seed: int = 0, **kwargs):
    """Publish a small MLP in-process (the default hub: the test's HUB_HOME and registry)."""
    torch.manual_seed(seed)
    options = dict(aliases=["production"], metrics={"accuracy": 0.9}, task="classification", tags=["tabular"])
    options.update(kwargs)
    return hub.publish(hub.create("mlp", in_features=4, hidden=[8], out_features=3), name, **options)


def cli_json(run_cli, *args: str):
    result = run_cli(*args)
    assert result.stderr == ""
    return json.loads(result.stdout)


def blob_path(home: Path, sha256: str) -> Path:
    return home / "blobs" / sha256


def weights_sha(version) -> str:
    return version.file("model.safetensors").sha256


def db_state() -> dict:
    """Everything the registry says, read through the API (for before/after comparisons)."""
    models = [m.to_dict() for m in hub.list_models(limit=None)]
    versions = {m["name"]: [v.to_dict() for v in hub.list_versions(m["name"])] for m in models}
    history = {
        m["name"]: {alias: [c.to_dict() for c in alias_history(m["name"], alias)] for alias in ("production", "staging")}
        for m in models
    }
    return json.loads(json.dumps({"models": models, "versions": versions, "history": history}))  # as the CLI prints it


def alias_history(name: str, alias: str) -> list:
    """Every move of ``alias``; none for an alias ``name`` never had (the API raises AliasNotFoundError)."""
    try:
        return hub.alias_history(name, alias)
    except hub.AliasNotFoundError:
        return []


def assert_one_line_error(result: subprocess.CompletedProcess, returncode: int, fragment: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == returncode, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("hub: error: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert result.stdout == ""


def close_default_hub() -> None:
    """Drop the in-process hub's database connections (before removing or rebuilding the database)."""
    hub.default_hub().close()


@pytest.fixture
def iris(hub_home):
    """acme/iris:1 with alias production, published in-process."""
    return publish_iris()


@pytest.fixture
def sources(tmp_path) -> dict[str, Path]:
    """Files to publish from, outside HUB_HOME: a mixed-dtype safetensors file and a real pickle."""
    folder = tmp_path / "sources"
    folder.mkdir()
    torch.manual_seed(1)
    tensors = {
        "encoder.weight": torch.randn(6, 4),
        "encoder.bias": torch.randn(6, dtype=torch.float64),
        "half": torch.randn(3, 2).half(),
        "brain": torch.randn(5).to(torch.bfloat16),
        "counts": torch.arange(7, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }
    save_file(tensors, folder / "weights.safetensors")
    torch.save(tensors, folder / "weights.pt")
    (folder / "card.md").write_text("# Tiny\n\nA tiny test model.\n")
    (folder / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "f1": 0.5}))
    return {"tensors": tensors, "safetensors": folder / "weights.safetensors", "pickle": folder / "weights.pt",
            "card": folder / "card.md", "metrics": folder / "metrics.json", "folder": folder}


# --- help, version, README --------------------------------------------------------


def parser_commands() -> list[str]:
    """Command names from the parser itself, nested ones as "db upgrade"."""
    def names(parser, prefix: str) -> list[str]:
        found = []
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            for name, sub in action.choices.items():
                found += names(sub, f"{prefix}{name} ") if sub._subparsers else [f"{prefix}{name}"]
        return found

    return names(build_parser(), "")


def test_every_parser_command_is_covered_here():
    assert sorted(parser_commands()) == sorted(COMMANDS)


def test_top_level_help_lists_every_command(run_cli):
    result = run_cli("--help")
    assert result.returncode == 0 and result.stderr == ""
    for command in COMMANDS:
        assert command.split()[0] in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_exits_zero(run_cli, command):
    result = run_cli(*command.split(), "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(f"usage: hub {command}")


def test_version_flag(run_cli):
    assert run_cli("--version").stdout.strip() == f"modelhub {hub.__version__}"


def test_readme_mentions_every_command():
    readme = (ROOT / "README.md").read_text()
    if len(readme.splitlines()) < 10:
        pytest.skip("README.md is not written yet")
    missing = [command for command in COMMANDS if f"hub {command}" not in readme]
    assert not missing, f"README.md never shows these commands as `hub <command>`: {missing}"


# --- errors: one line, non-zero, nothing written ------------------------------------

ERRORS = {
    "malformed version": (["info", "x:1.5"], 1, "not a positive integer"),
    "unknown model": (["info", "nope/model"], 1, "'nope/model' is not in the registry"),
    "unknown alias": (["info", "acme/iris@nope"], 1, "has no alias 'nope'"),
    "versions of unknown model": (["versions", "nope/model"], 1, "is not in the registry"),
    "history of unknown model": (["history", "nope/model", "production"], 1, "is not in the registry"),
    "tag a missing version": (["tag", "acme/iris:99", "prod"], 1, "no version 99"),
    "tag latest": (["tag", "acme/iris:1", "latest"], 1, "reserved"),
    "untag a missing alias": (["untag", "acme/iris", "nope"], 1, "has no alias 'nope'"),
    "publish a missing file": (["publish", "{tmp}/missing.safetensors", "acme/x"], 1, "does not exist"),
    "publish a pickle": (["publish", "{pickle}", "acme/x"], 1, "pickle"),
    "publish bad metrics": (["publish", "{safetensors}", "acme/x", "--metrics", "not json"], 1, "--metrics must be JSON"),
    "publish a bad name": (["publish", "{safetensors}", "Acme/X"], 1, "model name 'Acme/X'"),
    "publish a taken version": (["publish", "{safetensors}", "acme/iris", "--version", "1"], 1, "already exists"),
    "publish a missing card": (["publish", "{safetensors}", "acme/x", "--card", "{tmp}/missing.md"], 1, "can't read the card"),
    "delete without a version": (["delete", "acme/iris"], 1, "explicit version"),
    "delete a missing version": (["delete", "acme/iris:2"], 1, "no version 2"),
    "download a missing version": (["download", "acme/iris:2"], 1, "no version 2"),
    "verify an unknown model": (["verify", "nope/model"], 1, "is not in the registry"),
    "gc negative min-age": (["gc", "--min-age", "-1"], 1, "--min-age must be >= 0"),
    "list negative limit": (["list", "--limit", "-1"], 1, "non-negative"),
    "unknown subcommand": (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    "unknown option": (["list", "--bogus"], 2, "unrecognized arguments: --bogus"),
    "missing argument": (["info"], 2, "the following arguments are required: ref"),
    "bad sort": (["list", "--sort", "age"], 2, "invalid choice: 'age'"),
    "db without subcommand": (["db"], 2, "the following arguments are required"),
}


@pytest.mark.parametrize("case", ERRORS.values(), ids=ERRORS.keys())
def test_bad_input_prints_one_line_and_writes_nothing(run_cli, iris, hub_home, sources, tmp_path, case):
    args, returncode, fragment = case
    args = [a.format(tmp=tmp_path, pickle=sources["pickle"], safetensors=sources["safetensors"]) for a in args]
    files, state = snapshot(hub_home), db_state()
    result = run_cli(*args, check=False)
    assert_one_line_error(result, returncode, fragment)
    assert snapshot(hub_home) == files
    assert db_state() == state


def test_cli_error_state_matches_cli_listing(run_cli, iris):
    """The before/after state above is read in-process; the CLI's own JSON must agree with it."""
    state = db_state()
    assert cli_json(run_cli, "list", "--json", "--all") == state["models"]
    assert cli_json(run_cli, "versions", "acme/iris", "--json") == state["versions"]["acme/iris"]


# --- read-only commands: light and fast ---------------------------------------------

PROBE = """
import io, json, sys, time
from contextlib import redirect_stdout, redirect_stderr
import hub.cli
start = time.perf_counter()
with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
    rc = hub.cli.main(sys.argv[1:])
elapsed = time.perf_counter() - start
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sqlalchemy', 'alembic', 'numpy', 'safetensors'})
print(json.dumps({"rc": rc, "elapsed": elapsed, "heavy": heavy}))
"""


@pytest.mark.parametrize("args", READ_ONLY.values(), ids=READ_ONLY.keys())
def test_read_only_commands_are_light_and_write_nothing(iris, hub_home, args):
    files = snapshot(hub_home)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["rc"] == (1 if "nope/model" in args else 0)
    assert probe["heavy"] == []
    assert wall < 3.0, f"hub {' '.join(args)} took {wall:.2f} s"
    if args == ["list", "--json"]:
        assert probe["elapsed"] < 1.0, f"main(['list', '--json']) took {probe['elapsed']:.2f} s"
    assert snapshot(hub_home) == files


def test_publishing_files_and_managing_versions_do_without_torch(iris, hub_home, sources, tmp_path):
    """Only what builds a module (an --architecture check) needs torch: the rest starts in a fraction of a second."""
    folder = tmp_path / "download"
    for args in (["publish", str(sources["safetensors"]), "acme/tiny", "--alias", "production"],
                 ["publish", str(sources["folder"] / "weights.safetensors"), "acme/tiny"],
                 ["tag", "acme/tiny:1", "staging"], ["untag", "acme/tiny", "staging"], ["delete", "acme/tiny:2"],
                 ["download", "acme/tiny", "--to", str(folder)], ["verify"], ["gc", "--min-age", "0"]):
        result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
        probe = json.loads(result.stdout)
        assert probe["rc"] == 0 and "torch" not in probe["heavy"], (args, result.stderr)
    assert_same_tensors(load_file(folder / "weights.safetensors"), sources["tensors"])
    assert [v.version for v in hub.list_versions("acme/tiny")] == [1] and hub.info("acme/tiny@production").version == 1


# --- list ----------------------------------------------------------------------------


def test_list_json(run_cli, iris):
    models = cli_json(run_cli, "list", "--json")
    assert len(models) == 1
    model = models[0]
    assert model["name"] == "acme/iris"
    assert model["latest_version"] == 1 and model["num_versions"] == 1
    assert model["aliases"] == {"production": 1}
    assert model["task"] == "classification" and model["tags"] == ["tabular"]
    assert model["size_bytes"] == iris.size_bytes > 0


def test_list_json_filters_sorts_and_pages(run_cli, hub_home):
    publish_iris("acme/iris")
    publish_iris("acme/iris", seed=1, aliases=[])
    publish_iris("zoo/digits", aliases=[], task="vision", tags=["images"], license="mit", description="Handwritten digits")
    hub.publish({"w": torch.zeros(100, 100)}, "big/blob", task="vision")

    def names(*args):
        return [m["name"] for m in cli_json(run_cli, "list", "--json", *args)]

    assert names() == ["acme/iris", "big/blob", "zoo/digits"]
    assert names("--task", "vision", "--sort", "size") == ["big/blob", "zoo/digits"]
    assert names("--tag", "images", "--license", "mit") == ["zoo/digits"]
    assert names("--tag", "tabular", "--license", "mit") == []
    assert names("DIGITS") == ["zoo/digits"]
    assert names("handwritten") == ["zoo/digits"]
    assert names("--sort", "updated") == ["big/blob", "zoo/digits", "acme/iris"]
    assert names("--limit", "1", "--offset", "1") == ["big/blob"]
    assert names("--limit", "1", "--all") == ["acme/iris", "big/blob", "zoo/digits"]
    iris_summary = cli_json(run_cli, "list", "--json", "iris")[0]
    assert iris_summary["latest_version"] == 2 and iris_summary["num_versions"] == 2
    assert iris_summary["aliases"] == {"production": 1}


def test_list_text(run_cli, iris):
    lines = run_cli("list").stdout.splitlines()
    assert lines[0].split() == ["NAME", "LATEST", "VERSIONS", "ALIASES", "TASK", "SIZE", "UPDATED"]
    assert lines[1].split()[:5] == ["acme/iris", "1", "1", "production=1", "classification"]


def test_list_on_an_empty_hub(run_cli, hub_home):
    hub.default_hub().db.ensure_schema()  # an empty registry (the subprocess then needs no migration)
    assert run_cli("list").stdout == "no models yet; publish one with `hub publish`\n"
    assert cli_json(run_cli, "list", "--json") == []


def test_list_without_matches(run_cli, iris):
    assert run_cli("list", "nothing-like-this").stdout == "no models match\n"


# --- info and versions --------------------------------------------------------------


def test_info_json(run_cli, iris, hub_home):
    info = cli_json(run_cli, "info", "acme/iris@production", "--json")
    assert (info["name"], info["version"], info["ref"]) == ("acme/iris", 1, "acme/iris:1")
    assert info["aliases"] == ["production"]
    assert info["metrics"] == {"accuracy": 0.9}
    assert info["architecture"] == "mlp"
    assert info["config"]["hidden"] == [8]
    assert info["num_parameters"] == 4 * 8 + 8 + 8 * 3 + 3
    assert info["dtype"] == "float32"
    assert info["digest"] == iris.digest
    assert [f["path"] for f in info["files"]] == ["model.safetensors"]
    for entry in info["files"]:
        data = blob_path(hub_home, entry["sha256"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["size"]
    assert info["size_bytes"] == sum(f["size"] for f in info["files"])
    manifest = json.loads(blob_path(hub_home, info["digest"]).read_bytes())
    assert hashlib.sha256(blob_path(hub_home, info["digest"]).read_bytes()).hexdigest() == info["digest"]
    assert manifest["name"] == "acme/iris" and manifest["version"] == 1


@pytest.mark.parametrize("ref", ["acme/iris", "acme/iris:1", "acme/iris@production", "acme/iris@latest"])
def test_info_resolves_every_reference_form(run_cli, iris, ref):
    assert cli_json(run_cli, "info", ref, "--json")["ref"] == "acme/iris:1"


def test_info_text(run_cli, iris):
    out = run_cli("info", "acme/iris").stdout
    fields = dict(line.split(None, 1) for line in out.splitlines() if line and not line.startswith((" ", "files:")))
    assert fields["ref"] == "acme/iris:1"
    assert fields["aliases"] == "production"
    assert fields["metrics"] == "accuracy=0.9"
    assert fields["tags"] == "tabular"
    assert fields["digest"] == iris.digest
    assert f"model.safetensors  {iris.size_bytes} B  sha256:{weights_sha(iris)}" in out


def test_versions_json(run_cli, iris):
    publish_iris(seed=1, aliases=["staging"], metrics={"accuracy": 0.95})
    versions = cli_json(run_cli, "versions", "acme/iris", "--json")
    assert [(v["version"], v["aliases"], v["metrics"]) for v in versions] == [
        (1, ["production"], {"accuracy": 0.9}),
        (2, ["staging"], {"accuracy": 0.95}),
    ]
    assert versions[0]["files"][0]["sha256"] == weights_sha(iris)
    assert versions[0]["files"][0]["sha256"] != versions[1]["files"][0]["sha256"]


def test_versions_text(run_cli, iris):
    lines = run_cli("versions", "acme/iris").stdout.splitlines()
    assert lines[0].split() == ["VERSION", "ALIASES", "CREATED", "SIZE", "PARAMS", "DTYPE", "PARENT", "METRICS"]
    row = lines[1].split()
    assert row[:2] == ["1", "production"]
    assert "67" in row and "float32" in row and "accuracy=0.9" in row


# --- tag, untag, history ------------------------------------------------------------


def test_tag_moves_an_alias(run_cli, iris):
    publish_iris(seed=1, aliases=[])
    assert run_cli("tag", "acme/iris:2", "production").stdout == "acme/iris@production -> 2 (was 1)\n"
    assert cli_json(run_cli, "info", "acme/iris@production", "--json")["version"] == 2
    assert cli_json(run_cli, "list", "--json")[0]["aliases"] == {"production": 2}


def test_tag_a_new_alias_and_again(run_cli, iris):
    assert run_cli("tag", "acme/iris", "staging").stdout == "acme/iris@staging -> 1\n"
    assert run_cli("tag", "acme/iris@staging", "staging").stdout == "acme/iris@staging already -> 1\n"
    assert [c["to_version"] for c in cli_json(run_cli, "history", "acme/iris", "staging", "--json")] == [1]


def test_history_shows_from_and_to(run_cli, iris):
    publish_iris(seed=1, aliases=[])
    run_cli("tag", "acme/iris:2", "production")
    run_cli("untag", "acme/iris", "production")
    history = cli_json(run_cli, "history", "acme/iris", "production", "--json")
    assert [(c["from_version"], c["to_version"]) for c in history] == [(None, 1), (1, 2), (2, None)]
    assert [c["changed_by"] for c in history] == ["tester"] * 3
    assert all(c["name"] == "acme/iris" and c["alias"] == "production" for c in history)
    lines = run_cli("history", "acme/iris", "production").stdout.splitlines()
    assert lines[0].split() == ["WHEN", "WHO", "FROM", "TO"]
    assert [line.split()[2:] for line in lines[1:]] == [["tester", "-", "1"], ["tester", "1", "2"], ["tester", "2", "-"]]


def test_untag_removes_the_alias(run_cli, iris):
    assert run_cli("untag", "acme/iris", "production").stdout == "removed acme/iris@production (was 1)\n"
    assert cli_json(run_cli, "info", "acme/iris", "--json")["aliases"] == []
    assert_one_line_error(run_cli("info", "acme/iris@production", check=False), 1, "has no alias 'production'")


# --- publish -------------------------------------------------------------------------


def test_publish_a_safetensors_file_with_every_option(run_cli, iris, sources, hub_home):
    result = run_cli(
        "publish", str(sources["safetensors"]), "acme/tiny", "--version", "3", "--alias", "production", "--alias", "staging",
        "--tag", "tiny", "--tag", "test", "--task", "regression", "--license", "mit", "--description", "A tiny model",
        "--card", str(sources["card"]), "--metrics", f"@{sources['metrics']}", "--metadata", '{"epochs": 3, "data": "iris"}',
        "--parent", "acme/iris@production",
    )
    assert result.stdout.startswith("published acme/tiny:3 (production, staging)  ")
    assert_same_tensors(hub.load_state_dict("acme/tiny:3"), sources["tensors"])
    info = cli_json(run_cli, "info", "acme/tiny@staging", "--json")
    assert info["version"] == 3
    assert info["aliases"] == ["production", "staging"]
    assert info["tags"] == ["test", "tiny"]
    assert (info["task"], info["license"], info["description"]) == ("regression", "mit", "A tiny model")
    assert info["metrics"] == {"accuracy": 0.75, "f1": 0.5}
    assert info["metadata"] == {"epochs": 3, "data": "iris"}
    assert info["parent"] == "acme/iris:1"
    assert info["architecture"] is None
    files = {f["path"]: f for f in info["files"]}
    assert sorted(files) == ["README.md", "weights.safetensors"]  # a published file keeps its name
    source_bytes = sources["safetensors"].read_bytes()
    assert files["weights.safetensors"]["sha256"] == hashlib.sha256(source_bytes).hexdigest()
    assert files["weights.safetensors"]["size"] == len(source_bytes)
    assert "A tiny test model." in blob_path(hub_home, files["README.md"]["sha256"]).read_text()


def test_publish_a_downloaded_folder_round_trips(run_cli, iris, tmp_path):
    folder = tmp_path / "download"
    assert run_cli("download", "acme/iris", "--to", str(folder)).stdout.strip() == str(folder)
    assert run_cli("publish", str(folder), "acme/iris").stdout.startswith("published acme/iris:2  ")
    v2 = hub.info("acme/iris:2")
    assert v2.parent == "acme/iris:1"
    assert (v2.architecture, v2.config) == (iris.architecture, iris.config)
    assert weights_sha(v2) == weights_sha(iris)
    assert_same_tensors(hub.load_state_dict("acme/iris:2"), hub.load_state_dict("acme/iris:1"))
    model = hub.load("acme/iris:2", device="cpu")
    x = torch.randn(2, 4)
    assert torch.equal(model(x), hub.load("acme/iris:1", device="cpu")(x))


# --- download ------------------------------------------------------------------------


def test_download_to_the_default_folder(run_cli, iris, hub_home):
    folder = Path(run_cli("download", "acme/iris@production").stdout.strip())
    assert folder == hub_home / "snapshots" / "acme+iris" / "1"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "modelhub.json"]
    assert (folder / "model.safetensors").read_bytes() == blob_path(hub_home, weights_sha(iris)).read_bytes()
    assert (folder / "modelhub.json").read_bytes() == blob_path(hub_home, iris.digest).read_bytes()


def test_downloaded_files_have_ordinary_permissions(run_cli, iris, tmp_path):
    folder = Path(run_cli("download", "acme/iris", "--to", str(tmp_path / "dl")).stdout.strip())
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == (folder / "modelhub.json").stat().st_mode & 0o777


def test_download_refuses_a_corrupt_blob(run_cli, iris, hub_home, tmp_path):
    flip_a_byte(blob_path(hub_home, weights_sha(iris)))
    target = tmp_path / "dl"
    assert_one_line_error(run_cli("download", "acme/iris", "--to", str(target), check=False), 1, "is corrupted")
    assert not target.exists() or list(target.iterdir()) == []  # no half-copied file, no manifest


# --- verify --------------------------------------------------------------------------


def flip_a_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_a_clean_hub(run_cli, iris):
    publish_iris(seed=1)
    assert run_cli("verify").stdout == "checked 2 version(s): ok\n"
    report = cli_json(run_cli, "verify", "--json")
    assert report == {"checked": ["acme/iris:1", "acme/iris:2"], "problems": [], "leftovers": [], "ok": True}


def test_verify_names_a_corrupt_file(run_cli, iris, hub_home):
    flip_a_byte(blob_path(hub_home, weights_sha(iris)))
    result = run_cli("verify", check=False)
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1
    assert "acme/iris:1" in problems[0] and "'model.safetensors'" in problems[0] and "corrupted" in problems[0]
    assert result.stdout.splitlines()[-1] == "checked 1 version(s): 1 problem(s)"


def test_verify_json_reports_a_truncated_file(run_cli, iris, hub_home):
    path = blob_path(hub_home, weights_sha(iris))
    path.write_bytes(path.read_bytes()[:-7])
    result = run_cli("verify", "acme/iris:1", "--json", check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["checked"] == ["acme/iris:1"]
    assert len(report["problems"]) == 1
    assert report["problems"][0].startswith("acme/iris:1: file 'model.safetensors': ")
    assert f"expected {iris.size_bytes}" in report["problems"][0] and "truncated" in report["problems"][0]


def test_verify_one_version_ignores_the_others(run_cli, iris, hub_home):
    publish_iris(seed=1)
    flip_a_byte(blob_path(hub_home, weights_sha(iris)))
    assert run_cli("verify", "acme/iris:2").stdout == "checked 1 version(s): ok\n"
    assert run_cli("verify", "acme/iris:1", check=False).returncode == 1


def test_verify_reports_a_missing_manifest(run_cli, iris, hub_home):
    blob_path(hub_home, iris.digest).unlink()
    result = run_cli("verify", check=False)
    assert result.returncode == 1
    assert f"PROBLEM  acme/iris:1: manifest: blob {iris.digest} is missing" in result.stdout


# --- delete and gc -------------------------------------------------------------------


def test_delete_a_version(run_cli, iris):
    publish_iris(seed=1, aliases=["staging"])
    assert run_cli("delete", "acme/iris:1").stdout == "deleted acme/iris:1; `hub gc` frees its blobs\n"
    assert [v["version"] for v in cli_json(run_cli, "versions", "acme/iris", "--json")] == [2]
    assert cli_json(run_cli, "list", "--json")[0]["num_versions"] == 1
    assert_one_line_error(run_cli("info", "acme/iris:1", check=False), 1, "no version 1")
    assert_one_line_error(run_cli("info", "acme/iris@production", check=False), 1, "has no alias 'production'")
    history = cli_json(run_cli, "history", "acme/iris", "production", "--json")
    assert (history[-1]["from_version"], history[-1]["to_version"]) == (1, None)


def test_delete_the_last_version_hides_the_model(run_cli, iris):
    run_cli("delete", "acme/iris:1")
    assert cli_json(run_cli, "list", "--json") == []
    assert cli_json(run_cli, "versions", "acme/iris", "--json") == []


def test_gc_frees_a_deleted_versions_blobs(run_cli, iris, hub_home):
    v2 = publish_iris(seed=1)
    hub.delete_version("acme/iris:1")
    freed = [blob_path(hub_home, weights_sha(iris)), blob_path(hub_home, iris.digest)]

    dry = run_cli("gc", "--min-age", "0", "--dry-run")
    assert sorted(dry.stdout.splitlines()[:-1]) == sorted(f"would remove {p}" for p in freed)
    assert all(p.exists() for p in freed)

    result = run_cli("gc", "--min-age", "0")
    assert sorted(result.stdout.splitlines()[:-1]) == sorted(f"removed {p}" for p in freed)
    assert result.stdout.splitlines()[-1].startswith("freed ") and result.stdout.splitlines()[-1].endswith(" in 2 file(s)")
    assert not any(p.exists() for p in freed)
    assert blob_path(hub_home, weights_sha(v2)).exists() and blob_path(hub_home, v2.digest).exists()
    assert run_cli("verify").stdout == "checked 1 version(s): ok\n"
    assert set(hub.load_state_dict("acme/iris:2")) == {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}


def test_gc_dry_run_writes_nothing(run_cli, iris, hub_home):
    publish_iris(seed=1)
    hub.delete_version("acme/iris:1")
    files = snapshot(hub_home)
    result = run_cli("gc", "--min-age", "0", "--dry-run")
    assert result.stdout.splitlines()[-1].endswith(" in 2 file(s)")
    assert result.stdout.splitlines()[-1].startswith("would free ")
    assert snapshot(hub_home) == files


def test_gc_keeps_blobs_a_live_version_shares(run_cli, iris, hub_home):
    twin = hub.publish(hub.load("acme/iris:1", device="cpu"), "acme/iris")
    assert weights_sha(twin) == weights_sha(iris)
    hub.delete_version("acme/iris:1")
    result = run_cli("gc", "--min-age", "0")
    assert result.stdout.splitlines()[:-1] == [f"removed {blob_path(hub_home, iris.digest)}"]
    assert blob_path(hub_home, weights_sha(iris)).exists()
    assert run_cli("verify").stdout == "checked 1 version(s): ok\n"


def test_gc_spares_young_files_by_default(run_cli, iris, hub_home):
    publish_iris(seed=1)
    hub.delete_version("acme/iris:1")
    files = snapshot(hub_home)
    assert run_cli("gc").stdout == "freed 0 B in 0 file(s)\n"
    assert snapshot(hub_home) == files


def test_gc_removes_leftovers_of_interrupted_writes(run_cli, iris, hub_home):
    leftover = hub_home / "blobs" / ".tmp-abc.incomplete"
    leftover.write_bytes(b"half a blob")
    assert cli_json(run_cli, "verify", "--json")["leftovers"] == []  # young: it may be a write in flight
    assert cli_json(run_cli, "verify", "--json", "--min-age", "0")["leftovers"] == [str(leftover)]
    assert run_cli("gc", "--min-age", "0").stdout.splitlines() == [f"removed {leftover}", "freed 11 B in 1 file(s)"]
    assert not leftover.exists()


# --- reindex -------------------------------------------------------------------------


def publish_three_and_delete_the_third() -> None:
    publish_iris()
    publish_iris(seed=1, aliases=["staging"])
    publish_iris(seed=2, aliases=[])
    hub.delete_version("acme/iris:3")


def versions_view(run_cli) -> list[tuple]:
    return [(v["version"], v["aliases"], v["digest"], v["metrics"], v["files"])
            for v in cli_json(run_cli, "versions", "acme/iris", "--json")]


@pytest.mark.one_backend(False)
def test_reindex_rebuilds_the_same_registry(run_cli, hub_home):
    publish_three_and_delete_the_third()
    before = versions_view(run_cli)
    assert run_cli("reindex").stdout == f"reindexed 2 live version(s) from {hub_home}\n"  # nothing to change
    assert versions_view(run_cli) == before
    assert [v[0] for v in before] == [1, 2]
    summary = cli_json(run_cli, "list", "--json")[0]
    assert (summary["latest_version"], summary["num_versions"]) == (2, 2)
    assert summary["aliases"] == {"production": 1, "staging": 2}
    assert_one_line_error(run_cli("info", "acme/iris:3", check=False), 1, "no version 3")


@pytest.mark.one_backend(False)
def test_reindex_after_losing_the_sqlite_database(run_cli, hub_home):
    if not is_sqlite():
        pytest.skip("removes the SQLite file")
    publish_three_and_delete_the_third()
    before = versions_view(run_cli)
    close_default_hub()
    for suffix in ("", "-wal", "-shm"):
        (hub_home / f"registry.db{suffix}").unlink(missing_ok=True)
    assert run_cli("reindex").stdout.splitlines() == [
        "add acme/iris:1", "add acme/iris:2", "add acme/iris:3 (deleted)", "set acme/iris@production -> 1",
        "set acme/iris@staging -> 2", "restore 2 alias move(s) from the store", f"reindexed 2 live version(s) from {hub_home}",
    ]
    assert versions_view(run_cli) == before
    assert cli_json(run_cli, "info", "acme/iris@staging", "--json")["version"] == 2
    assert_one_line_error(run_cli("info", "acme/iris:3", check=False), 1, "no version 3")
    close_default_hub()
    assert publish_iris(seed=3, aliases=[]).version == 4  # the deleted number 3 is not reused


@pytest.mark.one_backend(False)
def test_reindex_keeps_deleted_numbers_taken(run_cli, hub_home):
    publish_three_and_delete_the_third()
    run_cli("reindex")
    assert publish_iris(seed=3, aliases=[]).version == 4
    report = cli_json(run_cli, "verify", "--json", "--min-age", "0")
    assert (report["ok"], report["checked"]) == (True, ["acme/iris:1", "acme/iris:2", "acme/iris:4"])
    assert len(report["leftovers"]) == 2  # the deleted version's weights and manifest, for `hub gc`


@pytest.mark.one_backend(False)
def test_reindex_with_models_named_like_refs_folders(run_cli, hub_home):
    for name in ("acme", "acme/aliases", "acme/versions", "versions", "aliases"):
        hub.publish({"w": torch.zeros(2)}, name, aliases=["production"])
    before = cli_json(run_cli, "list", "--json")
    result = run_cli("reindex", check=False)
    assert result.returncode == 0, result.stderr
    assert cli_json(run_cli, "list", "--json") == before
    assert [m["name"] for m in before] == ["acme", "acme/aliases", "acme/versions", "aliases", "versions"]


# --- architectures and db upgrade ----------------------------------------------------


def test_architectures(run_cli):
    result = run_cli("architectures", "--json")
    names = json.loads(result.stdout)
    assert {"mlp", "convnet"} <= set(names)
    assert names == hub.list_architectures()


@pytest.mark.one_backend(False)
def test_db_upgrade_creates_a_new_registry(run_cli, hub_home):
    hub_home.mkdir()
    result = run_cli("db", "upgrade")
    assert result.stdout == f"registry {os.environ['HUB_REGISTRY_URL']} is at schema 0003_access\n"
    assert cli_json(run_cli, "list", "--json") == []


@pytest.mark.one_backend(False)
def test_db_upgrade_on_a_brand_new_sqlite_home(run_cli, hub_home):
    if not is_sqlite():
        pytest.skip("SQLite only: the SQLite file's folder is what is missing")
    assert not hub_home.exists()
    result = run_cli("db", "upgrade", check=False)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert (hub_home / "registry.db").is_file()


@pytest.mark.one_backend(False)
def test_db_upgrade_keeps_an_existing_registry(run_cli, iris):
    state = db_state()
    assert run_cli("db", "upgrade").stdout.endswith(" is at schema 0003_access\n")
    assert db_state() == state
