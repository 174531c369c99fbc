"""Write docs/API.md from the docstrings of the public API (``__all__`` of ``hub`` and ``finetune``).

    .venv/bin/python docs/build_api.py          # rewrites docs/API.md

``tests/test_docs.py`` fails when API.md is not what this script writes, so the reference
can't drift from the code.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

API = Path(__file__).resolve().parent / "API.md"


def _signature(obj: object, name: str) -> str:
    try:
        return f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name


def _doc(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip() or "(no docstring)"


def _entry(title: str, obj: object, level: str = "###") -> list[str]:
    return [f"{level} `{_signature(obj, title)}`", "", _doc(obj), ""]


def _class(name: str, cls: type) -> list[str]:
    lines = [f"### class `{name}`", "", _doc(cls), ""]
    if dataclasses.is_dataclass(cls):
        fields = ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls))
        lines += [f"Fields: {fields}.", ""]
    for attribute, member in sorted(vars(cls).items()):
        if attribute.startswith("_") or not callable(member) and not isinstance(member, (classmethod, property)):
            continue
        function = member.__func__ if isinstance(member, classmethod) else member
        if isinstance(member, property):
            lines += [f"#### `{name}.{attribute}` (property)", "", _doc(member), ""]
        else:
            lines += _entry(f"{name}.{attribute}", function, "####")
    return lines


def render() -> str:
    """The whole reference, as Markdown."""
    import finetune
    import hub
    from hub import errors

    lines = ["# API reference", "", "Generated from the docstrings by `docs/build_api.py`; do not edit by hand.", "",
             "## `hub`", "", _doc(hub), "",
             "The module functions below call the same methods of `hub.default_hub()` "
             "(a `Hub` built from `HUB_HOME` and `HUB_REGISTRY_URL`).", ""]
    lines += _class("Hub", hub.Hub)
    for name in ("create", "register_architecture", "list_architectures", "parse_reference"):
        lines += _entry(f"hub.{name}", getattr(hub, name))
    for name in ("ModelVersion", "ModelSummary", "FileEntry", "AliasChange", "VerifyReport", "GcReport", "InputSpec", "Reference"):
        lines += _class(name, getattr(hub, name))
    lines += ["## Errors (`hub.errors`)", "", _doc(errors), ""]
    for name in errors.__all__:
        cls = getattr(errors, name)
        bases = ", ".join(b.__name__ for b in cls.__bases__)
        lines += [f"- `{name}({bases})`: {_doc(cls).splitlines()[0]}"]
    lines += ["", "## `finetune`", "", _doc(finetune), ""]
    for name in ("submit", "validate", "run", "get_job", "list_jobs", "cancel", "job_events", "job_metrics", "work"):
        lines += _entry(f"finetune.{name}", getattr(finetune, name))
    for name in ("FinetuneConfig", "Job", "JobEvent", "JobMetric"):
        lines += _class(name, getattr(finetune, name))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    API.write_text(render())
    print(f"wrote {API}")
