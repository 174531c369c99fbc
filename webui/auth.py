"""Who is using the web UI and what they may do: the session's hub, signing in, and the rules.

The UI runs one of three ways (:attr:`Visitor.mode`):

- ``remote`` (``HUB_ENDPOINT`` set): each browser session has a :class:`hub.remote.RemoteHub` of its
  own, with the token it signed in with (a token, or a user name and password that the server's
  ``POST /api/v1/login`` turns into a short-lived token), or none (anonymous: public models only).
  The server enforces every rule. ``HUB_TOKEN`` is not used: no visitor acts as whoever started the UI.
- ``sign-in`` (a local hub with authentication configured, :meth:`hub.access.Access.configured`): the
  sidebar signs in with a token or a user name and password, kept in the session. Listings and
  pages show only what :class:`hub.access.Access` lets the visitor read (a private model is "not
  found"), and every write needs the visitor's write permission and is recorded in their name
  (:func:`hub.settings.acting_as`), as a hub server does.
- ``open`` (a local hub without): the local user who started the UI is the one acting, as with the
  CLI; ``hub ui`` serves such a hub on this machine only.

Pages call :func:`page_visitor` once, at the top (it draws the sidebar), and ask the
:class:`Visitor` it returns before they read or write.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import streamlit as st

import hub
from hub import settings
from hub.access import ANONYMOUS, Access, Principal, ReadFilter, Throttle, is_loopback, open_to_network
from hub.errors import AuthenticationError, HubError, InvalidArgumentError, JobNotFoundError, PermissionDeniedError
from hub.reference import parse_reference, validate_name

__all__ = ["OPEN", "SIGN_IN", "REMOTE", "Visitor", "session_hub", "current_visitor", "page_visitor", "sign_in", "sign_out",
           "refusal", "session_token"]

OPEN, SIGN_IN, REMOTE = "open", "sign-in", "remote"
_TOKEN, _LOGIN, _REMOTE, _PROBLEM = "webui:token", "webui:login", "webui:remote", "webui:sign-in-problem"
SIGN_IN_HINT = "sign in in the sidebar (a token, or your user name and password)"
CREATE_USER = "`hub user create NAME --password-stdin`"


def refusal(host: str | None) -> str | None:
    """Why the UI must not serve a local hub on ``host`` (None: it may): a non-loopback address and no
    authentication configured, so anyone on the network could publish and move aliases."""
    if settings.endpoint() is not None or is_loopback(host) or not open_to_network(hub.default_hub().db, host):
        return None
    return (f"the web UI on {host or 'every interface'} would let anyone on the network publish and move aliases, and "
            f"this hub has no authentication configured: add a user who signs in ({CREATE_USER}) or a token "
            "(`hub token create --user NAME --scope write`), or serve on 127.0.0.1")


@dataclass(frozen=True)
class Visitor:
    """The person using this browser session: which hub they see and what they may do there.

    Attributes:
        hub: the session's hub (:func:`session_hub`).
        mode: :data:`OPEN`, :data:`SIGN_IN` or :data:`REMOTE`.
        principal: who they signed in as (:data:`hub.access.ANONYMOUS` when they did not); None in
            :data:`OPEN` mode, where the local user acts.
        access: the local hub's :class:`~hub.access.Access` (:data:`SIGN_IN` mode only).
    """

    hub: Any
    mode: str
    principal: Principal | None
    access: Access | None = None

    @property
    def user(self) -> str:
        """The name writes are recorded under ("anonymous" for a visitor who did not sign in)."""
        if self.principal is None:
            return settings.current_user()
        return self.principal.user or "anonymous"

    @property
    def signed_in(self) -> bool:
        return self.principal is not None and self.principal.user is not None

    @property
    def key(self) -> str:
        """Tells apart what different visitors may see (for caches shared by sessions)."""
        where = self.hub.endpoint if self.mode == REMOTE else f"{self.hub.home}|{self.hub.db.url}"
        who = self.principal or Principal("(local)", None, None, None)
        return f"{self.mode}|{where}|{who.user}|{who.scope}|{who.namespace}"

    def readable(self) -> ReadFilter | None:
        """The filter for ``list_models(readable=...)``: what this visitor may list (None: no filter
        here, because everything may be listed or because a hub server filters)."""
        if self.mode != SIGN_IN:
            return None
        assert self.access is not None and self.principal is not None
        return self.access.read_filter(self.principal)

    def can_read(self, name: str) -> bool:
        """Whether this visitor may read model ``name`` (a hub server answers for itself)."""
        if self.mode != SIGN_IN:
            return True
        assert self.access is not None and self.principal is not None
        return self.access.can_read(self.principal, name)

    def check_read(self, ref: str) -> None:
        """Raise unless this visitor may read the model ``ref`` names.

        Raises:
            InvalidReferenceError: a malformed reference.
            ModelNotFoundError: they may not: worded as for a model that is not there.
        """
        name = parse_reference(ref).name
        if self.mode == SIGN_IN:
            assert self.access is not None and self.principal is not None
            self.access.require_read(self.principal, name)

    def _signed_in_for(self, what: str) -> None:
        if self.mode != OPEN and not self.signed_in:
            raise AuthenticationError(f"{what} needs you signed in: {SIGN_IN_HINT}")

    @contextmanager
    def writing(self, name: str, what: str | None = None) -> Iterator[None]:
        """Check that this visitor may write model ``name``; inside, the hub records them as the one acting.

        Args:
            what: the write in words, for the error (default ``writing 'NAME'``).

        Raises:
            InvalidReferenceError: a malformed name (checked before any permission).
            AuthenticationError: nobody signed in (and the UI does not run open).
            PermissionDeniedError: a read-only token, another namespace's, or a user who is no owner or
                writer of the namespace (a hub server checks for itself, and refuses the same).
        """
        self._signed_in_for(what or f"writing {name!r}")
        if self.mode != SIGN_IN:
            yield
            return
        assert self.access is not None and self.principal is not None and self.principal.user is not None
        validate_name(name)  # before a namespace can be claimed by it
        if not self.access.can_write(self.principal, name):
            self.access.require_write(self.principal, name)  # says what is missing, or claims a namespace no one holds
        with settings.acting_as(self.principal.user):
            yield

    # --- fine-tuning jobs of a local hub (a hub server decides these itself) ------------------

    def check_job(self, job: Any) -> Any:
        """``job`` if this visitor may see it: they submitted it, write its output, or are an admin.

        Raises:
            AuthenticationError: nobody signed in. JobNotFoundError: they may not (worded as a missing job).
        """
        if self.mode != SIGN_IN:
            return job
        self._signed_in_for("seeing fine-tuning jobs")
        from finetune.server import visible

        if not visible(self.access, self.principal, job):
            raise JobNotFoundError(f"there is no job {job.id!r}; the Jobs page lists yours")
        return job

    def visible_jobs(self, jobs: list[Any]) -> list[Any]:
        """The jobs of ``jobs`` this visitor may see (none when nobody signed in)."""
        if self.mode != SIGN_IN:
            return jobs
        if not self.signed_in:
            return []
        from finetune.server import visible

        memo: dict[str, bool] = {}
        return [job for job in jobs if visible(self.access, self.principal, job, memo)]

    @contextmanager
    def cancelling(self, job: Any) -> Iterator[None]:
        """Check that this visitor may cancel ``job``; inside, they are the one acting.

        Raises:
            AuthenticationError: nobody signed in. PermissionDeniedError: neither its submitter (with a
                write token) nor a writer of its output.
        """
        self._signed_in_for(f"cancelling job {job.id}")
        if self.mode != SIGN_IN:
            yield
            return
        from finetune.server import may_cancel

        assert self.principal is not None and self.principal.user is not None
        if not may_cancel(self.access, self.principal, job):
            raise PermissionDeniedError(f"cancelling job {job.id} needs its submitter ({job.created_by}) with write scope, "
                                        f"or a writer of {job.output.split('/')[0] if '/' in job.output else 'the hub'}'s models")
        with settings.acting_as(self.principal.user):
            yield


# --- the session's hub and sign-in -------------------------------------------------------


_THROTTLE = Throttle()


def _remote_hub(token: str | None) -> Any:
    """The session's :class:`~hub.remote.RemoteHub` for ``token`` (made once per token and session)."""
    from hub.remote import RemoteHub

    held = st.session_state.get(_REMOTE)
    if held is not None and held[0] == token and held[1].endpoint == settings.endpoint():
        return held[1]
    if held is not None:
        held[1].close()
    made = RemoteHub(settings.endpoint(), token or "", home=settings.hub_home())  # "": never $HUB_TOKEN
    st.session_state[_REMOTE] = (token, made, None)
    return made


