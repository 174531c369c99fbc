"""The remote client: the :class:`hub.Hub` API against a hub server (``hub serve``, ``HUB_ENDPOINT``).

:class:`RemoteHub` is what :func:`hub.default_hub` returns when ``HUB_ENDPOINT`` is set: the
server's registry over HTTP (:mod:`hub.remote.registry`), a local content-addressed cache under
``HUB_HOME`` that fetches blobs on demand, verified and resumable (:mod:`hub.remote.cache`), and
publishing that uploads only what the server lacks (:mod:`hub.remote.publisher`).
"""

from hub.remote.hub import RemoteHub

__all__ = ["RemoteHub"]
