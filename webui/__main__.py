"""``python -m webui --host H --port P``: serve the web UI with Streamlit (what ``hub ui`` starts).

It builds the ``streamlit run`` command (the app, the address, the upload limit of
``HUB_UI_MAX_UPLOAD_MB``, no usage statistics, a viewer's toolbar) and becomes it (``exec``): the
server is this very process, so the signals ``hub ui`` sends, and the kernel's
``PR_SET_PDEATHSIG`` request it set up, reach Streamlit itself. A bad setting prints one line
and exits 1, and so does a non-loopback ``--host`` over a local hub with no authentication
configured (:func:`webui.auth.refusal`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hub.errors import HubError
from webui import APP
from webui.settings import max_upload_mb

__all__ = ["streamlit_command", "main"]


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line that serves the app on ``host:port``.

    Raises:
        InvalidArgumentError: a bad ``HUB_UI_MAX_UPLOAD_MB``.
    """
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.maxUploadSize", str(max_upload_mb()), "--client.toolbarMode", "viewer"]


def main(argv: Sequence[str] | None = None) -> int:
    """Become the Streamlit server; return 1 (after one line on stderr) when a setting is bad."""
    parser = argparse.ArgumentParser(prog="python -m webui", description="Serve modelhub's web UI with Streamlit.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args(argv)
    try:
        command = streamlit_command(args.host, args.port)
        from webui.auth import refusal

        if problem := refusal(args.host):
            print(f"webui: error: {problem}", file=sys.stderr)
            return 1
    except HubError as exc:
        print(f"webui: error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached: the process is Streamlit now


if __name__ == "__main__":
    sys.exit(main())