def session_hub() -> Any:
    """The hub this session uses: its own :class:`~hub.remote.RemoteHub` (with the token it signed in
    with) when ``HUB_ENDPOINT`` is set, else the local hub of ``HUB_HOME`` and ``HUB_REGISTRY_URL``."""
    if settings.endpoint() is not None:
        return _remote_hub(st.session_state.get(_TOKEN))
    return hub.default_hub()


def _remote_principal(session: Any, token: str | None) -> Principal:
    """Who the server takes the session's token for (asked once per token)."""
    if not token:
        return ANONYMOUS
    held = st.session_state.get(_REMOTE)
    if held is not None and held[0] == token and held[2] is not None:
        return held[2]
    who = session.whoami()
    principal = Principal(who.get("user"), who.get("scope"), who.get("namespace"), None)
    st.session_state[_REMOTE] = (token, session, principal)
    return principal


def current_visitor() -> Visitor:
    """This session's :class:`Visitor` (a token that stopped working signs the session out).

    Raises:
        HubError: the hub can't be read (a bad setting, an unreachable server).
    """
    session = session_hub()
    if settings.endpoint() is not None:
        token = st.session_state.get(_TOKEN)
        try:
            return Visitor(session, REMOTE, _remote_principal(session, token))
        except AuthenticationError as error:  # revoked or expired since it signed in
            sign_out()
            st.session_state[_PROBLEM] = str(error)
            return Visitor(_remote_hub(None), REMOTE, ANONYMOUS)
    access = Access(session.db)
    if not access.configured():
        return Visitor(session, OPEN, None)
    principal = ANONYMOUS
    if (token := st.session_state.get(_TOKEN)) is not None:
        try:
            principal = access.authenticate(f"Bearer {token}")  # every run: a revoked token stops at once
        except AuthenticationError as error:
            sign_out()
            st.session_state[_PROBLEM] = str(error)
    elif (login := st.session_state.get(_LOGIN)) is not None:
        principal = _still_signed_in(access, login)
    return Visitor(session, SIGN_IN, principal, access)


