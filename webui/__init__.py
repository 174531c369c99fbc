"""modelhub's web UI: a Streamlit app over the public ``hub`` and ``finetune`` APIs.

Start it with ``hub ui`` (or ``streamlit run webui/app.py --server.address 127.0.0.1``). Both
listen on this machine only: the UI publishes, deletes and fine-tunes without asking who you
are. ``hub ui --host 0.0.0.0`` serves every interface when you mean to; the project's
``.streamlit/config.toml`` keeps a bare ``streamlit run`` in the project root on 127.0.0.1 too.
Pages live in ``webui/views/``, one module a page; :mod:`webui.common` holds what they share.
"""

from pathlib import Path

__all__ = ["APP"]

APP = Path(__file__).resolve().parent / "app.py"
