"""What runs a served version: the PyTorch model (``hub.load``) or its ONNX export in onnxruntime
(``hub.load_export``), behind one interface, :class:`Runtime`.

A runtime knows the version's v2 inputs and outputs (from its :class:`hub.ModelSpec`):

- image and number models take ``input`` FP32 ``[batch, *shape]``; classifiers answer
  ``probabilities`` FP32 ``[batch, classes]`` (the softmax of the logits) and ``label`` BYTES
  ``[batch]`` (the names in ``ModelSpec.labels``, else the index); other models ``output`` FP32.
- text models take ``text`` BYTES ``[batch]`` (the version's tokenizer runs in the server);
  sequence classifiers answer ``probabilities`` and ``label``, encoders ``embedding`` FP32
  ``[batch, dims]``: mean-pooled over the real tokens and of unit length, as sentence-transformers'
  all-MiniLM-L6-v2 (``Pooling`` with mean tokens, then ``Normalize``).

:meth:`Runtime.check` validates one request's tensors (in the event loop: cheap);
:meth:`Runtime.run` runs a batch of checked requests (in the model's worker thread) and splits the
answers back.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hub import inference
from hub.errors import InvalidArgumentError

__all__ = ["Runtime", "TorchRuntime", "OnnxRuntime", "Work", "RUNTIMES", "open_runtime"]

RUNTIMES = ("torch", "onnx")
IMAGE_INPUT, TEXT_INPUT = "input", "text"
MAX_TEXT_CHARS = 100_000  # one string of a text request; the tokenizer cuts to the model's positions anyway


@dataclass(frozen=True)
class Work:
    """One request's checked input: ``key`` (requests of one key batch together), ``rows``, ``data``
    (a float32 array ``[rows, *shape]``, or for text a list of strings)."""

    key: Any
    rows: int
    data: Any


class Runtime:
    """A loaded version, ready to run batches.

    Attributes:
        version: the :class:`hub.ModelVersion`.
        spec: its :class:`hub.ModelSpec`.
        platform: the v2 platform (``"pytorch"``, ``"onnxruntime"``).
        classifier: whether it answers ``probabilities`` and ``label``.
    """

    platform = ""

    def __init__(self, version: Any, spec: Any, tokenizer: Any = None) -> None:
        self.version, self.spec, self.tokenizer = version, spec, tokenizer
        self.text = spec.takes_text
        self.classifier = inference.is_classifier(spec, version.task)
        if not self.text and not spec.input.shape:
            raise InvalidArgumentError(f"{version.ref}: its input has no known shape, so the server can't check requests; "
                                       "publish it with input={'kind': ..., 'shape': [...]}")
        self.input_shape: tuple[int, ...] = () if self.text else tuple(spec.input.shape)
        self.max_length = 512
        self._output_shapes: dict[str, list[int]] = {}

    # --- what it takes and gives -----------------------------------------------------

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The v2 metadata of its inputs."""
        if self.text:
            return [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]
        return [{"name": IMAGE_INPUT, "datatype": "FP32", "shape": [-1, *self.input_shape]}]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The v2 metadata of its outputs (their sizes from a run at load, :meth:`warm_up`)."""
        return [{"name": name, "datatype": "BYTES" if name == "label" else "FP32", "shape": shape}
                for name, shape in self._output_shapes.items()]

    def warm_up(self) -> None:
        """Run one example (the first run of a model is its slowest), learning its outputs' shapes."""
        if self.text:
            work = Work(TEXT_INPUT, 1, ["warm up"])
        else:
            import numpy as np

            work = Work(self.input_shape, 1, np.zeros((1, *self.input_shape), dtype=np.float32))
        answer = self.run([work])[0]
        self._output_shapes = {name: [-1, *array.shape[1:]] for name, array in answer.items()}

    def check(self, inputs: dict[str, tuple[str, Any]], outputs: Sequence[str] | None) -> Work:
        """One request's inputs, checked against what the model takes.

        Raises:
            InvalidArgumentError: a missing or unknown input, the wrong datatype or shape, or an
                unknown output asked for.
        """
        expected = self.inputs[0]
        name = expected["name"]
        unknown = sorted(set(inputs) - {name})
        if name not in inputs:
            raise InvalidArgumentError(f"the request is missing input {name!r} ({expected['datatype']} "
                                       f"{expected['shape']}); it gave {', '.join(map(repr, inputs))}")
        if unknown:
            raise InvalidArgumentError(f"this model takes one input, {name!r}; it has no input {unknown[0]!r}")
        if outputs is not None:
            missing = [o for o in outputs if o not in self._output_shapes]
            if missing:
                raise InvalidArgumentError(f"this model has no output {missing[0]!r}; its outputs are "
                                           f"{', '.join(map(repr, self._output_shapes))}")
        datatype, array = inputs[name]
        if datatype != expected["datatype"]:
            raise InvalidArgumentError(f"input {name!r} must be {expected['datatype']}, not {datatype}")
        if self.text:
            if array.ndim != 1 or not len(array):
                raise InvalidArgumentError(f"input {name!r} must be a list of strings: shape [n], n >= 1, got {list(array.shape)}")
            texts = array.tolist()
            if any(len(text) > MAX_TEXT_CHARS for text in texts):
                raise InvalidArgumentError(f"input {name!r}: a string is longer than {MAX_TEXT_CHARS:,} characters")
            return Work(TEXT_INPUT, len(texts), texts)
        if array.ndim != len(self.input_shape) + 1 or tuple(array.shape[1:]) != self.input_shape or not array.shape[0]:
            raise InvalidArgumentError(f"input {name!r} must have shape {expected['shape']} (a batch of "
                                       f"{' x '.join(map(str, self.input_shape))}), got {list(array.shape)}")
        return Work(self.input_shape, int(array.shape[0]), array)

    # --- running -------------------------------------------------------------------

    def run(self, works: Sequence[Work]) -> list[dict[str, Any]]:
        """Run the works (one key) as one batch; each request's outputs, name -> numpy array."""
        import numpy as np

        if self.text:
            texts = [text for work in works for text in work.data]
            batch = {key: value.numpy() for key, value in inference.tokenized(self.tokenizer, texts, max_length=self.max_length).items()}
            raw = self.forward_text(batch)
            outputs = {"embedding": inference.mean_pooled(raw, batch["attention_mask"])} if not self.classifier else {}
        else:
            raw = self.forward(np.concatenate([work.data for work in works]) if len(works) > 1 else works[0].data)
            outputs = {} if self.classifier else {"output": raw.astype(np.float32, copy=False)}
        if self.classifier:
            probabilities = inference.probabilities(raw).astype(np.float32, copy=False)
            names = np.asarray(inference.label_names(self.spec.labels, probabilities.shape[-1]), dtype=object)
            outputs = {"probabilities": probabilities, "label": names[probabilities.argmax(-1)]}
        answers, start = [], 0
        for work in works:
            answers.append({name: array[start:start + work.rows] for name, array in outputs.items()})
            start += work.rows
        return answers

    def forward(self, batch: Any) -> Any:
        """The model's raw output (logits or values) for a float32 batch, as a numpy array."""
        raise NotImplementedError

    def forward_text(self, batch: dict[str, Any]) -> Any:
        """The model's raw output for a tokenized batch (int64 arrays): logits for a classifier,
        token embeddings ``[rows, positions, dims]`` for an encoder, as a numpy array."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the model (its memory is freed once the last batch is done)."""


