"""The fine-tuning job routes of a hub server (entry point ``modelhub.server``: ``finetune``).

``hub serve`` calls :func:`register`, which adds under ``/api/v1``:

- ``POST /jobs``: submit a job. A ``multipart/form-data`` body with a ``request`` field (JSON:
  ``base``, ``output``, and optionally ``task`` and ``config``, a dict of
  :class:`~finetune.config.FinetuneConfig` fields) and the data file as ``data`` (and optionally
  ``validation``). Files are streamed to disk as they arrive (at most ``FINETUNE_MAX_UPLOAD_MB``,
  else 413), checked as :func:`finetune.submit` checks them, and kept in the hub's uploads
  (:mod:`finetune.uploads`), where the server's workers read them and ``hub gc`` keeps them while the
  job needs them. It needs read on the base and write on the output; the job records the token's
  user, and the version it publishes is that user's. Answers 201 with the job.
- ``GET /jobs?state=&limit=``: the jobs the caller may see, newest first: their own, those into a
  namespace they may write, every one for an admin token (within its namespace, if it has one).
- ``GET /jobs/{id}``, ``GET /jobs/{id}/events?after=N``, ``GET /jobs/{id}/metrics?split=``: a job, its
  log lines after event ``N`` (what ``finetune logs --follow`` polls), its metrics by step. A job the
  caller may not see is answered 404, as a missing one.
- ``POST /jobs/{id}/cancel``: by its submitter (with a write token), a writer of its output's
  namespace, or an admin.

Every route needs a token (jobs belong to users: an anonymous caller gets 401). Workers are unchanged:
``finetune worker`` runs on the server's side, against its registry. Only a server imports this
module (it imports FastAPI).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from finetune.jobs import STATUSES, Job, JobStore, job_not_found
from finetune.uploads import IncomingFile
from hub.errors import AuthenticationError, HubError, InvalidArgumentError, NamespaceNotFoundError, PermissionDeniedError

__all__ = ["register", "visible", "may_cancel"]

MAX_REQUEST_FIELD = 1024 * 1024  # the JSON `request` field
REQUEST_KEYS = ("base", "output", "task", "config")
FILE_FIELDS = ("data", "validation")
DRAIN_BYTES = 1024 * 1024  # what is read of a refused body of an anonymous caller or one over the limit
_PAGE = 200  # jobs read at a time when filtering what a caller may see

_TOKEN_HINT = "`hub token create --user NAME --scope write` on the server"


def _namespace(name: str) -> str | None:
    return name.split("/", 1)[0] if "/" in name else None


def _namespace_taken(access: Any, name: str) -> bool:
    """Whether ``name``'s namespace has a record (or ``name`` has none): a write check there claims nothing."""
    namespace = _namespace(name)
    if namespace is None:
        return True
    try:
        access.get_namespace(namespace)
    except NamespaceNotFoundError:
        return False
    return True


def _signed_in(who: Any) -> None:
    if who.user is None:
        raise AuthenticationError("fine-tuning jobs belong to users: send `Authorization: Bearer <token>` "
                                  f"(set HUB_TOKEN; create one with {_TOKEN_HINT})")


def _may_write(access: Any, who: Any, name: str, memo: dict[str, bool] | None = None) -> bool:
    """Whether ``who`` may write model ``name``, asked without claiming an unclaimed namespace
    (:meth:`hub.access.Access.can_write`); ``memo`` keeps answers by namespace (a listing asks often)."""
    key = _namespace(name) or ""
    if memo is not None and key in memo:
        return memo[key]
    allowed = access.can_write(who, name)
    if memo is not None:
        memo[key] = allowed
    return allowed


def visible(access: Any, who: Any, job: Job, memo: dict[str, bool] | None = None) -> bool:
    """Whether ``who`` may see ``job``: they submitted it, may write its output, or hold an admin token.

    Args:
        access: the server's :class:`hub.access.Access`.
        who: the caller's :class:`hub.access.Principal`.
        job: the job.
        memo: answers kept by namespace, over one listing.
    """
    if who.user is None:
        return False
    return job.created_by == who.user or _may_write(access, who, job.output, memo)


