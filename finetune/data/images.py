"""Image folders: one subfolder a class (``root/<class name>/*.png|jpg|jpeg``), each image
converted to the model's channels and size, its pixels scaled to the range the model was trained on.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from finetune.data.common import Dataset, Request, Where, check_min_rows
from finetune.data.labels import class_indices
from hub.errors import EmptyDataError, ShapeMismatchError, UnreadableDataError

__all__ = ["IMAGE_SUFFIXES", "class_images", "dataset_from_image_folder", "folder_sha256"]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # the image files a class folder holds (lowercase; any case is read)


def dataset_from_image_folder(root: Path, request: Request) -> Dataset:
    if request.task != "classification":
        raise UnreadableDataError(f"an image folder holds classes, so it can be read only for task='classification', "
                                  f"not {request.task!r}", file=request.source)
    classes = class_images(root)
    _check_image_classes(classes, request.source)
    files = [image for images in classes.values() for image in images]
    labels = [name for name, images in classes.items() for _ in images]
    where = Where(request.source, files=[str(file) for file in files])
    targets, label_names = class_indices(labels, where, request, names_only=True)
    check_min_rows(len(files), request)
    pixels, sha256 = _read_images(root, files, _image_shape(request))
    low, high = request.pixel_range
    if (low, high) != (0.0, 1.0):
        pixels = pixels.mul_(high - low).add_(low)
    return Dataset(pixels, targets, label_names, request.source, sha256)


def class_images(root: Path) -> dict[str, list[Path]]:
    """Image files by class folder name, both sorted; hidden entries and other files left out."""
    folders = sorted(entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    return {
        folder.name: sorted(
            entry for entry in folder.iterdir()
            if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_SUFFIXES
        )
        for folder in folders
    }


def folder_sha256(root: Path) -> str:
    """The sha256 over sorted ``"relpath\\0filesha\\n"`` lines of the images :func:`dataset_from_image_folder`
    reads in ``root`` (relpath with ``/``; other files don't count)."""
    return _lines_sha256([_hash_line(root, image, image.read_bytes()) for images in class_images(root).values()
                          for image in images])


def _check_image_classes(classes: dict[str, list[Path]], source: str) -> None:
    if not classes:
        raise EmptyDataError("holds no class folders; put the images in one subfolder per class, "
                             "e.g. cats/001.png and dogs/001.png", file=source)
    for name, images in classes.items():
        if not images:
            raise EmptyDataError(f"class folder {name!r} holds no .png, .jpg or .jpeg images; add images "
                                 "or remove the folder", file=source)


def _image_shape(request: Request) -> tuple[int, int, int]:
    shape = request.input_shape
    if shape is None or len(shape) != 3 or shape[0] not in (1, 3):
        raise ShapeMismatchError(f"images need input_shape=(channels, height, width) with 1 (grey) or 3 (RGB) channels, "
                                 f"e.g. (1, 8, 8); got {shape!r}", file=request.source)
    return shape  # type: ignore[return-value]


def _read_images(root: Path, files: Sequence[Path], shape: tuple[int, int, int]) -> tuple[torch.Tensor, str]:
    """Images as float32 ``[n, C, H, W]`` in [0, 1], and the folder's sha256."""
    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    arrays, lines = [], []
    for file in files:
        data = file.read_bytes()
        lines.append(_hash_line(root, file, data))
        arrays.append(_decoded_image(data, file, mode, (width, height)))
    pixels = torch.from_numpy(np.stack(arrays)).to(torch.float32).div_(255)
    pixels = pixels.unsqueeze(1) if mode == "L" else pixels.permute(0, 3, 1, 2).contiguous()
    return pixels, _lines_sha256(lines)


def _decoded_image(data: bytes, file: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            resized = image.convert(mode).resize(size, Image.Resampling.BILINEAR)
    except UnidentifiedImageError:
        raise UnreadableDataError("is not a readable image (Pillow does not recognise its contents); replace or "
                                  "remove the file", file=file) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnreadableDataError(f"is not a readable image ({error}); replace or remove the file", file=file) from None
    return np.asarray(resized, dtype=np.uint8)


def _hash_line(root: Path, file: Path, data: bytes) -> str:
    return f"{file.relative_to(root).as_posix()}\0{hashlib.sha256(data).hexdigest()}\n"


def _lines_sha256(lines: list[str]) -> str:
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()
