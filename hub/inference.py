"""Turning raw inputs into a model's tensors and its outputs into answers: shared by the web UI's
Try it page and the inference server (:mod:`hub.serving`).

- :func:`image_tensor`: an uploaded PNG or JPEG as a batch of one image in the model's units
  (resized, inverted to match the model's background, cropped to the drawing).
- :func:`tokenized`: strings as a padded batch of token ids for a text model.
- :func:`mean_pooled`: sentence embeddings from token embeddings (sentence-transformers' mean
  pooling over the real tokens, then unit length, as all-MiniLM-L6-v2's ``Normalize`` module does);
  :func:`sentence_embeddings` runs a model and pools.
- :func:`probabilities` and :func:`label_names`: a classifier's softmax and its class names.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from hub.errors import InvalidArgumentError

__all__ = ["MATCH", "AS_IS", "INVERTED", "COLOURS", "image_tensor", "tokenized", "max_tokens", "mean_pooled",
           "sentence_embeddings", "cosine_similarities", "probabilities", "label_names", "is_classifier",
           "CLASSIFIER_TASKS", "EMBEDDING_TASK"]

MATCH, AS_IS, INVERTED = "Match the model", "As uploaded", "Inverted"
COLOURS = (MATCH, AS_IS, INVERTED)
INK_THRESHOLD = 0.25  # how far from the background's brightness (0..1) a pixel is part of the drawing
CLASSIFIER_TASKS = ("classification", "text-classification")
EMBEDDING_TASK = "feature-extraction"  # a model that gives embeddings (a transformers AutoModel)


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

    Returns:
        A float32 tensor ``[1, *shape]``.

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


def max_tokens(model: Any, default: int = 512) -> int:
    """How many token positions a transformers model has (its ``max_position_embeddings``), else ``default``."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else default


def tokenized(tokenizer: Any, texts: Sequence[str], *, max_length: int = 512) -> dict[str, Any]:
    """``texts`` as one batch for a text model: ``input_ids``, ``attention_mask`` (and ``token_type_ids``
    where the tokenizer makes them), int64 tensors ``[len(texts), longest]``, padded, cut to ``max_length``."""
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


def mean_pooled(tokens: Any, attention_mask: Any) -> Any:
    """One unit-length embedding per row: the mean of ``tokens`` ``[rows, positions, dims]`` over the
    positions ``attention_mask`` marks real (sentence-transformers' mean pooling, then its ``Normalize``).
    Works on torch tensors and on numpy arrays (the onnx runtime's outputs) alike."""
    import numpy as np

    if isinstance(tokens, np.ndarray):
        mask = np.asarray(attention_mask, dtype=np.float32)[..., None]
        pooled = (tokens.astype(np.float32) * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)
    import torch

    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
    pooled = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def sentence_embeddings(model: Any, tokenizer: Any, sentences: Sequence[str]) -> Any:
    """One unit-length embedding per sentence (:func:`mean_pooled` of the model's token embeddings),
    as a float tensor ``[sentences, dimensions]``."""
    import torch

    inputs = tokenized(tokenizer, sentences, max_length=max_tokens(model))
    with torch.inference_mode():
        output = model(**inputs)
    tokens = (output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]).float()
    return mean_pooled(tokens, inputs["attention_mask"])


def cosine_similarities(embeddings: Any) -> Any:
    """Every pair's cosine similarity, ``[n, n]``, of unit-length embeddings."""
    return embeddings @ embeddings.T


def probabilities(output: Any) -> Any:
    """A classifier's class probabilities, ``[rows, classes]`` float32: the softmax of its logits
    (``output.logits`` of a transformers model, else the output itself; torch or numpy)."""
    import numpy as np

    logits = getattr(output, "logits", output)
    if isinstance(logits, np.ndarray):
        shifted = np.exp(logits.astype(np.float32) - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    import torch

    return torch.softmax(logits.float(), dim=-1)


def label_names(labels: Sequence[str] | None, classes: int) -> list[str]:
    """The name of each of ``classes`` outputs: ``labels`` by index (a model's ``ModelSpec.labels``), the
    index as text where it names none."""
    known = list(labels or ())
    return [known[i] if i < len(known) else str(i) for i in range(classes)]


def is_classifier(spec: Any, task: str | None = None) -> bool:
    """Whether a model (its :class:`hub.ModelSpec`, and its version's ``task``) gives class scores."""
    return bool(spec.labels) or (spec.task or task) in CLASSIFIER_TASKS
