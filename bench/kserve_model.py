"""The serving benchmark's KServe contender: KServe's Python model server serving the same two models.

Run by bench/bench_serving.py with the Python of a virtual environment of its own (torch,
kserve, safetensors, transformers; never modelhub's), as

    python bench/kserve_model.py --http_port PORT --convnet FOLDER --minilm FOLDER [kserve's options]

- ``digits-cnn``: the same :class:`ConvNet` class as modelhub's ``convnet`` family (its source file,
  ``hub/families/networks.py``, loaded on its own: it needs only torch), built from FOLDER's
  ``config.json`` (the family's arguments, written by the benchmark) and given FOLDER's
  ``model.safetensors`` (the published version's weights) with ``load_state_dict(strict=True)``.
  Input ``input`` FP32 ``[n, 1, 8, 8]``; outputs ``probabilities`` FP32 ``[n, 10]`` (softmax) and
  ``label`` BYTES ``[n]`` (the class names of the config's ``id2label``), as ``hub serve-models``
  answers.
- ``minilm``: ``transformers.AutoModel`` and ``AutoTokenizer`` from FOLDER (the same
  all-MiniLM-L6-v2 files modelhub imported), input ``text`` BYTES ``[n]``, output ``embedding``
  FP32 ``[n, 384]``: mean pooling over the real tokens, then unit length (sentence-transformers'
  ``Pooling`` + ``Normalize``), tokens cut at the model's 512 positions, as ``hub serve-models``.

Each is a ``kserve.Model`` whose ``predict`` takes the v2 ``InferRequest`` and returns an
``InferResponse`` with JSON (not binary) outputs, run under ``torch.inference_mode``; everything
else is KServe's as it comes (``ModelServer().start``: its REST server on uvicorn, its workers,
event loop and logging as the command line sets them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.utils import generate_uuid
from safetensors.torch import load_file

NETWORKS = Path(__file__).resolve().parent.parent / "hub" / "families" / "networks.py"


def _networks():
    """modelhub's network classes, from their source file alone (no modelhub import)."""
    spec = importlib.util.spec_from_file_location("modelhub_networks", NETWORKS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _output(name: str, array: np.ndarray, datatype: str) -> InferOutput:
    output = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
    output.set_data_from_numpy(array, binary_data=False)
    return output


class _FolderModel(Model):
    """A model loaded from a folder when it is made (``load`` sets ``ready``)."""

    def __init__(self, name: str, folder: Path) -> None:
        super().__init__(name)
        self.folder = folder
        self.load()


class DigitsConvNet(_FolderModel):
    """The digits convnet: probabilities and labels for FP32 images."""

    def load(self) -> bool:
        config = json.loads((self.folder / "config.json").read_text())
        names = config.pop("id2label")
        self.labels = np.asarray([names[str(i)] for i in range(len(names))], dtype=object)
        self.model = _networks().ConvNet(**config)
        self.model.load_state_dict(load_file(self.folder / "model.safetensors"), strict=True)
        self.model.eval()
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        images = torch.from_numpy(payload.inputs[0].as_numpy())
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(images).float(), dim=-1).numpy()
        labels = self.labels[probabilities.argmax(-1)]
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name,
                             infer_outputs=[_output("probabilities", probabilities, "FP32"), _output("label", labels, "BYTES")])


class MiniLM(_FolderModel):
    """all-MiniLM-L6-v2: unit-length mean-pooled sentence embeddings for BYTES strings."""

    def load(self) -> bool:
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder)
        self.model = transformers.AutoModel.from_pretrained(self.folder).eval()
        self.max_length = self.model.config.max_position_embeddings
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        texts = [t.decode() if isinstance(t, bytes) else str(t) for t in payload.inputs[0].as_numpy().ravel()]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            tokens = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        embedding = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=[_output("embedding", embedding, "FP32")])


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__.split("\n")[0])
    parser.add_argument("--convnet", type=Path, required=True, help="folder with config.json and model.safetensors")
    parser.add_argument("--minilm", type=Path, required=True, help="the all-MiniLM-L6-v2 folder")
    args, _ = parser.parse_known_args()
    models = [DigitsConvNet("digits-cnn", args.convnet), MiniLM("minilm", args.minilm)]
    print(f"kserve {sys.version.split()[0]} torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
    ModelServer().start(models)


if __name__ == "__main__":
    main()
