"""Server benchmark: ``hub serve`` over HTTP against nginx, and against the same work done locally.

One ``hub serve`` process (``--workers 1``, the default; SQLite registry) runs on a free loopback
port over a temporary hub; the benchmark process is its client (``hub.remote.RemoteHub`` with a
``read`` or ``write`` token of user ``alice``, who owns the private namespace ``alice`` where every
model goes) and also opens the server's hub directly (``Hub(home, url)``) for the local baselines.
A ~1 GB ``mlp`` (five square float32 layers, built with ``hub.create``, ~250M parameters) is
published into it locally first. Contenders alternate round by round (``common.alternate``, one
unmeasured warm-up round each), medians are reported.

Figures:

(a) blob download throughput: ``curl -s -o /dev/null`` of the model's 1 GB blob from
    ``GET /api/v1/blobs/{sha256}`` (with the read token), against Debian's nginx serving the same
    file from the store's ``blobs`` folder (its own instance: a generated config in a temporary
    folder, ``daemon off; master_process off``, ``sendfile on`` and ``tcp_nopush on`` as in
    Debian's nginx.conf, ``access_log off``, one worker, a free loopback port). The same client
    for all; GB/s from curl's ``time_total``; the page cache is warm.  target hub >= 0.8x nginx
    A second nginx with ``sendfile off; output_buffers 1 4m`` runs alongside: over loopback it is
    the faster nginx on this machine, so the table shows hub against both.
(b) remote ``load(name:N, device="cpu")`` plus one pass over the weights (``t.sum()`` of every
    tensor), against the local ``Hub(home, url).load`` + pass on the server's own hub:
    cold: a new ``RemoteHub`` with a new, empty cache folder each round (the download is in the
    time) against a new local ``Hub`` each round;               target <= 1.5x
    the same again with the server's blob file dropped from the page cache before each load
    (``posix_fadvise(DONTNEED)``), so both read it from the disk;  target <= 1.5x
    warm: the same ``RemoteHub``, its cache filled, against the same local ``Hub`` (3x the rounds);
    the note gives the requests a warm load sent (none expected).  target <= 1.1x
(c) publishing a fresh random state dict of the same size (16 float32 tensors, new seed each
    round, made before the clock starts) with ``RemoteHub.publish`` (a new cache folder each
    round; the version is built in the cache, then uploaded) against ``Hub(home, url).publish``
    of another fresh one into the server's hub; throughput ratio remote / local. After every
    round its version is deleted and its blobs collected (``gc``), and the client cache removed,
    so the disk holds one model at a time.                      target >= 0.8x
(d) one page of ``GET /api/v1/models?limit=50`` on a warm keep-alive connection (``httpx``), and
    ``RemoteHub.list_models()`` (``hub list`` over HTTP: one such page), anonymous and with a
    read token, on a copy of bench_registry's cached registry (10,000 models x 10 versions), served
    with ``HUB_DEFAULT_VISIBILITY=public``; median over ``--calls`` calls after 10 unmeasured ones.
    A request's time includes HTTP both ways: an upper bound of the server's time. Baseline: the
    local in-process ``Hub.list_models(limit=50)`` on the same registry.   target < 50 ms
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import hub
from bench_load import mlp_config
from bench_registry import cached_registry
from common import BENCH_DIR, GB, MB, Row, alternate, drop_file_cache, median_call_time, print_table, ratio_row, temp_dir, timed
from hub.remote import RemoteHub
from load_child import weight_pass

sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
from server_process import Server, start_server  # noqa: E402  (the tests' helper: hub serve on a free port)

BENCH = "server"
NGINX = "/usr/sbin/nginx"
PAGE = 50
WARM_FACTOR = 3  # warm load rounds per measured round of the others
USER = "alice"  # owns namespace alice (private), where every model goes
MODEL = f"{USER}/mlp"
NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    {sending}
    default_type application/octet-stream;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""
SENDFILE = "sendfile on;\n    tcp_nopush on;"  # Debian's nginx.conf
BUFFERED = "sendfile off;\n    output_buffers 1 4m;"  # faster over loopback here: read() into 4 MB, write()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g} s")


@contextlib.contextmanager
def nginx(root: Path, folder: Path, sending: str = SENDFILE) -> Iterator[str]:
    """Debian's nginx serving the files of ``root`` on a free loopback port, as a child process; its URL.

    Args:
        root: the folder served (``/NAME`` is ``root/NAME``).
        folder: for its config, pid file, error log and temporary files.
        sending: how it sends files (:data:`SENDFILE` or :data:`BUFFERED`).
    """
    port = _free_port()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(folder=folder, port=port, root=root, sending=sending))
    process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, f"nginx (its log: {folder / 'error.log'})")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def curl_seconds(url: str, size: int, headers: dict[str, str] | None = None) -> dict[str, float]:
    """One ``curl -s -o /dev/null`` of ``url``: curl's own transfer time (``time_total``), checked for a 200 of ``size`` bytes."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}"]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    code, got, seconds = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout.split()
    if code != "200" or int(got) != size:
        raise RuntimeError(f"curl {url}: HTTP {code}, {got} bytes; expected 200 and {size} bytes")
    return {"s": float(seconds)}