class TorchRuntime(Runtime):
    """The PyTorch model, ``hub.load(ref, device="auto")``, run under ``torch.inference_mode``."""

    platform = "pytorch"

    def __init__(self, hub: Any, version: Any, spec: Any, tokenizer: Any = None) -> None:
        super().__init__(version, spec, tokenizer)
        self.model = hub.load(version.ref, device="auto")
        self.device = next(iter(self.model.parameters()), None)
        self.device = self.device.device if self.device is not None else "cpu"
        self.max_length = inference.max_tokens(self.model)

    def forward(self, batch: Any) -> Any:
        import torch

        with torch.inference_mode():
            output = self.model(torch.from_numpy(batch).to(self.device))
        return getattr(output, "logits", output).float().cpu().numpy()

    def forward_text(self, batch: dict[str, Any]) -> Any:
        import torch

        with torch.inference_mode():
            output = self.model(**{key: torch.from_numpy(value).to(self.device) for key, value in batch.items()})
        if self.classifier:
            tokens = output.logits
        else:
            tokens = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        return tokens.float().cpu().numpy()

    def close(self) -> None:
        self.model = None


class OnnxRuntime(Runtime):
    """The version's ONNX export in onnxruntime (``hub.load_export(ref, "onnx")``: the CUDA provider
    where there is one). Its first output is the raw output (logits, or token embeddings)."""

    platform = "onnxruntime"

    def __init__(self, hub: Any, version: Any, spec: Any, tokenizer: Any = None) -> None:
        super().__init__(version, spec, tokenizer)
        hub.exports.export_record(version.ref, "onnx")  # none: ModelNotFoundError naming `hub export REF --format onnx`
        import torch

        self.session = hub.exports.load_export(version.ref, "onnx", threads=torch.get_num_threads())  # the server's --threads
        self._names = [node.name for node in self.session.get_inputs()]
        self._lock = threading.Lock()
        config = (version.config or {}).get("hf_config") or {}
        limit = config.get("max_position_embeddings") if isinstance(config, dict) else None
        self.max_length = limit if isinstance(limit, int) and limit > 0 else 512

    def forward(self, batch: Any) -> Any:
        return self.session.run(None, {self._names[0]: batch})[0]

    def forward_text(self, batch: dict[str, Any]) -> Any:
        feeds = {name: batch[name] if name in batch else _zeros_like(batch["input_ids"]) for name in self._names}
        return self.session.run(None, feeds)[0]

    def close(self) -> None:
        self.session = None


def _zeros_like(ids: Any) -> Any:
    import numpy as np

    return np.zeros_like(ids)


def open_runtime(hub: Any, version: Any, runtime: str) -> Runtime:
    """The version loaded in ``runtime`` (``"torch"`` or ``"onnx"``), warmed up.

    Raises:
        InvalidArgumentError: an unknown runtime, or a model whose input the server can't check.
        ModelNotFoundError: ``onnx`` for a version with no ONNX export (``hub export REF --format onnx``),
            or a text model without a tokenizer.
    """
    if runtime not in RUNTIMES:
        raise InvalidArgumentError(f"--runtime {runtime!r}: pick one of {', '.join(RUNTIMES)}")
    spec = hub.model_spec(version)
    tokenizer = hub.load_tokenizer(version.ref) if spec.takes_text else None
    made = (TorchRuntime if runtime == "torch" else OnnxRuntime)(hub, version, spec, tokenizer)
    made.warm_up()
    return made
