"""Real runs shared by the scheduler, notification, report and browser tests (each real run costs ~30-60 s).

:func:`bootstrapped_home` builds, once per test session, a tiny project home whose first run
(``retrain run`` in a child process, its log captured) bootstrapped champion ``v0001`` while its
webhook peer, a local server slower than the profile's timeout, recorded what it received and
never answered in time; every caller gets its own copy. The profile
checks only the champion's performance, against a low threshold, so later runs on the same data
decide "no retraining needed" and stay cheap.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import filelock
import yaml

from tests.conftest import REPO, make_home

#: the webhook token of this session: tests scan every file and log for it
TOKEN = f"retrain-test-token-{secrets.token_hex(12)}"
TOKEN_ENV = "RETRAIN_TEST_WEBHOOK_TOKEN"
PROFILE = "params/demo.yaml"
MODEL = "loan-default-demo"


class WebhookPeer:
    """A local HTTP server that records every request (headers and JSON body).

    ``delay`` makes it slow: it answers after ``delay`` seconds or when it is closed, whichever comes first,
    so a client that gives up at its timeout never sees an answer, however slow the machine.
    """

    def __init__(self, *, status: int = 200, delay: float = 0.0, headers: dict | None = None):
        self.requests: list[dict] = []
        self.closing = threading.Event()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                peer.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body or b"null"),
                                      "time": time.time()})
                if delay:
                    peer.closing.wait(delay)
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (timed out) first
                    pass

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "WebhookPeer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def set_notify(home: Path, **notify) -> None:
    """Rewrite the home's profile ``notify`` section."""
    path = home / PROFILE
    prof = yaml.safe_load(path.read_text())
    prof["notify"] = notify
    path.write_text(yaml.safe_dump(prof, sort_keys=False))


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONPATH=str(REPO))
    env.pop("RETRAIN_HOME", None)
    env.update(extra)
    return env


def retrain(home: Path, *args: str, log: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``retrain <args> --home <home>`` in a child process; stdout and stderr appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.run([sys.executable, "-m", "retrainlib.cli", *args, "--home", str(home)], cwd=home,
                              stdout=out, stderr=subprocess.STDOUT, env=env or child_env(), timeout=timeout)


@dataclass(frozen=True)
class Bootstrapped:
    """A copy of the session's bootstrapped home, the first run's captured log and the webhook requests."""

    home: Path
    run_dir: Path
    log: Path
    requests: list[dict]
    seconds: float


def _build(template: Path) -> None:
    home = make_home(template / "home", weeks=11, **{
        "triggers.policy": "any", "triggers.use": ["performance"], "performance_threshold": 0.5,
        "validation.minimum": {"roc_auc": 0.6},
    })
    with WebhookPeer(delay=3600.0) as peer:  # answers only when closed, after the run: both attempts time out, on any load
        set_notify(home, webhook_url=peer.url, token_env=TOKEN_ENV, timeout_seconds=1, retries=1)
        t0 = time.monotonic()
        proc = retrain(home, "run", "--profile", PROFILE, log=template / "first-run.log", env=child_env(**{TOKEN_ENV: TOKEN}))
        seconds = time.monotonic() - t0
        deadline = time.monotonic() + 60  # the peer's threads record what the run sent (both attempts, retries=1)
        while len(peer.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        requests = list(peer.requests)
    (template / "requests.json").write_text(json.dumps(requests))
    (template / "meta.json").write_text(json.dumps({"exit_code": proc.returncode, "seconds": seconds}))


def bootstrapped_home(tmp_path_factory, name: str) -> Bootstrapped:
    """A fresh copy (under ``name``) of the session's home with one real bootstrap run."""
    base = tmp_path_factory.getbasetemp()
    template = base / "bootstrapped-template"
    with filelock.FileLock(str(base / "bootstrapped-template.lock")):
        if not (template / "meta.json").exists():
            template.mkdir(exist_ok=True)
            _build(template)
    meta = json.loads((template / "meta.json").read_text())
    assert meta["exit_code"] == 0, (template / "first-run.log").read_text()[-3000:]
    target = tmp_path_factory.mktemp(name)
    shutil.copytree(template / "home", target / "home", symlinks=True)
    shutil.copy(template / "first-run.log", target / "first-run.log")
    home = target / "home"
    (run_dir,) = sorted((home / "runs").iterdir())
    return Bootstrapped(home, run_dir, target / "first-run.log", json.loads((template / "requests.json").read_text()),
                        meta["seconds"])


def manifests(home: Path, *, settled: bool = True) -> list[dict]:
    """Every run's manifest under ``home/runs``, oldest first; each must parse.

    ``settled=False`` is for polling while runs go on: a folder whose manifest is not written yet
    is left out.
    """
    out = []
    for d in sorted(p for p in (home / "runs").iterdir() if p.is_dir()):
        if not settled and not (d / "manifest.json").exists():
            continue
        out.append(json.loads((d / "manifest.json").read_text()))
    return out
