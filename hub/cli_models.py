"""The ``hub`` CLI's ``serve-models`` command: published models over the Open Inference Protocol v2
(:mod:`hub.serving`, docs/SERVING.md)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def cmd_serve_models(args: argparse.Namespace) -> int:
    from hub.serving import serve_models

    serve_models(args.refs, host=args.host, port=args.port, runtime=args.runtime, max_batch_size=args.max_batch_size,
                 max_delay_ms=args.max_delay_ms, poll_seconds=args.poll_seconds, max_body_mb=args.max_body_mb,
                 threads=args.threads, log_level=args.log_level, access_log=args.access_log)
    return 0


def add_commands(commands: Any, command: Any) -> None:
    """Add this module's subcommands: ``commands`` is the subparsers object, ``command`` is
    ``functools.partial(hub.cli.add_command, commands)``."""
    sub = command("serve-models", cmd_serve_models, "serve models for inference over the Open Inference Protocol v2 "
                  "(/v2/models/NAME/infer), with dynamic batching; NAME@ALIAS follows its alias (docs/SERVING.md)")
    sub.add_argument("refs", nargs="+", metavar="REF", help="name, name:VERSION or name@ALIAS (an alias and a bare name's "
                     "latest are followed)")
    sub.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; another one needs "
                     "authentication configured on a local hub: `hub token create`)")
    sub.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free port, printed)")
    sub.add_argument("--runtime", default="torch", choices=["torch", "onnx"],
                     help="torch (hub.load) or onnx (the version's export: `hub export REF --format onnx`)")
    sub.add_argument("--max-batch-size", type=int, default=32, help="most rows in one batch (default 32; 1: batching off)")
    sub.add_argument("--max-delay-ms", type=float, default=5.0, help="how long a batch waits for more requests (default 5)")
    sub.add_argument("--poll-seconds", type=float, default=2.0, help="how often a followed alias is checked (default 2)")
    sub.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body in MiB (default 16; 413 above)")
    sub.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: half the cores, at least 1)")
    sub.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                     help="log level (default info: loads and alias switches)")
    sub.add_argument("--access-log", action="store_true", help="log one line per request (off by default: it costs throughput)")