def _still_signed_in(access: Access, user: str) -> Principal:
    """The principal of ``user``, who signed in with a password: read again each run, so a user
    removed, without a password now, or no longer an admin, stops being one at once."""
    from hub.errors import UserNotFoundError

    try:
        record = access.get_user(user)
    except UserNotFoundError:
        record = None
    if record is None or not record.has_password:
        sign_out()
        st.session_state[_PROBLEM] = f"{user} can no longer sign in with a password; ask an admin (`hub user password {user}`)"
        return ANONYMOUS
    return Principal(record.name, "admin" if record.is_admin else "write", None, None)


def sign_in(*, token: str | None = None, user: str | None = None, password: str | None = None) -> Principal:
    """Sign this session in with a token, or a user name and password; return who it is now.

    Raises:
        InvalidArgumentError: neither given. AuthenticationError: a bad token, or a wrong user name or password.
        RemoteError: the hub server can't be reached.
    """
    token, user = (token or "").strip() or None, (user or "").strip() or None
    if token is None and (user is None or not password):
        raise InvalidArgumentError("give a token, or a user name and password")
    if settings.endpoint() is not None:
        if token is None:
            from hub.remote.client import API, Client

            client = Client(settings.endpoint(), None)
            try:
                answer = client.json("POST", f"{API}/login", json={"user": user, "password": password}, what="signing in")
            finally:
                client.close()
            token = answer.get("token") if isinstance(answer, dict) else None
            if not isinstance(token, str):
                from hub.errors import RemoteError

                raise RemoteError("signing in: the server's answer holds no token; check HUB_ENDPOINT")
        principal = _remote_principal(_remote_hub(token), token)
        st.session_state[_TOKEN] = token
        return principal
    access = Access(hub.default_hub().db)
    if token is not None:
        principal = access.authenticate(f"Bearer {token}")
        st.session_state[_TOKEN] = token
    else:
        principal = access.login(user, password)
        st.session_state[_LOGIN] = principal.user
    return principal


