"""The ``hub`` CLI's access commands: ``hub user``, ``hub token``, ``hub namespace``, ``hub visibility``.

They manage who may do what on a hub server (see :mod:`hub.access`), in the registry of the hub on
this machine (``HUB_HOME``, ``HUB_REGISTRY_URL``): whoever can run them there has full access already.
They refuse to run with ``HUB_ENDPOINT`` set, which would suggest they change a remote hub.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hub.errors import InvalidArgumentError
from hub.formatting import format_table, print_json

__all__ = ["add_commands"]

_TIME = "%Y-%m-%d %H:%M"


@contextmanager
def _access(*, exists: bool = False) -> Iterator[Any]:
    """The :class:`hub.access.Access` of the local hub (closed after); with ``exists``, check there is a registry first."""
    from hub import settings
    from hub.access import Access
    from hub.api import Hub

    if settings.endpoint() is not None:
        raise InvalidArgumentError(
            f"HUB_ENDPOINT is set ({settings.endpoint()}): users, tokens and namespaces are managed on the hub "
            "server's machine, in its registry; run this there, with HUB_ENDPOINT unset"
        )
    local = Hub()
    try:
        if exists:
            local.check_exists(registry=True, store=False)
        yield Access(local.db)
    finally:
        local.close()


def _when(value: Any) -> str:
    return value.strftime(_TIME) if value is not None else "-"


def _read_password(args: argparse.Namespace) -> str | None:
    """The password of ``--password`` (asked twice on a terminal) or ``--password-stdin`` (one line); None: neither."""
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
    elif getattr(args, "password", False):
        import getpass

        password = getpass.getpass("password: ")
        if sys.stdin.isatty() and getpass.getpass("again: ") != password:
            raise InvalidArgumentError("the two passwords differ; run it again")
    else:
        return None
    if not password:
        raise InvalidArgumentError("the password is empty; give one")
    return password


# --- users ----------------------------------------------------------------------


def cmd_user_create(args: argparse.Namespace) -> int:
    from hub.access import _check_part

    _check_part(args.name, "user name")  # before asking for a password
    password = _read_password(args)
    with _access() as access:
        user = access.create_user(args.name, password=password, admin=args.admin)
    print(f"user {user.name} created" + (" (admin)" if user.is_admin else "") +
          ("" if user.has_password else "; it signs in with tokens: `hub token create --user " + user.name + " --scope ...`"))
    return 0


def cmd_user_password(args: argparse.Namespace) -> int:
    with _access(exists=True) as access:
        access.get_user(args.name)
        password = None if args.remove else _read_password(args)
        if password is None and not args.remove:
            raise InvalidArgumentError("give --password (asked for), --password-stdin or --remove")
        user = access.set_password(args.name, password, admin=args.admin)
        print(f"user {user.name}: " + ("password set" if user.has_password else "no password (tokens only)") +
              (", admin" if user.is_admin else ""))
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with _access(exists=True) as access:
        users = access.list_users()
    if args.json:
        print_json([{"name": u.name, "admin": u.is_admin, "has_password": u.has_password,
                     "created_at": u.created_at.isoformat()} for u in users])
        return 0
    if not users:
        print("no users yet; `hub user create NAME` or `hub token create --user NAME --scope ...` adds one")
        return 0
    print(format_table([[u.name, "yes" if u.is_admin else "no", "yes" if u.has_password else "no", _when(u.created_at)]
                        for u in users], ["NAME", "ADMIN", "PASSWORD", "CREATED"]))
    return 0


# --- tokens ---------------------------------------------------------------------


def cmd_token_create(args: argparse.Namespace) -> int:
    with _access() as access:
        token, info = access.create_token(args.user, args.scope, namespace=args.namespace, expires=args.expires)
    if args.json:
        print_json({"token": token, **info.to_dict()})
        return 0
    print(token)
    where = f", namespace {info.namespace}" if info.namespace else ""
    until = f"expires {info.expires_at.strftime(_TIME)} UTC" if info.expires_at else "never expires"
    print(f"token {info.id} for {info.user} ({info.scope} scope{where}, {until}): shown this once, only its hash is "
          f"kept; use it as HUB_TOKEN, revoke it with `hub token revoke {info.id}`", file=sys.stderr)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    with _access(exists=True) as access:
        tokens = access.list_tokens(args.user)
    if args.json:
        print_json([t.to_dict() for t in tokens])
        return 0
    if not tokens:
        print("no tokens" + (f" of {args.user}" if args.user else "") + "; `hub token create --user NAME --scope ...` makes one")
        return 0
    print(format_table([[t.id, t.user, t.scope, t.namespace or "-", _when(t.created_at), _when(t.expires_at) if t.expires_at else "never",
                         _when(t.last_used_at), _when(t.revoked_at)] for t in tokens],
                       ["ID", "USER", "SCOPE", "NAMESPACE", "CREATED", "EXPIRES", "LAST USED", "REVOKED"]))
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    with _access(exists=True) as access:
        before = access.get_token(args.id)
        after = access.revoke_token(before.id)
        print(f"token {after.id} of {after.user} " + ("was revoked already" if before.revoked_at else "revoked") +
              f" ({after.revoked_at.strftime(_TIME)} UTC)")
    return 0


# --- namespaces -----------------------------------------------------------------


def _visibility(args: argparse.Namespace) -> str | None:
    return "public" if args.public else "private" if args.private else None


def _show_namespace(namespace: Any) -> str:
    members = "; ".join(f"{role}: {', '.join(users)}" for role, users in
                        (("owners", namespace.owners), ("writers", namespace.writers), ("readers", namespace.readers)) if users)
    return f"namespace {namespace.name} ({namespace.visibility}) {members}"


def cmd_namespace_create(args: argparse.Namespace) -> int:
    with _access() as access:
        namespace = access.create_namespace(args.name, owners=args.owner, writers=args.writer, readers=args.reader,
                                            visibility=_visibility(args))
    print(_show_namespace(namespace))
    return 0


def cmd_namespace_set(args: argparse.Namespace) -> int:
    changes = dict(add_owners=args.add_owner, add_writers=args.add_writer, add_readers=args.add_reader,
                   remove_owners=args.remove_owner, remove_writers=args.remove_writer, remove_readers=args.remove_reader)
    visibility = _visibility(args)
    if visibility is None and not any(changes.values()):
        raise InvalidArgumentError("nothing to change: give --add-writer, --remove-writer, ... or --public / --private")
    with _access(exists=True) as access:
        namespace = access.update_namespace(args.name, visibility=visibility, **changes)
    print(_show_namespace(namespace))
    return 0


def cmd_namespace_list(args: argparse.Namespace) -> int:
    with _access(exists=True) as access:
        namespaces = access.list_namespaces()
    if args.json:
        print_json([n.to_dict() for n in namespaces])
        return 0
    if not namespaces:
        print("no namespaces yet; `hub namespace create NAME --owner USER` makes one (a write token's first publish claims one)")
        return 0
    print(format_table([[n.name, n.visibility, ",".join(n.owners), ",".join(n.writers) or "-", ",".join(n.readers) or "-"]
                        for n in namespaces], ["NAME", "VISIBILITY", "OWNERS", "WRITERS", "READERS"]))
    return 0


def cmd_visibility(args: argparse.Namespace) -> int:
    kind = "model" if args.model else "namespace" if args.namespace else None
    with _access(exists=True) as access:
        changed = access.set_visibility(args.name, args.visibility, kind=kind)
    print(f"{changed} {args.name} is {args.visibility}")
    return 0


def add_commands(commands: Any, command: Any) -> None:
    """Add this module's subcommands: ``commands`` is the subparsers object, ``command`` is
    ``functools.partial(hub.cli.add_command, commands)``."""
    from hub.access import DEFAULT_EXPIRY, SCOPES

    add_command = command.func  # hub.cli.add_command, for the subcommands of each group

    def group(name: str, help_text: str) -> Any:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", parser_class=commands._parser_class)
        sub.required = True
        return sub

    def password_flags(sub: argparse.ArgumentParser) -> None:
        given = sub.add_mutually_exclusive_group()
        given.add_argument("--password", action="store_true", help="ask for a password (to sign in to the web UI)")
        given.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")

    users = group("user", "Users of a hub server (who tokens belong to, who namespaces name).")
    sub = add_command(users, "create", cmd_user_create, "Add a user.")
    sub.add_argument("name")
    password_flags(sub)
    sub.add_argument("--admin", action="store_true", help="a password sign-in gets admin scope (else write)")
    sub = add_command(users, "password", cmd_user_password, "Set or remove a user's password (and admin flag).")
    sub.add_argument("name")
    password_flags(sub)
    sub.add_argument("--remove", action="store_true", help="remove the password: the user signs in with tokens only")
    sub.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None, help="make the user an admin, or not")
    sub = add_command(users, "list", cmd_user_list, "List users.")
    sub.add_argument("--json", action="store_true")

    tokens = group("token", "API tokens for a hub server (Authorization: Bearer, or HUB_TOKEN).")
    sub = add_command(tokens, "create", cmd_token_create,
                      "Make a token and print it, once (only its hash is kept); creates the user if there is none.")
    sub.add_argument("--user", required=True)
    sub.add_argument("--scope", required=True, choices=SCOPES, help="read: read; write: read and publish where the user "
                     "is an owner or writer; admin: everything")
    sub.add_argument("--namespace", help="the token acts only in this namespace")
    sub.add_argument("--expires", default=DEFAULT_EXPIRY,
                     help=f"lifetime: 30d, 12h, 90m or never (default {DEFAULT_EXPIRY})")
    sub.add_argument("--json", action="store_true", help="print the token and its record as JSON")
    sub = add_command(tokens, "list", cmd_token_list, "List tokens (never their secrets).")
    sub.add_argument("--user", help="only this user's")
    sub.add_argument("--json", action="store_true")
    sub = add_command(tokens, "revoke", cmd_token_revoke, "Revoke a token: every server refuses it from its next request.")
    sub.add_argument("id", help="the token's id (`hub token list`)")

    def visibility_flags(sub: argparse.ArgumentParser) -> None:
        given = sub.add_mutually_exclusive_group()
        given.add_argument("--public", action="store_true", help="anyone reads its models, without a token")
        given.add_argument("--private", action="store_true", help="only its members and admins read its models")

    namespaces = group("namespace", "Namespaces: who owns and writes the models under NAME/.")
    sub = add_command(namespaces, "create", cmd_namespace_create, "Record a namespace with its owners.")
    sub.add_argument("name")
    sub.add_argument("--owner", action="append", required=True, help="owner (repeatable): writes and manages it")
    sub.add_argument("--writer", action="append", default=[], help="writer (repeatable): publishes, moves aliases")
    sub.add_argument("--reader", action="append", default=[], help="reader (repeatable): reads its private models")
    visibility_flags(sub)
    sub.description += " Visibility defaults to $HUB_DEFAULT_VISIBILITY (private)."
    sub = add_command(namespaces, "set", cmd_namespace_set, "Change a namespace's members or visibility.")
    sub.add_argument("name")
    for role in ("owner", "writer", "reader"):
        sub.add_argument(f"--add-{role}", action="append", default=[], metavar="USER", help="(repeatable)")
        sub.add_argument(f"--remove-{role}", action="append", default=[], metavar="USER", help="(repeatable)")
    visibility_flags(sub)
    sub = add_command(namespaces, "list", cmd_namespace_list, "List namespace records.")
    sub.add_argument("--json", action="store_true")

    sub = command("visibility", cmd_visibility,
                  "Make a model (NAMESPACE/MODEL, or MODEL) or a namespace public or private; a model's overrides its namespace's.")
    sub.add_argument("name")
    sub.add_argument("visibility", choices=["public", "private"])
    which = sub.add_mutually_exclusive_group()
    which.add_argument("--model", action="store_true", help="NAME is a model (also one not published yet)")
    which.add_argument("--namespace", action="store_true", help="NAME is a namespace")
