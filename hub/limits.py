"""How deeply nested the JSON the hub reads from users may be, checked without recursion.

Python's ``json`` module (and ``json.dumps``) recurse once per level of nesting, so a line
of 100,000 ``[`` raises ``RecursionError``, which no ``except ValueError`` catches, and a
value that is merely deep can fail later, wherever it is read again deeper in a call
stack. Real inputs (data rows, configs, metrics, metadata, manifests) nest a handful of
levels; :data:`MAX_JSON_DEPTH` is far above that and far below the interpreter's limit.

:func:`loads` checks the text's depth with a scan that does not recurse, then parses it;
:func:`too_deep` checks a Python value the same way, before it is encoded.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JSONTooDeepError", "loads", "text_too_deep", "too_deep"]

MAX_JSON_DEPTH = 100  # arrays and objects inside one another; real inputs nest fewer than 10

# a JSON string (escapes and all), or one bracket: what the depth scan looks at
_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)


class JSONTooDeepError(ValueError):
    """JSON text nests arrays or objects more than :data:`MAX_JSON_DEPTH` deep."""


def text_too_deep(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays and objects more than ``limit`` deep.

    Linear in the text and recursion-free: text with no more than ``limit`` opening
    brackets in all can't be deeper, so most text is settled by two ``count`` calls; the
    rest is scanned bracket by bracket, skipping strings (brackets inside them don't count).
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for token in _TOKENS.finditer(text):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > limit:
                return True
        elif first in "]}":
            depth -= 1
    return False


def loads(text: str | bytes, **options: Any) -> Any:
    """``json.loads(text, **options)`` that first refuses text nested more than :data:`MAX_JSON_DEPTH` deep.

    Raises:
        JSONTooDeepError: too deep (a ``ValueError``, as ``json.JSONDecodeError`` is, so callers
            that already catch ``ValueError`` need no new clause).
        json.JSONDecodeError: not JSON.
    """
    if text_too_deep(text):
        raise JSONTooDeepError(f"it nests arrays or objects more than {MAX_JSON_DEPTH} deep")
    return json.loads(text, **options)


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a Python value nests lists, tuples and dicts more than ``limit`` deep (walked without recursion).

    Each container is walked once, so a value that holds itself ends the walk (``json.dumps``
    then refuses it as circular) instead of looping.
    """
    stack, seen = [(value, 1)], set()
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list | tuple) or id(item) in seen:
            continue
        if depth > limit:
            return True
        seen.add(id(item))
        stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False
