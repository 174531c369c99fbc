"""What the Try it page can run, and how it turns what a browser sends into a model's input.

Decided from what a version's family knows of it (:meth:`hub.Hub.model_spec`): a
classifier of numbers or images, a text classifier (a transformers sequence classifier), or
a sentence-embedding model (task ``feature-extraction`` with a tokenizer, as a transformers
``AutoModel``: embeddings and their cosine similarities). The model page links to Try it only where :func:`try_mode` finds one.
The conversions themselves live in :mod:`hub.inference`, which the inference server shares.
"""

from __future__ import annotations

from typing import Any

from hub import inference
from hub.errors import InvalidArgumentError
from hub.inference import AS_IS, CLASSIFIER_TASKS, COLOURS, EMBEDDING_TASK, INVERTED, MATCH, cosine_similarities, image_tensor
from hub.inputs import TOKENIZER_FILES

__all__ = ["NUMBERS", "IMAGE", "TEXT_CLASSIFIER", "EMBEDDING", "MODES", "CLASSIFIER_TASKS", "SEQUENCE_CLASSIFIER",
           "COLOURS", "MATCH", "AS_IS", "INVERTED", "try_mode", "image_tensor", "sentence_embeddings", "check_sentences", "cosine_similarities", "MAX_SENTENCES"]

NUMBERS, IMAGE, TEXT_CLASSIFIER, EMBEDDING = "numbers", "image", "text-classification", "embedding"
MODES = (NUMBERS, IMAGE, TEXT_CLASSIFIER, EMBEDDING)
SEQUENCE_CLASSIFIER = "AutoModelForSequenceClassification"
MAX_SENTENCES = 32


def try_mode(version: Any, spec: Any) -> str | None:
    """How the page runs ``version`` (one of :data:`MODES`), or None when it can't.

    Args:
        version: the :class:`hub.ModelVersion`.
        spec: its :class:`hub.ModelSpec` (:meth:`hub.Hub.model_spec`): what it takes and does.
    """
    if spec.takes_text:
        if not any(f.path in TOKENIZER_FILES for f in version.files):
            return None
        return {TEXT_CLASSIFIER: TEXT_CLASSIFIER, EMBEDDING_TASK: EMBEDDING}.get(spec.task)
    inputs = spec.input
    classifier = bool(spec.labels) or version.task in CLASSIFIER_TASKS
    if inputs.kind in (NUMBERS, IMAGE) and inputs.shape and version.architecture and classifier:
        if inputs.kind == IMAGE and len(inputs.shape) != 3:
            return None
        return inputs.kind
    return None


def sentence_embeddings(model: Any, tokenizer: Any, sentences: list[str]) -> Any:
    """One unit-length embedding per sentence (:func:`hub.inference.sentence_embeddings`), as ``[sentences, dimensions]``.

    Raises:
        InvalidArgumentError: fewer than two sentences, or more than :data:`MAX_SENTENCES`.
    """
    check_sentences(sentences)
    return inference.sentence_embeddings(model, tokenizer, sentences)


def check_sentences(sentences: list[str]) -> None:
    """Raise unless there are two to :data:`MAX_SENTENCES` sentences to compare.

    Raises:
        InvalidArgumentError: fewer than two sentences, or more than :data:`MAX_SENTENCES`.
    """
    if len(sentences) < 2:
        raise InvalidArgumentError("enter two or more sentences, one per line, to compare them")
    if len(sentences) > MAX_SENTENCES:
        raise InvalidArgumentError(f"enter at most {MAX_SENTENCES} sentences; you gave {len(sentences)}")
