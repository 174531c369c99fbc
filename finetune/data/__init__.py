"""Training data for fine-tuning jobs: read a file or folder, check every value, return tensors.

:func:`load_dataset` reads

* a table: ``.csv`` (UTF-8, header row), ``.jsonl`` / ``.ndjson`` (one JSON
  object a line) or ``.parquet`` (needs ``pyarrow``) (:mod:`finetune.data.tables`);
* arrays ``x`` and ``y`` in ``.npz`` (never unpickled) or ``.safetensors`` (:mod:`finetune.data.arrays`);
* a folder of images in class subfolders (``root/<class name>/*.png|jpg|jpeg``) (:mod:`finetune.data.images`),

checks it (empty data, missing columns, values that are not finite numbers,
empty texts, labels the model can't hold (:mod:`finetune.data.labels`), too few rows,
features that don't fit the model's input) and returns a :class:`Dataset`. Every problem
raises a :class:`hub.errors.DataError` subclass naming the file, row and column, with a
message that says what to do. :func:`split_dataset` holds out a seeded, stratified
validation set (:mod:`finetune.data.splits`). Nothing here writes anything.

What the formats share (the :class:`Dataset`, the :class:`DataSpec`, the checks every format
makes) is in :mod:`finetune.data.common`; :mod:`finetune.data.loading` picks the reader.
"""

from finetune.data.common import DataSpec, Dataset
from finetune.data.images import IMAGE_SUFFIXES
from finetune.data.loading import file_sha256, load_dataset
from finetune.data.splits import split_dataset
from finetune.data.tables import MAX_COLUMN_NAME_CHARS, MAX_COLUMNS, MAX_CSV_FIELD_CHARS, check_csv_header

__all__ = ["DataSpec", "Dataset", "load_dataset", "split_dataset", "file_sha256", "check_csv_header",
           "MAX_COLUMNS", "MAX_CSV_FIELD_CHARS", "MAX_COLUMN_NAME_CHARS", "IMAGE_SUFFIXES"]
