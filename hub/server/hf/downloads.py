"""The Hugging Face download routes: resolve (``HEAD|GET /{repo_id}/resolve/{revision}/{path}``), model
info, tree, refs, whoami (docs/HF.md)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(tags=["huggingface"])
