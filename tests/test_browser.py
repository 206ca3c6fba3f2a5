"""A reviewer's view: runs/index.html in headless Chromium (Debian's package, installed by `make test`).

Without chromium these tests are skipped, each with a :class:`BrowserSkipped` warning, so the summary
line says so without ``-ra`` ("2 skipped, 2 warnings") and "warnings summary" says why. Under CI (the
``CI`` variable set to anything but empty, 0, false or no) chromium should have been installed, so a
missing one fails them instead. ``RETRAIN_CHROMIUM`` names another chromium binary.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from tests.shared_runs import bootstrapped_home, child_env

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which(os.environ.get("RETRAIN_CHROMIUM") or "chromium")
MISSING = ("Debian's chromium is not installed and could not be: `make test` installs it when run as root "
           "(apt-get install chromium); run it as root, or install chromium, to run the browser tests")


class BrowserSkipped(UserWarning):
    """A browser test did not run: no chromium (shown in pytest's warnings summary without -ra)."""


def under_ci() -> bool:
    """The ``CI`` variable is set (CI services set it): there a browser test never skips."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_chromium() -> str:
    """The chromium binary; without one: fail under CI, else skip with a :class:`BrowserSkipped` warning."""
    if CHROMIUM:
        return CHROMIUM
    if under_ci():
        pytest.fail(f"CI is set, so chromium should have been installed: {MISSING}", pytrace=False)
    warnings.warn(BrowserSkipped(f"skipped: {MISSING}"), stacklevel=2)
    pytest.skip(MISSING)


def dump_dom(url: str, profile_dir: Path) -> str:
    """The DOM after Chromium loaded ``url`` headless (no network beyond the URL, no sandbox: tests run as root)."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile_dir}", "--dump-dom", url],
        capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A bootstrapped home whose report `retrain report` wrote, served from runs/ by a local http.server."""
    if CHROMIUM is None:  # each test says why it does not run (require_chromium)
        yield None
        return
    boot = bootstrapped_home(tmp_path_factory, "browser")
    proc = subprocess.run([sys.executable, "-m", "retrainlib.cli", "report", "--home", str(boot.home)],
                          capture_output=True, text=True, env=child_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(boot.home / "runs"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield boot, f"http://127.0.0.1:{server.server_address[1]}", tmp_path_factory.mktemp("chromium-profile")
    server.shutdown()
    server.server_close()


def test_the_index_lists_the_runs_in_chromium_and_a_notebook_link_opens_a_rendered_notebook(served):
    require_chromium()
    boot, base, profile_dir = served
    m = json.loads((boot.run_dir / "manifest.json").read_text())
    dom = dump_dom(f"{base}/index.html", profile_dir)
    assert "Retraining runs" in dom
    row = re.search(rf'<tr id="{re.escape(m["run_id"])}">(.*?)</tr>', dom, re.S)
    assert row, dom[:2000]
    assert "bootstrapped" in row.group(1) and "no champion yet: train the first model" in row.group(1)
    assert "<svg" in dom  # the champion plot
    href = html.unescape(re.search(r'<a href="([^"]+/10-analyze-drift\.html)"', row.group(1)).group(1))

    page = dump_dom(f"{base}/{href}", profile_dir)
    assert "jp-Notebook" in page and "jp-OutputArea-output" in page
    assert "10 · Analyze drift: should the model be retrained?" in page  # the notebook's own title, rendered
    assert "no champion yet: train the first model" in page  # the executed cell's output is there
    assert re.search(r'<img[^>]+src="data:image/png;base64,', page)  # and its plot


def test_the_index_opens_from_a_file_url_too(served):
    require_chromium()
    boot, _, profile_dir = served
    dom = dump_dom((boot.home / "runs" / "index.html").as_uri(), profile_dir)
    assert f'id="{boot.run_dir.name}"' in dom and "10-analyze-drift.html" in dom


def _pytest_without_chromium(**env: str) -> subprocess.CompletedProcess:
    """pytest on this module's browser tests with no chromium to be found, and without -ra."""
    env = {**{k: v for k, v in os.environ.items() if k != "CI"}, "RETRAIN_CHROMIUM": "/nonexistent/chromium", **env}
    return subprocess.run([sys.executable, "-m", "pytest", __file__, "-k", "index", "-p", "no:cacheprovider",
                           "-o", "addopts=--import-mode=importlib"], capture_output=True, text=True, env=env, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])


def test_without_chromium_the_browser_tests_skip_visibly_in_the_summary_line_and_fail_under_ci():
    skipped = _pytest_without_chromium()
    assert skipped.returncode == 0, skipped.stdout[-3000:]
    summary = skipped.stdout.strip().splitlines()[-1]
    assert "2 skipped" in summary and "2 warnings" in summary and "passed" not in summary, summary
    assert "BrowserSkipped: skipped: Debian's chromium is not installed" in skipped.stdout  # the warnings summary says why
    failed = _pytest_without_chromium(CI="true")
    summary = failed.stdout.strip().splitlines()[-1]
    assert failed.returncode == 1 and "2 failed" in summary and "skipped" not in summary, failed.stdout[-3000:]
    assert "CI is set, so chromium should have been installed" in failed.stdout
    assert _pytest_without_chromium(CI="false").returncode == 0