def at_least_row(figure: str, hub_value: float, baseline: float, unit: str, minimum: float, baseline_name: str,
                 note: str = "") -> Row:
    """A row whose ratio ``hub / baseline`` (a throughput) passes when it is at least ``minimum``."""
    ratio = hub_value / baseline if baseline else 0.0
    return Row(BENCH, figure, hub_value, baseline, unit, ratio, f">= {minimum:g}x", ratio >= minimum, baseline_name, note)


TENSORS = 16


def state_bytes(total_mb: int) -> int:
    """The bytes of weights in :func:`random_state` ``(total_mb, ...)``."""
    return total_mb * MB // 4 // TENSORS * 4 * TENSORS


def random_state(total_mb: int, seed: int, tensors: int = TENSORS) -> dict[str, torch.Tensor]:
    """``tensors`` random float32 tensors of about ``total_mb`` MB together, different for every ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    numel = total_mb * MB // 4 // tensors
    return {f"layer{i:02d}.weight": torch.randn(numel, generator=generator) for i in range(tensors)}


class Setup:
    """The server under test, its tokens, and the published model (see the module docstring)."""

    def __init__(self, folder: Path, size_mb: float, log: Callable[[str], None]) -> None:
        from hub.access import Access

        self.folder = folder
        self.home = folder / "server"
        self.url = f"sqlite:///{self.home / 'registry.db'}"
        self.server: Server = start_server(self.home, self.url)
        self.local = hub.Hub(self.home, self.url)
        try:
            access = Access(self.local.db)
            self.write = access.create_token(USER, "write")[0]
            self.read = access.create_token(USER, "read")[0]
            access.create_namespace(USER, owners=[USER])
            log(f"[server] publishing a ~{size_mb:g} MB mlp into the server's hub")
            self.config = mlp_config(size_mb)
            module = hub.create("mlp", **self.config)
            self.weight_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
            version = self.local.publish(module, MODEL)
        except BaseException:
            self.close()
            raise
        del module
        gc.collect()
        self.ref = version.ref  # name:N, pinned
        self.blob = version.file("model.safetensors")
        self.seed = 1

    def remote(self, token: str | None, home: Path) -> RemoteHub:
        return RemoteHub(self.server.url, token, home=home)

    def close(self) -> None:
        self.local.close()
        self.server.stop()


# --- (a) blob download ---------------------------------------------------------------


def blob_download(setup: Setup, repeats: int) -> list[Row]:
    digest, size = setup.blob.sha256, setup.blob.size
    root = setup.local.blobs.path(digest).parent
    with contextlib.ExitStack() as stack:
        plain = stack.enter_context(nginx(root, stack.enter_context(temp_dir("hubbench-nginx-", str(setup.folder)))))
        buffered = stack.enter_context(nginx(root, stack.enter_context(temp_dir("hubbench-nginx-", str(setup.folder))), BUFFERED))
        medians = alternate({
            "hub": lambda: curl_seconds(f"{setup.server.url}/api/v1/blobs/{digest}", size, {"Authorization": f"Bearer {setup.read}"}),
            "nginx": lambda: curl_seconds(f"{plain}/{digest}", size),
            "nginx buffered": lambda: curl_seconds(f"{buffered}/{digest}", size),
        }, repeats)
    gbps = {name: size / timing["s"] / GB for name, timing in medians.items()}
    figure = f"(a) blob download, {size / GB:.2f} GB (curl)"
    return [
        at_least_row(figure, gbps["hub"], gbps["nginx"], "GB/s", 0.8, "nginx 1.22, sendfile",
                     "hub serve --workers 1 (the default); nginx as Debian configures it: sendfile on, tcp_nopush on; "
                     "warm page cache; curl's time_total, median"),
        at_least_row(f"{figure}, vs nginx buffered", gbps["hub"], gbps["nginx buffered"], "GB/s", 0.8, "nginx, 4 MB buffers",
                     "nginx with sendfile off, output_buffers 1 4m: the faster nginx over loopback on this machine "
                     "(sendfile's 2 MB chunks to a loopback socket are slower here)"),
    ]


# --- (b) remote load -----------------------------------------------------------------


def load_pass(instance: Any, ref: str) -> dict[str, float]:
    """Seconds of one ``load(ref, device="cpu")`` and of that load plus a pass over every weight."""
    load_s, module = timed(lambda: instance.load(ref, device="cpu"))
    pass_s, _ = timed(lambda: weight_pass(module))
    module = None  # frees the weights
    gc.collect()
    return {"load": load_s, "load_pass": load_s + pass_s}


def _drop(setup: Setup, drop: bool) -> None:
    if drop:
        drop_file_cache(setup.local.blobs.path(setup.blob.sha256))


def remote_cold(setup: Setup, drop: bool = False) -> dict[str, float]:
    _drop(setup, drop)
    with temp_dir("hubbench-cache-", str(setup.folder)) as cache:
        remote = setup.remote(setup.read, cache)
        try:
            return load_pass(remote, setup.ref)
        finally:
            remote.close()


def local_cold(setup: Setup, drop: bool = False) -> dict[str, float]:
    _drop(setup, drop)
    local = hub.Hub(setup.home, setup.url)
    try:
        return load_pass(local, setup.ref)
    finally:
        local.close()


def remote_load(setup: Setup, repeats: int, log: Callable[[str], None]) -> list[Row]:
    log(f"[server] (b) {repeats} x cold remote load + pass (new cache) / new local Hub load + pass")
    cold = alternate({"remote": lambda: remote_cold(setup), "local": lambda: local_cold(setup)}, repeats)
    log(f"[server] (b) {repeats} x the same, the server's blob dropped from the page cache before each")
    disk = alternate({"remote": lambda: remote_cold(setup, True), "local": lambda: local_cold(setup, True)}, repeats)
    warm_repeats = WARM_FACTOR * repeats  # tens of milliseconds each, and noisy: more rounds
    log(f"[server] (b) {warm_repeats} x warm remote load + pass (cache filled) / same local Hub")
    with temp_dir("hubbench-cache-", str(setup.folder)) as cache:
        remote = setup.remote(setup.read, cache)
        local = hub.Hub(setup.home, setup.url)
        try:
            load_pass(remote, setup.ref)  # fills the cache
            local.info(setup.ref)
            before = remote.client.requests
            warm = alternate({"remote": lambda: load_pass(remote, setup.ref), "local": lambda: load_pass(local, setup.ref)},
                             warm_repeats)
            requests = remote.client.requests - before
        finally:
            remote.close()
            local.close()
    label = f"(b) load {setup.ref} ({setup.weight_bytes / GB:.2f} GB)"
    cold_gbps = setup.weight_bytes / cold["remote"]["load_pass"] / GB
    return [
        ratio_row(BENCH, f"{label} + pass, cold cache", cold["remote"]["load_pass"], cold["local"]["load_pass"], "s", limit=1.5,
                  baseline_name="local Hub", note=f"new RemoteHub + empty cache each round, download included: "
                                                  f"{cold_gbps:.2f} GB/s; load alone {cold['remote']['load']:.2f} s vs "
                                                  f"{cold['local']['load']:.3f} s local"),
        ratio_row(BENCH, f"{label} + pass, cold cache, blob off the page cache", disk["remote"]["load_pass"],
                  disk["local"]["load_pass"], "s", limit=1.5, baseline_name="local Hub",
                  note="as above, the server's blob file dropped from the page cache before each load (posix_fadvise), "
                       f"so both read it from disk: local {setup.weight_bytes / GB / disk['local']['load_pass']:.2f} GB/s"),
        ratio_row(BENCH, f"{label} + pass, warm cache", warm["remote"]["load_pass"], warm["local"]["load_pass"], "s", limit=1.1,
                  baseline_name="local Hub", note=f"same RemoteHub, cache filled: {requests} request(s) in "
                                                  f"{warm_repeats + 1} warm loads (median of {warm_repeats}); load alone "
                                                  f"{warm['remote']['load'] * 1000:.1f} ms vs {warm['local']['load'] * 1000:.1f} ms local"),
    ]


# --- (c) publish ---------------------------------------------------------------------


def _next_state(setup: Setup, total_mb: int) -> dict[str, torch.Tensor]:
    setup.seed += 1
    return random_state(total_mb, setup.seed)


def _forget(setup: Setup, ref: str) -> None:
    """Delete the version and collect its blobs from the server's store."""
    setup.local.delete_version(ref)
    setup.local.gc(min_age_seconds=0)


