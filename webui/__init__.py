"""modelhub's web UI: a Streamlit app over the public ``hub`` and ``finetune`` APIs.

Start it with ``hub ui`` (or ``streamlit run webui/app.py --server.address 127.0.0.1``). Both
listen on this machine only by default. Once the hub has a user with a password or a token
(``hub user create``, ``hub token create``), visitors sign in and the UI enforces what a hub
server does: nothing is written anonymously, private models are shown only to those who may read
them, and writes are recorded in the visitor's name (:mod:`webui.auth`); only then does
``hub ui --host 0.0.0.0`` serve every interface. Without any, the local user who started it acts,
on this machine only. With ``HUB_ENDPOINT`` set the UI runs against that hub server, each session
with the token it signed in with. The project's ``.streamlit/config.toml`` keeps a bare
``streamlit run`` in the project root on 127.0.0.1 too.
Pages live in ``webui/views/``, one module a page; :mod:`webui.common` holds what they share.
"""

from pathlib import Path

__all__ = ["APP"]

APP = Path(__file__).resolve().parent / "app.py"
