"""The web UI's settings, read from the environment in this module alone.

``HUB_UI_MAX_UPLOAD_MB``  the largest file a page takes as an upload, in megabytes (default 200);
                          a zip may unpack to four times that. ``hub ui`` passes it on to
                          Streamlit's own limit (``--server.maxUploadSize``).

``HUB_INFERENCE_URL``    an inference server (``hub serve-models``, ``http://127.0.0.1:8080``) that the
                          Try it page offers to send its input to, instead of running the model itself.

A bad value is an :class:`~hub.errors.InvalidArgumentError` naming the variable, its value and
what to set. Where the hub lives (``HUB_HOME``, ``HUB_REGISTRY_URL``) is :mod:`hub.settings`'.
"""

from __future__ import annotations

import os

from hub.settings import as_int

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "max_upload_mb", "inference_url"]

DEFAULT_MAX_UPLOAD_MB = 200


def max_upload_mb() -> int:
    """``$HUB_UI_MAX_UPLOAD_MB``, the upload limit in megabytes (default 200).

    Raises:
        InvalidArgumentError: it is not a positive whole number.
    """
    return as_int("HUB_UI_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB, what="whole number of megabytes")


def inference_url() -> str:
    """``$HUB_INFERENCE_URL``, the Try it page's default inference server (``""``: none)."""
    return os.environ.get("HUB_INFERENCE_URL", "").strip()
