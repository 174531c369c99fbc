"""What a model takes as input: the facts a version records about its preprocessing.

A version records them at publish time (``hub.publish(..., input=...)``, or the
``input`` key of its metadata; fine-tuning records them for the versions it
publishes), and :meth:`hub.Hub.input_spec` reads them back as an :class:`InputSpec`.
For a version that records none, its model family infers them from its config
(:mod:`hub.families`; ``recorded`` is then False); :class:`InputSpec` itself is
:mod:`hub.input_facts`'. The web UI's Try it page, ``finetune`` and
anything that serves a model feed it inputs by these facts.

    hub.publish(model, "acme/digits-cnn", input={"kind": "image", "value_range": [0, 16], "background": 0})
    hub.input_spec("acme/digits-cnn").value_range   # (0.0, 16.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from hub.errors import InvalidArgumentError
from hub.families import inferred_input, input_spec_of
from hub.input_facts import KINDS, METADATA_KEY, TOKENIZER_FILES, InputSpec, parse_input

__all__ = ["InputSpec", "KINDS", "METADATA_KEY", "TOKENIZER_FILES", "check_input", "input_spec_of"]


def check_input(value: InputSpec | Mapping[str, Any] | None, *, architecture: str | None = None,
                config: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Check input facts for publishing and fill in what the architecture's config says.

    Args:
        value: an :class:`InputSpec` or a dict of its fields (``kind``, ``shape``,
            ``value_range``, ``background``, ``feature_names``, ``standardizes``); None for none.
        architecture, config: the version's; a kind, shape or ``standardizes`` left out is
            taken from them, and one given must agree with them.

    Returns:
        The JSON object to record (None when ``value`` is None).

    Raises:
        InvalidArgumentError: an unknown key, a malformed value, or facts that contradict
            each other or the config (a shape the architecture does not take).
    """
    if value is None:
        return None
    if isinstance(value, InputSpec):
        value = value.to_metadata()
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"input must be a dict of input facts or an InputSpec, not {type(value).__name__}")
    spec = parse_input(value)
    inferred = inferred_input(architecture, dict(config or {}))
    for field, given in (("kind", spec.kind), ("shape", spec.shape)):
        known = getattr(inferred, field)
        if given is not None and known is not None and given != known:
            shown = list(known) if isinstance(known, tuple) else known
            raise InvalidArgumentError(f"input {field} {list(given) if isinstance(given, tuple) else given!r} does not fit "
                                       f"architecture {architecture!r} with this config, which takes {shown!r}")
    spec = replace(spec, kind=spec.kind or inferred.kind, shape=spec.shape or inferred.shape,
                   standardizes=spec.standardizes or inferred.standardizes)
    return parse_input(spec.to_metadata()).to_metadata()  # the merged facts must still agree with each other
