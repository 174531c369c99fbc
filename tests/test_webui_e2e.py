"""The web UI end to end, in a real headless Chromium driven by Playwright.

`hub ui` serves the app with its background fine-tune worker on a real registry;
the browser opens the models page, opens a model, launches a fine-tune on a CSV
of scikit-learn's digits, waits on the job page until it succeeds, and opens the
new version. Every page is saved as a screenshot under ``tests/output/e2e/``
(left there, pass or fail). On every page the test fails on what a user would see go
wrong: an exception or error box, a pop-up ("Page not found"), a toast, a JavaScript
exception or an error on the browser's console. Needs Debian's ``chromium`` (``.ci/run``
installs it).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch

import hub
from conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "tests" / "output" / "e2e"
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)"),
    pytest.mark.one_backend,  # the browser is what it tests; every page also has AppTests on both backends
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"hub ui exited with {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("hub ui did not start serving")


@pytest.fixture
def ui(tmp_path, registry_url):
    """`hub ui` (server and worker) on a free port, over a hub holding a digits convnet."""
    torch.manual_seed(0)
    hub.publish(hub.create("convnet", in_channels=1, image_size=8, num_classes=10), "acme/digits-cnn", task="classification",
                tags=["images", "digits"], license="mit", card={"text": "# Digits CNN\n\nA small convnet for 8x8 digits."})
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hub", "ui", "--port", str(port)], cwd=ROOT, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server)
        yield url
    finally:
        try:
            os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: hub ui stops its server and worker
            server.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:  # whatever is left of its process group, pass or fail
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait()


@pytest.fixture
def digits_csv(tmp_path) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = tmp_path / "my-digits.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"pixel_{i}" for i in range(64)] + ["label"])
        writer.writerows([[int(v) for v in x] + [int(y)] for x, y in zip(digits.data[:500], digits.target[:500])])
    return path


# What a page shows when something went wrong: Streamlit's exception and error boxes, any
# pop-up (the app has no dialog of its own: "Page not found" is one) and any toast.
VISIBLE_PROBLEMS = """() => {
  const shown = element => element.getClientRects().length > 0;
  const found = [];
  for (const [what, selector] of [["exception", '[data-testid="stException"]'], ["error", '[data-testid="stAlertContentError"]'],
                                  ["pop-up", '[role="dialog"]'], ["toast", '[data-testid="stToast"]']]) {
    for (const element of document.querySelectorAll(selector)) {
      if (shown(element)) found.push(`${what}: ${element.innerText.trim().replace(/\\s+/g, " ").slice(0, 300)}`);
    }
  }
  return found;
}"""


# Streamlit's frontend, opened at a page's own URL, first looks for its server under that path
# (/models/_stcore/health, then /_stcore/health), so the browser logs a 404 each time a page is
# opened by its URL (streamlit/streamlit#7074). That probe is the one console error let through.
STREAMLIT_PROBE = re.compile(r"/[^/]+/_stcore/(health|host-config)")


def streamlit_probe(message) -> bool:
    """Whether a console message is the 404 of Streamlit's own probe for its server's path."""
    return (message.text.startswith("Failed to load resource: the server responded with a status of 404")
            and STREAMLIT_PROBE.fullmatch(urllib.parse.urlsplit(message.location.get("url", "")).path) is not None)


class Problems:
    """What went wrong in the browser: JavaScript exceptions and console errors as they happen,
    and the error boxes, pop-ups and toasts a page shows when :meth:`check` looks."""

    def __init__(self, page) -> None:
        self.page, self.seen = page, []
        page.on("pageerror", lambda error: self.seen.append(f"JavaScript exception: {error}"))
        page.on("console", lambda message: message.type == "error" and not streamlit_probe(message) and self.seen.append(
            f"console error: {message.text} ({message.location.get('url', '')})"))

    def check(self, where: str) -> None:
        """Fail, naming ``where`` and every problem, if anything went wrong since the last check."""
        found = [*self.seen, *self.page.evaluate(VISIBLE_PROBLEMS)]
        self.seen = []
        assert not found, f"{where} ({self.page.url}):\n" + "\n".join(found)


def test_find_a_model_fine_tune_it_and_open_the_new_version(ui, digits_csv):
    sync_api = pytest.importorskip("playwright.sync_api")
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        try:
            walk_through(page, ui, digits_csv, shot_when_settled(page, Problems(page)))
        except Exception:
            page.screenshot(path=str(SHOTS / "failed.png"), full_page=True)  # what the browser showed
            raise
        finally:
            browser.close()

    version = hub.info("me/digits-e2e")
    assert version.parent == "acme/digits-cnn:1" and version.metrics["accuracy"] > 0.5
    assert sorted(p.name for p in SHOTS.iterdir()) == [
        "01-models.png", "02-model.png", "03-finetune.png", "04-job.png", "05-new-version.png", "06-jobs.png", "07-try.png", "08-publish.png"]


def shot_when_settled(page, problems: Problems):
    def shot(name: str) -> None:
        """A screenshot once the page has settled (no element left over from a previous run);
        then fail if the page shows a problem or the browser reported one."""
        page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0")
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        problems.check(name)

    return shot


def walk_through(page, ui: str, digits_csv: Path, shot) -> None:
    """Models -> a model -> fine-tune it on a CSV -> watch the job -> the new version -> try it."""
    page.set_default_timeout(60_000)

    def open_link(name: str) -> None:
        link = page.get_by_role("link", name=name, exact=True).first
        page.goto(ui + link.get_attribute("href"))

    page.goto(ui)  # the root URL opens the Models page at its own path
    page.wait_for_url(f"{ui}/models")
    page.get_by_text("1 model", exact=True).wait_for()
    page.goto(f"{ui}/models")
    page.get_by_text("1 model", exact=True).wait_for()
    shot("01-models")

    open_link("acme/digits-cnn")
    page.get_by_text("A small convnet for 8x8 digits.").wait_for()
    shot("02-model")

    open_link("Fine-tune it")
    # The training data's own uploader (the page also has one for validation data, which may render first).
    training = page.get_by_test_id("stFileUploader").filter(has_text="Training data")
    training.locator("input[type=file]").set_input_files(str(digits_csv))
    page.get_by_text("Feature columns").wait_for()
    page.get_by_role("spinbutton", name="Epochs").fill("2")
    page.get_by_role("textbox", name="Output model").fill("me/digits-e2e")
    page.get_by_role("textbox", name="Output model").press("Enter")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Queued job").wait_for()
    shot("03-finetune")

    job_link = page.locator("a[href^='/job?id=']").first
    page.goto(ui + job_link.get_attribute("href"))
    page.get_by_text("Published").first.wait_for(timeout=180_000)
    page.get_by_text("Evaluation").first.wait_for()
    shot("04-job")

    open_link("me/digits-e2e:1")
    page.get_by_text("Fine-tuned from").wait_for()
    page.get_by_role("tab", name="Lineage").click()
    page.get_by_text("Parents:").wait_for()
    shot("05-new-version")
    assert "acme/digits-cnn:1" in page.inner_text("body")

    page.goto(f"{ui}/jobs")
    page.get_by_text("me/digits-e2e").first.wait_for()
    shot("06-jobs")
    page.goto(f"{ui}/try?ref=me/digits-e2e:1")
    page.get_by_text("Numbers", exact=True).click()
    with open(digits_csv) as f:
        pixels = ", ".join(list(csv.reader(f))[1][:64])  # the first digit of the file
    page.get_by_role("textbox", name="64 numbers, separated by commas or spaces").fill(pixels)
    page.get_by_role("button", name="Predict").click()
    page.get_by_role("heading", name=re.compile(r"\(\d+(\.\d+)?%\)")).wait_for(timeout=120_000)  # "0 (33.9%)"
    shot("07-try")
    page.goto(f"{ui}/publish")
    page.get_by_role("heading").first.wait_for()
    shot("08-publish")

    version = hub.info("me/digits-e2e")
    assert version.parent == "acme/digits-cnn:1" and version.metrics["accuracy"] > 0.5
    assert sorted(p.name for p in SHOTS.iterdir()) == [
        "01-models.png", "02-model.png", "03-finetune.png", "04-job.png", "05-new-version.png", "06-jobs.png", "07-try.png", "08-publish.png"]
