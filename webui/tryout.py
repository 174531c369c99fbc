"""What the Try it page can run, and how it turns what a browser sends into a model's input.

Decided from what a version's family knows of it (:meth:`hub.Hub.model_spec`): a
classifier of numbers or images, a text classifier (a transformers sequence classifier), or
a sentence-embedding model (task ``feature-extraction`` with a tokenizer, as a transformers
``AutoModel``: embeddings and their cosine similarities). The model page links to Try it only where :func:`try_mode` finds one.
"""

from __future__ import annotations

import io
from typing import Any

from hub.errors import InvalidArgumentError
from hub.inputs import TOKENIZER_FILES

__all__ = ["NUMBERS", "IMAGE", "TEXT_CLASSIFIER", "EMBEDDING", "MODES", "CLASSIFIER_TASKS", "SEQUENCE_CLASSIFIER",
           "COLOURS", "try_mode", "image_tensor", "sentence_embeddings", "cosine_similarities", "MAX_SENTENCES"]

NUMBERS, IMAGE, TEXT_CLASSIFIER, EMBEDDING = "numbers", "image", "text-classification", "embedding"
MODES = (NUMBERS, IMAGE, TEXT_CLASSIFIER, EMBEDDING)
CLASSIFIER_TASKS = ("classification", "text-classification")
SEQUENCE_CLASSIFIER = "AutoModelForSequenceClassification"
EMBEDDING_TASK = "feature-extraction"  # a model that gives embeddings (a transformers AutoModel)
MATCH, AS_IS, INVERTED = "Match the model", "As uploaded", "Inverted"
COLOURS = (MATCH, AS_IS, INVERTED)
MAX_SENTENCES = 32
INK_THRESHOLD = 0.25  # how far from the background's brightness (0..1) a pixel is part of the drawing


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


def _crop_to_drawing(grey: Any, background: float) -> tuple[int, int, int, int] | None:
    """The square around the strokes of a drawing (pixels far from the background), centred; None when blank."""
    import numpy as np

    ys, xs = np.nonzero(np.abs(grey - background) > INK_THRESHOLD)
    if not len(ys):
        return None
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(bottom - top, right - left)
    middle_y, middle_x = (top + bottom) / 2, (left + right) / 2
    return (round(middle_x - side / 2), round(middle_y - side / 2), round(middle_x + side / 2), round(middle_y + side / 2))


def image_tensor(name: str, data: bytes, shape: tuple[int, ...], value_range: tuple[float, float] = (0.0, 1.0), *,
                 colours: str = AS_IS, background: float | None = None, crop: bool = False) -> Any:
    """An image as a batch of one ``[channels, height, width]`` input in the model's units.

    Args:
        name, data: the uploaded file.
        shape: the model's input shape (1 or 3 channels).
        value_range: what a black and a white pixel become (the model's recorded range).
        colours: :data:`MATCH` inverts the image when its background (the median of its edge)
            is on the other side of grey from the model's ``background``; :data:`INVERTED`
            always, :data:`AS_IS` never.
        background: the value of an empty pixel in the model's units (None: unknown).
        crop: cut the image to the square around its strokes first (a drawing on a blank
            ground), as digit data sets frame their digits.

    Raises:
        InvalidArgumentError: not a readable image, a model that takes neither 1 nor 3 channels,
            or :data:`MATCH` without a known background.
    """
    import numpy as np
    import torch
    from PIL import Image

    channels, height, width = shape
    if channels not in (1, 3):
        raise InvalidArgumentError(f"the model takes {channels} channels, not a greyscale or RGB image; enter its numbers instead")
    low, high = value_range
    try:
        with Image.open(io.BytesIO(data)) as image:
            picture = image.convert("L" if channels == 1 else "RGB")
            picture.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise InvalidArgumentError(f"{name} is not a readable PNG or JPEG image ({error})") from None
    grey = np.asarray(picture.convert("L"), dtype=np.float32) / 255
    edge = float(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))
    if colours == MATCH and background is None:
        raise InvalidArgumentError("the model records no background colour to match; choose 'As uploaded' or 'Inverted'")
    invert = colours == INVERTED or (colours == MATCH and abs(edge - (background - low) / (high - low)) > 0.5)
    box = _crop_to_drawing(grey, edge) if crop else None
    if invert:
        picture = Image.eval(picture, lambda value: 255 - value)
    if box is not None:  # outside the image is the (now) background: pad with it
        fill = round((1 - edge if invert else edge) * 255)
        framed = Image.new(picture.mode, (box[2] - box[0], box[3] - box[1]), fill if channels == 1 else (fill,) * 3)
        framed.paste(picture, (-box[0], -box[1]))
        picture = framed
    resized = picture.resize((width, height), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255 * (high - low) + low)
    return (pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1)).unsqueeze(0)


def sentence_embeddings(model: Any, tokenizer: Any, sentences: list[str]) -> Any:
    """One unit-length embedding per sentence: the mean of the model's token embeddings over the
    real tokens (sentence-transformers' mean pooling), as ``[sentences, dimensions]``.

    Raises:
        InvalidArgumentError: fewer than two sentences, or more than :data:`MAX_SENTENCES`.
    """
    import torch

    if len(sentences) < 2:
        raise InvalidArgumentError("enter two or more sentences, one per line, to compare them")
    if len(sentences) > MAX_SENTENCES:
        raise InvalidArgumentError(f"enter at most {MAX_SENTENCES} sentences; you gave {len(sentences)}")
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", 512)
    inputs = tokenizer(sentences, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    with torch.inference_mode():
        output = model(**inputs)
    tokens = (output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]).float()
    mask = inputs["attention_mask"].unsqueeze(-1).to(tokens.dtype)
    pooled = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def cosine_similarities(embeddings: Any) -> Any:
    """Every pair's cosine similarity, ``[n, n]``, of unit-length embeddings."""
    return embeddings @ embeddings.T
