"""The models an inference server serves: each REF loaded with its runtime and batcher, following
its alias (or ``latest``) when that moves.

A :class:`ServedModel` is one REF (``name``, ``name:N`` or ``name@alias``). ``name@alias`` and a
bare ``name`` (latest) are followed: :class:`Follower` asks the hub where they point every
``poll_seconds``; when one moved, the new version is loaded in the background (the old one serving
meanwhile), then swapped in atomically: requests already queued or running finish on the old
version, new ones go to the new one, and none fail. The old version's batcher then drains and its
model is let go. A new version that fails to load is logged and tried again at the next poll; the
old one keeps serving.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from hub.errors import HubError, InvalidArgumentError, ModelNotFoundError
from hub.reference import parse_reference
from hub.serving.batching import Batcher, BatcherClosed
from hub.serving.metrics import Metrics
from hub.serving.runtimes import Runtime, open_runtime

__all__ = ["Loaded", "ServedModel", "ServedModels", "Follower"]

logger = logging.getLogger("hub.serving")
DRAIN_SECONDS = 60.0  # how long a switched-out version's queued requests may take to finish


@dataclass(frozen=True)
class Loaded:
    """One version, loaded: its runtime and the batcher that feeds it."""

    runtime: Runtime
    batcher: Batcher

    @property
    def version(self) -> Any:
        return self.runtime.version


class ServedModel:
    """One REF served: the version it points at now, loaded.

    Args:
        hub: the :class:`hub.Hub` (or RemoteHub) it loads from.
        ref: what to serve.
        runtime: ``"torch"`` or ``"onnx"``.
        max_batch_size, max_delay: the batcher's (see :mod:`hub.serving.batching`).
        metrics: the server's :class:`Metrics`.

    Raises:
        InvalidReferenceError, ModelNotFoundError: the REF is malformed or names nothing.
        ModelNotFoundError: ``onnx`` for a version without an ONNX export.
    """

    def __init__(self, hub: Any, ref: str, *, runtime: str, max_batch_size: int, max_delay: float, metrics: Metrics) -> None:
        self.hub, self.reference = hub, parse_reference(ref)
        self.runtime_name, self.max_batch_size, self.max_delay, self.metrics = runtime, max_batch_size, max_delay, metrics
        self._failed: int | None = None  # a version that failed to load (logged once)
        self.current = self._load(hub.info(str(self.reference)))

    @property
    def name(self) -> str:
        return self.reference.name

    @property
    def follows(self) -> bool:
        """Whether the REF can move (an alias, or latest)."""
        return self.reference.version is None

    def _load(self, version: Any) -> Loaded:
        runtime = open_runtime(self.hub, version, self.runtime_name)
        self.metrics.loads.labels(self.name).inc()
        self.metrics.version.labels(self.name, str(self.reference)).set(version.version)
        batcher = Batcher(runtime.run, max_batch_size=self.max_batch_size, max_delay=self.max_delay,
                          name=version.ref, observe=lambda rows, waits: self.metrics.observe_batch(self.name, rows, waits))
        logger.info("loaded %s (%s) for %s", version.ref, runtime.platform, self.reference)
        return Loaded(runtime, batcher)

    def matches(self, version: str) -> bool:
        """Whether ``version`` (a number, or an alias) names what this REF serves now."""
        if version.isdigit():
            return int(version) == self.current.version.version
        return version == self.reference.alias or (version == "latest" and self.reference.alias is None
                                                   and self.reference.version is None)

    def submit(self, inputs: dict[str, tuple[str, Any]], outputs: Sequence[str] | None) -> tuple[Loaded, Future]:
        """Check a request's inputs against the current version and queue them.

        Returns:
            ``(the Loaded version it went to, the future of its outputs)``.

        Raises:
            InvalidArgumentError: the inputs don't fit the model.
        """
        while True:
            loaded = self.current
            work = loaded.runtime.check(inputs, outputs)
            try:
                return loaded, loaded.batcher.submit(work)
            except BatcherClosed:  # switched between reading current and queueing: the new one takes it
                continue

    def refresh(self) -> bool:
        """Ask where the REF points; load and switch to a new version. Returns whether it switched."""
        target = self.hub.info(str(self.reference))
        old = self.current
        if target.version == old.version.version or target.version == self._failed:
            return False
        try:
            new = self._load(target)
        except HubError as error:
            self._failed = target.version
            logger.error("%s moved to %s, which could not be loaded (%s); still serving %s",
                         self.reference, target.ref, error, old.version.ref)
            return False
        self._failed = None
        gc.freeze()  # the new version's objects, out of the collector's walks (see running.settle_garbage)
        self.current = new  # one assignment: requests from now on go to the new version
        old.batcher.close()
        threading.Thread(target=self._retire, args=(old,), name=f"retire {old.version.ref}", daemon=True).start()
        self.metrics.switches.labels(self.name).inc()
        logger.warning("%s moved: switched from %s to %s", self.reference, old.version.ref, target.ref)
        return True

    @staticmethod
    def _retire(old: Loaded) -> None:
        old.batcher.close(wait=DRAIN_SECONDS)
        old.runtime.close()
        del old
        gc.unfreeze()  # one full collection per switch, so that what the old version leaves in cycles goes too
        gc.collect()
        gc.freeze()

    def close(self) -> None:
        """Stop taking requests (the queued ones finish)."""
        self.current.batcher.close()


class ServedModels:
    """Every served REF, found by model name and version.

    Raises:
        InvalidArgumentError: no REF, or one REF given twice.
    """

    def __init__(self, models: Sequence[ServedModel]) -> None:
        if not models:
            raise InvalidArgumentError("give at least one model to serve: hub serve-models NAME[@ALIAS|:VERSION] ...")
        refs = [str(model.reference) for model in models]
        twice = next((ref for ref in refs if refs.count(ref) > 1), None)
        if twice is not None:
            raise InvalidArgumentError(f"{twice} is given twice; give each REF once")
        self.models = list(models)

    def names(self) -> list[str]:
        """The served model names, each once, in the order given."""
        return list(dict.fromkeys(model.name for model in self.models))

    def of_name(self, name: str) -> list[ServedModel]:
        """The REFs served under model ``name`` (the first is its default)."""
        return [model for model in self.models if model.name == name]

    def find(self, name: str, version: str | None = None) -> ServedModel:
        """The served REF for ``name`` and ``version`` (a number or an alias; None: the first REF given for it).

        Raises:
            ModelNotFoundError: no such model or version served here.
        """
        candidates = self.of_name(name)
        if not candidates:
            raise ModelNotFoundError(f"this server serves no model {name!r}; it serves {', '.join(self.names())}")
        if version is None:
            return candidates[0]
        found = next((model for model in candidates if model.matches(version)), None)
        if found is None:
            served = ", ".join(str(model.current.version.version) + (f" (@{model.reference.alias})" if model.reference.alias
                                                                     else "") for model in candidates)
            raise ModelNotFoundError(f"model {name!r} has no version {version!r} served here; it serves {served}")
        return found

    def close(self) -> None:
        for model in self.models:
            model.close()


class Follower:
    """A thread that calls :meth:`ServedModel.refresh` on every following REF each ``poll_seconds``."""

    def __init__(self, models: ServedModels, poll_seconds: float) -> None:
        self.models, self.poll_seconds = [m for m in models.models if m.follows], poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alias follower", daemon=True)

    def start(self) -> None:
        if self.models:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        problems: dict[str, str] = {}  # REF -> the last failure logged (each is logged once, until it changes)
        while not self._stop.wait(self.poll_seconds):
            for model in self.models:
                ref = str(model.reference)
                try:
                    model.refresh()
                except Exception as error:  # a hub briefly unreachable, an alias deleted: keep serving, keep asking
                    problem = f"{type(error).__name__}: {error}"
                    if problems.get(ref) != problem:
                        logger.error("checking %s failed (still serving %s): %s", ref, model.current.version.ref, problem)
                    problems[ref] = problem
                else:
                    if problems.pop(ref, None) is not None:
                        logger.warning("checking %s works again", ref)