def remote_publish(setup: Setup, total_mb: int) -> dict[str, float]:
    state = _next_state(setup, total_mb)
    with temp_dir("hubbench-cache-", str(setup.folder)) as cache:
        remote = setup.remote(setup.write, cache)
        try:
            seconds, version = timed(lambda: remote.publish(state, f"{USER}/remote-publish"))
        finally:
            remote.close()
    state = None  # frees the weights
    _forget(setup, version.ref)
    return {"s": seconds}


def local_publish(setup: Setup, total_mb: int) -> dict[str, float]:
    state = _next_state(setup, total_mb)
    seconds, version = timed(lambda: setup.local.publish(state, f"{USER}/local-publish"))
    state = None  # frees the weights
    _forget(setup, version.ref)
    return {"s": seconds}


def publishing(setup: Setup, total_mb: int, repeats: int, log: Callable[[str], None]) -> list[Row]:
    log(f"[server] (c) {repeats} x remote publish / local publish of a fresh {total_mb} MB state dict")
    medians = alternate({"remote": lambda: remote_publish(setup, total_mb), "local": lambda: local_publish(setup, total_mb)},
                        repeats)
    nbytes = state_bytes(total_mb)
    remote_gbps, local_gbps = nbytes / medians["remote"]["s"] / GB, nbytes / medians["local"]["s"] / GB
    return [at_least_row(f"(c) publish {nbytes / GB:.2f} GB state dict: throughput", remote_gbps, local_gbps, "GB/s", 0.8,
                         "local publish", f"remote {medians['remote']['s']:.2f} s (the same local build into its cache, "
                                          f"then the upload), local {medians['local']['s']:.2f} s; a fresh random state "
                                          "dict each round, made before the clock starts")]


