"""modelhub's web UI: a Streamlit app over the public ``hub`` and ``finetune`` APIs.

Start it with ``hub ui`` (or ``streamlit run webui/app.py``). Pages live in
``webui/views/``, one module a page; :mod:`webui.common` holds what they share.
"""

from pathlib import Path

__all__ = ["APP"]

APP = Path(__file__).resolve().parent / "app.py"