def session_token() -> str | None:
    """The token this browser session signed in with (or that its password sign-in to a hub server got); None if none."""
    return st.session_state.get(_TOKEN)


def sign_out() -> None:
    """Forget who this session signed in as (and close its connections to a hub server)."""
    for key in (_TOKEN, _LOGIN):
        st.session_state.pop(key, None)
    held = st.session_state.pop(_REMOTE, None)
    if held is not None:
        held[1].close()


def _sidebar(visitor: Visitor) -> None:
    """Who is signed in and a Sign out button, or the sign-in form; in open mode, a note saying who acts."""
    bar = st.sidebar
    if visitor.mode == OPEN:
        bar.caption(f"No sign-in: this hub has no users or tokens, so you act as **{_md(visitor.user)}**, who started the UI "
                    f"(as with the `hub` command). To require sign-in, add a user: {CREATE_USER}.")
        return
    if problem := st.session_state.pop(_PROBLEM, None):
        bar.warning(_md(problem), icon=":material/logout:")
    if visitor.signed_in:
        principal = visitor.principal
        assert principal is not None
        where = f", namespace {principal.namespace}" if principal.namespace else ""
        bar.markdown(f"Signed in as **{_md(principal.user)}** ({principal.scope}{_md(where)})")
        if bar.button("Sign out", key="signin:out"):
            sign_out()
            st.rerun()
        return
    with bar.form("signin:form", clear_on_submit=True):
        st.markdown("**Sign in**")
        user = st.text_input("User", key="signin:user")
        password = st.text_input("Password", type="password", key="signin:password")
        token = st.text_input("or a token", type="password", key="signin:token", placeholder="mh_...")
        submitted = st.form_submit_button("Sign in")
    bar.caption("Not signed in: you see public models only, and nothing can be written.")
    if submitted:
        try:
            sign_in(token=token, user=user, password=password)
        except AuthenticationError as error:
            time.sleep(_THROTTLE.failed(st.context.ip_address or "?"))  # repeated guesses get slower
            bar.error(_md(error), icon=":material/error:")
        except HubError as error:
            bar.error(_md(error), icon=":material/error:")
        else:
            st.rerun()


def _md(text: Any) -> str:
    from webui.common import md

    return md(text)


def page_visitor() -> Visitor:
    """This session's :class:`Visitor`, with the sidebar drawn (who is signed in, or the sign-in form):
    what each page calls first. A UI bound to another machine's reach (``--server.address``) over a
    hub with no authentication stops here, saying what to do.
    """
    from webui.common import show_error

    try:
        address = st.get_option("server.address")  # unset: Streamlit's default, which the project's config sets
        if address and (problem := refusal(address)):
            st.error(_md(problem), icon=":material/lock:")
            st.stop()
        visitor = current_visitor()
    except HubError as error:
        show_error(error)
        st.stop()
    _sidebar(visitor)
    return visitor