def may_cancel(access: Any, who: Any, job: Job) -> bool:
    """Whether ``who`` may cancel ``job``: its submitter with a write or admin token, a writer of its output, an admin."""
    own = who.user is not None and job.created_by == who.user and who.scope in ("write", "admin")
    return own or _may_write(access, who, job.output)


class _JobForm:
    """A ``POST /jobs`` body, parsed as it arrives: the ``request`` field in memory, the files
    straight into the uploads (:class:`~finetune.uploads.IncomingFile`).

    Args:
        boundary: the multipart boundary.
        home: the hub's home folder.
        limit: the most bytes of each file.
        on_request: called with the ``request`` JSON as soon as it is whole (the permission checks,
            before the files' bytes are stored when the client sent it first).
    """

    def __init__(self, boundary: bytes, home: Path, limit: int, on_request: Callable[[dict[str, Any]], None]) -> None:
        from python_multipart import MultipartParser

        self.home, self.limit, self.on_request = home, limit, on_request
        self.request: dict[str, Any] | None = None
        self.files: dict[str, IncomingFile] = {}
        self._headers: list[tuple[bytes, bytes]] = []
        self._field, self._value = b"", b""
        self._name: str | None = None
        self._buffer: bytearray | None = None
        self._file: IncomingFile | None = None
        self._open = False  # inside a part
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_header_field": self._header_field, "on_header_value": self._header_value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
            "on_part_data": self._data, "on_part_end": self._end,
        })

    def _begin(self) -> None:
        self._headers, self._name, self._buffer, self._file, self._open = [], None, None, None, True

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((self._field.lower(), self._value))
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        disposition = next((value for field, value in self._headers if field == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name in self.files or (name == "request" and (self.request is not None or self._buffer is not None)):
            raise InvalidArgumentError(f"the form has two {name!r} parts; send one")
        if name == "request":
            self._name, self._buffer = name, bytearray()
        elif name in FILE_FIELDS:
            if filename is None:
                raise InvalidArgumentError(f"form field {name!r} must be a file (a part with a filename), not a value")
            self._name = name
            self._file = self.files[name] = IncomingFile(self.home, filename.decode("utf-8", "replace"), limit=self.limit, field=name)
        else:
            raise InvalidArgumentError(f"unknown form field {name!r}; a job is submitted with the fields request (JSON), "
                                       "data (the training file) and optionally validation (a file)")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
        elif self._buffer is not None:
            self._buffer += data[start:end]
            if len(self._buffer) > MAX_REQUEST_FIELD:
                raise _too_large(f"the request field is over {MAX_REQUEST_FIELD // 1024} KiB; it holds base, output, task and config")

    def _end(self) -> None:
        self._open = False
        if self._name == "request" and self._buffer is not None:
            self.request = _parse_request(bytes(self._buffer))
            self._buffer = None
            self.on_request(self.request)

    def write(self, chunk: bytes) -> None:
        """Parse the next bytes of the body.

        Raises:
            InvalidArgumentError: a malformed body or field (a file over the limit: 413).
            AuthenticationError, PermissionDeniedError, ModelNotFoundError: what ``on_request`` raises.
        """
        from python_multipart.exceptions import FormParserError

        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise InvalidArgumentError(f"the body is not valid multipart/form-data ({exc}); send the fields request and data") from None

    def finish(self) -> None:
        """The body has ended: check that it held a request and a data file.

        Raises:
            InvalidArgumentError: it is cut short, or lacks a part.
        """
        from python_multipart.exceptions import FormParserError

        try:
            self._parser.finalize()
        except FormParserError as exc:
            raise InvalidArgumentError(f"the body is not valid multipart/form-data ({exc})") from None
        if self._open:
            raise InvalidArgumentError("the body ended inside a part; send the whole form")
        missing = [name for name, there in (("request", self.request is not None), ("data", "data" in self.files)) if not there]
        if missing:
            raise InvalidArgumentError(f"the form lacks {' and '.join(missing)}: a job is submitted with a request field "
                                       "(JSON: base, output, task, config) and the training file as data")

    def discard(self) -> None:
        """Remove every file that arrived and was not committed."""
        for incoming in self.files.values():
            incoming.discard()


def _too_large(message: str) -> InvalidArgumentError:
    error = InvalidArgumentError(message)
    error.http_status = 413  # type: ignore[attr-defined]
    return error


def _parse_request(raw: bytes) -> dict[str, Any]:
    """The ``request`` field: a JSON object of base, output, task and config, checked for form.

    Raises:
        InvalidArgumentError: not JSON, not an object, an unknown or missing key, a value of the wrong type.
    """
    try:
        request = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgumentError(f"the request field is not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(request, dict):
        raise InvalidArgumentError("the request field must be a JSON object with base, output, task and config")
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise InvalidArgumentError(f"the request field has unknown key(s) {', '.join(map(repr, unknown))}; "
                                   f"it takes {', '.join(REQUEST_KEYS)}")
    for key in ("base", "output"):
        if not isinstance(request.get(key), str):
            raise InvalidArgumentError(f"the request field needs {key} as a string (the {'model to start from' if key == 'base' else 'model to publish into'})")
    if not isinstance(request.setdefault("task", "classification"), str):
        raise InvalidArgumentError("the request's task must be a string, such as classification")
    if request.get("config") is not None and not isinstance(request["config"], dict):
        raise InvalidArgumentError("the request's config must be an object of fine-tuning settings (a file name is not "
                                   "read on the server: send the settings themselves)")
    return request


def _tidied(error: HubError, form: _JobForm) -> HubError:
    """``error`` with the server's paths of the arriving files replaced by the client's file names."""
    text = str(error)
    for incoming in form.files.values():
        text = text.replace(str(incoming.staging_path), incoming.client_name)
    if text != str(error):
        error.args = (text,)
        if getattr(error, "file", None) is not None:
            error.file = next((f.client_name for f in form.files.values() if str(f.staging_path) == error.file), error.file)
    return error


async def _drain(request: Any, at_most: int) -> None:
    """Read (and drop) up to ``at_most`` more bytes of a refused request's body, so that its client,
    still sending, sees the answer rather than a broken connection."""
    read = 0
    try:
        async for chunk in request.stream():
            read += len(chunk)
            if read >= at_most:
                break
    except Exception:  # noqa: BLE001 - the client went away: nothing to answer
        pass


def _drained(who: Any, error: BaseException, limit: int) -> int:
    """How much of a refused body to read before answering: what the files may hold for a signed-in
    caller (whose client then reads the answer, not a broken connection), a little for anyone else
    and for a body over the limit."""
    if who.user is None or not isinstance(error, HubError) or getattr(error, "http_status", None) == 413:
        return DRAIN_BYTES
    return 2 * limit + MAX_REQUEST_FIELD


def register(app: Any, context: Any) -> None:
    """Add the job routes to a hub server's app (what the entry point ``modelhub.server`` names).

    Args:
        app: the server's ``fastapi.FastAPI``.
        context: its :class:`hub.server.ServerContext` (``hub``, ``access``).
    """
    from finetune.settings import max_upload_bytes
    from hub.server.app import API_PREFIX, principal

    router = APIRouter(tags=["jobs"])
    hub, access = context.hub, context.access
    jobs = JobStore(hub.db)

    def seen(job_id: str, who: Any) -> Job:
        _signed_in(who)
        job = jobs.get(job_id)
        if not visible(access, who, job):
            raise job_not_found(job_id)
        return job

    form_schema = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["request", "data"], "properties": {
            "request": {"type": "string", "description": 'JSON: {"base": ..., "output": ..., "task": ..., "config": {...}}'},
            "data": {"type": "string", "format": "binary", "description": "the training data file"},
            "validation": {"type": "string", "format": "binary", "description": "a validation data file (optional)"},
        }}}}}}

    @router.post("/jobs", status_code=201, openapi_extra=form_schema)
    async def submit_job(request: Request, who: Any = Depends(principal)) -> Any:
        """Submit a fine-tuning job with its data file; a worker on the server runs it."""
        from python_multipart.multipart import parse_options_header

        from finetune.api import _queue
        from hub.reference import parse_reference, validate_name
        from hub.settings import acting_as

        limit = max_upload_bytes()
        try:
            _signed_in(who)
            if who.scope == "read":
                raise PermissionDeniedError(f"this token has read scope; submitting a job needs write scope on the output's "
                                            f"namespace (create a token with {_TOKEN_HINT})")
            kind, options = parse_options_header(request.headers.get("content-type", ""))
            if kind != b"multipart/form-data" or not options.get(b"boundary"):
                raise InvalidArgumentError("a job is submitted as multipart/form-data: a request field (JSON) and the data file")
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > 2 * limit + MAX_REQUEST_FIELD + 65536:
                raise _too_large(f"the body is {int(declared):,} bytes, over what two data files of at most {limit:,} bytes "
                                 "(FINETUNE_MAX_UPLOAD_MB on the server) make; send a smaller file")
        except HubError as exc:
            await _drain(request, _drained(who, exc, limit))
            raise

        def check(fields: dict[str, Any]) -> None:
            access.require_read(who, parse_reference(fields["base"]).name)
            output = validate_name(fields["output"])
            restricted = who.namespace is not None and who.namespace != _namespace(output)
            if not _may_write(access, who, output) and (restricted or _namespace_taken(access, output)):
                access.require_write(who, output)  # raises, saying what is missing (an unclaimed namespace waits for place())

        form = _JobForm(options[b"boundary"], hub.home, limit, check)
        try:
            async for chunk in request.stream():
                await run_in_threadpool(form.write, chunk)
            form.finish()
            fields = form.request
            data, validation = form.files["data"], form.files.get("validation")

            def place() -> tuple[Path, Path | None]:
                access.require_write(who, fields["output"])  # a new namespace is claimed only now the job is sound
                return data.commit(), validation.commit() if validation is not None else None

            def queue() -> Job:
                with acting_as(who.user):
                    return _queue(hub, fields["base"], data.path_while_checked(), fields["output"], fields["task"],
                                  fields.get("config"), validation.path_while_checked() if validation is not None else None,
                                  place=place)[0]

            try:
                job = await run_in_threadpool(queue)
            except HubError as exc:
                raise _tidied(exc, form) from None
        except BaseException as exc:  # the client gone (cancelled) too: nothing of its files stays
            form.discard()
            if isinstance(exc, Exception):
                await _drain(request, _drained(who, exc, limit))
            raise
        return JSONResponse(job.to_dict(), status_code=201)

    @router.get("/jobs")
    def list_jobs(state: str | None = Query(None, description=f"one of {', '.join(STATUSES)}"),
                  limit: int = Query(50, ge=1, le=1000), who: Any = Depends(principal)) -> list[dict[str, Any]]:
        """The jobs the caller may see, newest first."""
        _signed_in(who)
        shown: list[Job] = []
        offset, memo = 0, {}
        while len(shown) < limit:
            page = jobs.list(state, limit=_PAGE, offset=offset)
            shown += [job for job in page if visible(access, who, job, memo)]
            if len(page) < _PAGE:
                break
            offset += _PAGE
        return [job.to_dict() for job in shown[:limit]]

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str, who: Any = Depends(principal)) -> dict[str, Any]:
        """One job (404 for one the caller may not see)."""
        return seen(job_id, who).to_dict()

    @router.get("/jobs/{job_id}/events")
    def job_events(job_id: str, after: int = Query(0, ge=0, description="only events after this id"),
                   who: Any = Depends(principal)) -> list[dict[str, Any]]:
        """The job's log lines after event ``after``, oldest first."""
        seen(job_id, who)
        return [event.to_dict() for event in jobs.events(job_id, after_id=after)]

    @router.get("/jobs/{job_id}/metrics")
    def job_metrics(job_id: str, split: str | None = Query(None, description="train or eval (default both)"),
                    who: Any = Depends(principal)) -> list[dict[str, Any]]:
        """The job's metrics by step (the loss curve)."""
        seen(job_id, who)
        return [metric.to_dict() for metric in jobs.metrics(job_id, split)]

    @router.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, who: Any = Depends(principal)) -> dict[str, Any]:
        """Cancel a queued job at once, a running one at its worker's next step."""
        job = seen(job_id, who)
        if not may_cancel(access, who, job):
            raise PermissionDeniedError(f"cancelling job {job_id} needs a write token of its submitter ({job.created_by}) "
                                        f"or of a writer of {_namespace(job.output) or 'the hub'}'s models"
                                        + (" (this token has read scope)" if who.scope == "read" else ""))
        return jobs.request_cancel(job_id).to_dict()

    app.include_router(router, prefix=API_PREFIX)
