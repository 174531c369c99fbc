"""CUDA checks and figures, for a machine with an NVIDIA GPU (run by hand; CI has none).

1. ``hub.load(..., device="cuda")`` of a ~1 GB model: the weights go straight to the
   GPU, equal to the CPU copy, and the time against the floor (safetensors
   ``load_file(device="cuda")`` + meta build + ``load_state_dict(assign=True)``).
2. A BERT model imported with ``hub.import_hf``, loaded on CUDA: same outputs as on CPU.
3. ``finetune.run`` on CUDA (float32 and bf16 autocast): the digits convnet's accuracy and time.
4. ``torchrun`` with the nccl backend (one process a GPU): a data-parallel job publishes.

Usage: ``PYTHONPATH=. python bench/device_check.py OUT_FOLDER`` (writes device_check.json there).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, value


def check_load(instance, report: dict) -> None:
    import hub
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = hub.create("mlp", in_features=4096, hidden=[8192] * 4, out_features=1000)
    version = instance.publish(model, "gpu/mlp-1gb")
    cpu_state = model.state_dict()
    blob = str(instance.blobs.path(version.file("model.safetensors").sha256))

    def floor():
        state = load_file(blob, device="cuda")
        with torch.device("meta"):
            module = hub.create("mlp", **{k: v for k, v in version.config.items()})
        module.load_state_dict(state, assign=True)
        return module

    hub_times, floor_times = [], []
    for round_ in range(7):
        for name, fn, times in (("hub", lambda: instance.load(version.ref, device="cuda"), hub_times), ("floor", floor, floor_times)):
            seconds, loaded = timed(fn)
            if round_:
                times.append(seconds)
            if name == "hub" and round_ == 0:
                state = loaded.state_dict()
                report["load_on_cuda"] = all(t.is_cuda for t in state.values())
                report["load_equal_to_cpu"] = all(torch.equal(state[k].cpu(), cpu_state[k]) for k in cpu_state)
            del loaded
            torch.cuda.empty_cache()
    report["load_1gb_hub_ms"] = statistics.median(hub_times) * 1000
    report["load_1gb_floor_ms"] = statistics.median(floor_times) * 1000
    report["load_1gb_ratio"] = report["load_1gb_hub_ms"] / report["load_1gb_floor_ms"]
    report["weights_gb"] = version.size_bytes / 1e9


def check_bert(instance, report: dict, folder: Path) -> None:
    import transformers

    config = transformers.BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, vocab_size=8000)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder / "bert")
    version = instance.import_hf(str(folder / "bert"), "gpu/bert")
    ids = torch.randint(0, 8000, (8, 32))
    with torch.no_grad():
        on_cpu = instance.load(version.ref, device="cpu")(input_ids=ids).last_hidden_state
        on_gpu = instance.load(version.ref, device="cuda")(input_ids=ids.cuda()).last_hidden_state.cpu()
    report["bert_cuda_max_abs_diff"] = float((on_cpu - on_gpu).abs().max())


def check_finetune(instance, report: dict, folder: Path) -> None:
    import finetune
    import hub
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = folder / "digits.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"pixel_{i}" for i in range(64)] + ["label"])
        writer.writerows([[int(v) for v in x] + [int(y)] for x, y in zip(digits.data, digits.target)])
    torch.manual_seed(0)
    instance.publish(hub.create("convnet", in_channels=1, image_size=8, num_classes=10), "gpu/digits-cnn")
    for bf16 in (False, True):
        start = time.perf_counter()
        version = finetune.run("gpu/digits-cnn", path, output=f"gpu/digits-ft{'-bf16' if bf16 else ''}", hub=instance,
                               config={"epochs": 10, "learning_rate": 3e-3, "device": "cuda", "bf16": bf16})
        key = "finetune_cuda_bf16" if bf16 else "finetune_cuda"
        report[key] = {"accuracy": version.metrics["accuracy"], "seconds": time.perf_counter() - start}


def check_nccl(report: dict, folder: Path, home: str) -> None:
    args = ["gpu/digits-cnn", str(folder / "digits.csv"), "--output", "gpu/digits-nccl", "--epochs", "2"]
    env = {**os.environ, "HUB_HOME": home, "FINETUNE_RUN_ARGS": json.dumps(args)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(torch.cuda.device_count()),
               "-m", "finetune.distributed"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    report["nccl_returncode"] = result.returncode
    report["nccl_stdout"] = result.stdout[-500:]
    report["nccl_stderr"] = result.stderr[-1500:]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    report: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count()}
    import hub

    with tempfile.TemporaryDirectory() as home:
        os.environ["HUB_HOME"] = home
        folder = Path(home) / "work"
        folder.mkdir()
        instance = hub.Hub(home=home)
        for name, check in (("load", lambda: check_load(instance, report)), ("bert", lambda: check_bert(instance, report, folder)),
                            ("finetune", lambda: check_finetune(instance, report, folder)), ("nccl", lambda: check_nccl(report, folder, home))):
            start = time.perf_counter()
            try:
                check()
            except Exception as exc:  # keep going: every check reports
                report[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
            report[f"{name}_seconds"] = time.perf_counter() - start
            print(name, json.dumps({k: v for k, v in report.items() if not k.startswith("nccl_std")}, default=str), flush=True)
    (out / "device_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