# --- (d) listing ---------------------------------------------------------------------


def page_timings(endpoint: str, token: str | None, models: int, calls: int, cache: Path) -> dict[str, float]:
    """Median seconds of one page of the model list as ``GET /api/v1/models`` (keep-alive ``httpx``) and as
    ``RemoteHub.list_models()``, with ``token`` (None: anonymous); and the page's bytes of JSON."""
    import httpx

    who = "with a token" if token else "anonymously"
    with httpx.Client(base_url=endpoint, headers={"Authorization": f"Bearer {token}"} if token else {}, trust_env=False) as client:
        def page() -> bytes:
            answer = client.get("/api/v1/models", params={"limit": PAGE})
            answer.raise_for_status()
            body = answer.json()
            if len(body["models"]) != PAGE or body["total"] != models:
                raise RuntimeError(f"GET /api/v1/models {who}: {len(body['models'])} models of {body['total']}, "
                                   f"expected {PAGE} of {models}")
            return answer.content

        size = len(page())
        request_s = median_call_time(page, calls)
    remote = RemoteHub(endpoint, token, home=cache)
    try:
        if len(remote.list_models()) != PAGE:
            raise RuntimeError(f"RemoteHub.list_models() {who} did not list {PAGE} models")
        list_s = median_call_time(remote.list_models, calls)
    finally:
        remote.close()
    return {"request": request_s, "list_models": list_s, "bytes": size}


def listing(models: int, versions: int, calls: int, rebuild: bool, tmp_parent: str | None,
            log: Callable[[str], None]) -> list[Row]:
    from hub.access import Access

    cached, _ = cached_registry(models, versions, rebuild, log)
    rows = []
    with temp_dir("hubbench-server-", tmp_parent) as folder:
        home = folder / "registry"
        shutil.copytree(cached, home)  # the server and the tokens write into it: a copy, the cache stays as built
        url = f"sqlite:///{home / 'registry.db'}"
        log(f"[server] (d) {models} models x {versions} versions: {calls} x one page of {PAGE}, anonymous / read token")
        server = start_server(home, url, env={"HUB_DEFAULT_VISIBILITY": "public"})
        try:
            local = hub.Hub(home, url)
            try:
                token = Access(local.db).create_token(USER, "read")[0]
                baseline = median_call_time(lambda: local.list_models(limit=PAGE), calls)
            finally:
                local.close()
            for who, auth in (("anonymous", None), ("read token", token)):
                with temp_dir("hubbench-cache-", str(folder)) as cache:
                    timing = page_timings(server.url, auth, models, calls, cache)
                note = (f"{models} models x {versions} versions; keep-alive httpx, median of {calls}; "
                        f"{timing['bytes'] / 1000:.0f} kB of JSON") if auth is None else ""
                rows.append(Row(BENCH, f"(d) GET /api/v1/models?limit={PAGE}, {who}", timing["request"], baseline, "s",
                                timing["request"] / baseline, "< 50 ms", timing["request"] < 0.05, "local list_models", note))
                rows.append(Row(BENCH, f"(d) RemoteHub.list_models() (hub list), {who}", timing["list_models"], baseline, "s",
                                timing["list_models"] / baseline, "< 50 ms", timing["list_models"] < 0.05, "local list_models"))
        finally:
            server.stop()
    return rows


def run(size_mb: float, models: int, versions: int, repeats: int, calls: int, rebuild: bool = False,
        tmp_parent: str | None = None, log: Callable[[str], None] = print) -> list[Row]:
    """Every server figure: model and state dict of ``size_mb`` MB, a registry of ``models`` x ``versions``."""
    rows: list[Row] = []
    with temp_dir("hubbench-server-", tmp_parent) as folder:
        setup = Setup(folder, size_mb, log)
        try:
            log(f"[server] (a) {repeats} x curl of the {setup.blob.size / MB:.0f} MB blob from hub serve / nginx / nginx buffered")
            rows += blob_download(setup, repeats)
            rows += remote_load(setup, repeats, log)
            rows += publishing(setup, int(size_mb), repeats, log)
        finally:
            setup.close()
    rows += listing(models, versions, calls, rebuild, tmp_parent, log)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=1000, help="model and state dict size in MB (default 1000)")
    parser.add_argument("--models", type=int, default=10_000, help="registry models for (d) (default 10000)")
    parser.add_argument("--versions", type=int, default=10, help="versions per model (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="measured rounds per contender (default 5)")
    parser.add_argument("--calls", type=int, default=200, help="listing calls per kind (default 200)")
    parser.add_argument("--rebuild-registry", action="store_true", help="build the cached registry again")
    parser.add_argument("--tmp-dir", default=None, help="where the temporary hubs go")
    args = parser.parse_args()
    torch.manual_seed(0)
    print_table(run(args.size_mb, args.models, args.versions, args.repeats, args.calls, args.rebuild_registry, args.tmp_dir))


if __name__ == "__main__":
    main()
