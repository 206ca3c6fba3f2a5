"""Notifications: log lines and webhooks against a local HTTP peer, and the secret scan over real runs."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from retrainlib import notify
from retrainlib.manifest import RunManifest
from retrainlib.profiles import load_profile
from tests.conftest import make_home
from tests.hold_points import KernelHold, wait_until
from tests.shared_runs import (MODEL, PROFILE, TOKEN, TOKEN_ENV, WebhookPeer, bootstrapped_home, child_env,
                               manifests, set_notify)


# ---- post_json against a real local server ------------------------------------------------------
def test_a_webhook_gets_the_json_body_with_the_bearer_token_in_one_attempt():
    with WebhookPeer() as peer:
        result = notify.post_json(peer.url, {"event": "promoted", "run_id": "r1"}, token="s3cret", timeout=60, retries=2)
    assert result == {"status": "sent", "attempts": 1, "http_status": 200, "error": None}
    (req,) = peer.requests
    assert req["headers"]["Authorization"] == "Bearer s3cret"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == {"event": "promoted", "run_id": "r1"}


def test_a_failing_webhook_is_retried_then_reported_as_failed_without_raising():
    with WebhookPeer(status=503) as peer:
        result = notify.post_json(peer.url, {"event": "failed"}, token="s3cret", timeout=60, retries=2, backoff=0.05)
    assert result["status"] == "failed" and result["attempts"] == 3 and result["http_status"] == 503
    assert len(peer.requests) == 3


def test_a_webhook_that_times_out_is_retried_and_gives_up_in_bounded_time():
    # the peer answers only when closed, after post_json returned (or after 300 s: a client without a timeout
    # gets that answer, and this test fails rather than hangs)
    with WebhookPeer(delay=300.0) as peer:
        result = notify.post_json(peer.url, {"event": "failed"}, timeout=0.3, retries=1, backoff=0.05)
    assert result["status"] == "failed" and result["attempts"] == 2
    assert "timed out" in result["error"]


def test_a_client_error_is_not_retried():
    with WebhookPeer(status=404) as peer:
        result = notify.post_json(peer.url, {}, timeout=60, retries=3, backoff=0.05)
    assert (result["status"], result["attempts"], result["http_status"]) == ("failed", 1, 404)


def test_a_redirect_is_refused_so_the_token_never_reaches_another_host():
    with WebhookPeer() as elsewhere, WebhookPeer(status=307, headers={"Location": elsewhere.url}) as redirecting:
        result = notify.post_json(redirecting.url, {}, token="s3cret", timeout=60, retries=0)
    assert result["status"] == "failed" and result["http_status"] == 307
    assert elsewhere.requests == []


def test_only_http_urls_are_posted_to():
    result = notify.post_json("file:///etc/passwd", {}, retries=0)
    assert result["status"] == "failed" and "http(s)" in result["error"]


# ---- notify_run with a real profile and manifest -------------------------------------------------
@pytest.fixture
def profile_home(tmp_path: Path, demo_batches: Path) -> Path:
    import shutil

    root = tmp_path / "home"
    shutil.copytree(demo_batches.parent, root / "data" / "demo")
    return make_home(root)


def _manifest(outcome: str, status: str = "succeeded") -> RunManifest:
    return RunManifest(run_id="20240601T000000Z-demo", profile={"name": "demo"}, as_of=None, started=RunManifest.now(),
                       status=status, outcome=outcome, exit_code=0, reasons=["drift score 0.4 > drift_threshold 0.25"],
                       champion_before="v0001", champion_after="v0002", challenger="v0002",
                       metrics={"champion": {"roc_auc": 0.70}, "challenger": {"roc_auc": 0.75}})


def test_a_run_that_needs_no_retraining_is_not_announced(profile_home):
    prof = load_profile(profile_home / PROFILE)
    assert notify.notify_run(_manifest("no-retrain-needed"), profile_home / "runs" / "x", prof) == []


def test_a_promotion_is_logged_and_posted_with_model_run_event_reasons_metrics_and_report_link(profile_home, monkeypatch, caplog):
    monkeypatch.setenv("RETRAIN_UNIT_TOKEN", "unit-token-123")
    with WebhookPeer() as peer:
        set_notify(profile_home, webhook_url=peer.url, token_env="RETRAIN_UNIT_TOKEN", report_base_url="https://ml.example/runs")
        prof = load_profile(profile_home / PROFILE)
        with caplog.at_level(logging.INFO, logger="retrainlib.notify"):
            records = notify.notify_run(_manifest("promoted"), profile_home / "runs" / "20240601T000000Z-demo", prof)
    assert [r["channel"] for r in records] == ["log", "webhook"]
    assert records[1]["status"] == "sent" and records[1]["target"].startswith("http://127.0.0.1:")
    body = peer.requests[0]["body"]
    assert body["model"] == MODEL and body["event"] == "promoted" and body["run_id"] == "20240601T000000Z-demo"
    assert body["reasons"] == ["drift score 0.4 > drift_threshold 0.25"]
    assert body["metrics"]["challenger"] == {"roc_auc": 0.75}
    assert body["report"] == "https://ml.example/runs/index.html#20240601T000000Z-demo"
    assert "loan-default-demo promoted (run 20240601T000000Z-demo): champion v0001 -> v0002" in caplog.text
    assert "unit-token-123" not in caplog.text + json.dumps(records)


def test_a_missing_token_variable_is_recorded_and_nothing_is_sent(profile_home, monkeypatch):
    monkeypatch.delenv("RETRAIN_UNSET_TOKEN", raising=False)
    with WebhookPeer() as peer:
        set_notify(profile_home, webhook_url=peer.url, token_env="RETRAIN_UNSET_TOKEN")
        records = notify.notify_run(_manifest("failed", "failed"), profile_home / "runs" / "x", load_profile(profile_home / PROFILE))
    assert records[1]["status"] == "failed" and "RETRAIN_UNSET_TOKEN" in records[1]["error"]
    assert peer.requests == []


# ---- real runs: the token never lands in a file or a log -----------------------------------------
@pytest.fixture(scope="module")
def announced_runs(tmp_path_factory):
    """The session's bootstrap run (its webhook timed out twice), then a `retrain run` stopped by SIGTERM while its
    first step's kernel is held before a cell (:class:`tests.hold_points.KernelHold`), whose failure is posted to a
    recording peer; the token is in both runs' environment."""
    boot = bootstrapped_home(tmp_path_factory, "secrets")
    home = boot.home
    log = home.parent / "sigterm-run.log"
    hold = KernelHold(home.parent / "kernel-hold")
    hold.arm()
    with WebhookPeer() as peer:  # answers at once; 60 s is the client's limit, which a busy machine never reaches
        set_notify(home, webhook_url=peer.url, token_env=TOKEN_ENV, timeout_seconds=60, retries=1)
        proc = subprocess.Popen([sys.executable, "-m", "retrainlib.cli", "run", "--profile", PROFILE, "--home", str(home)],
                                cwd=home, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                env=child_env(**{TOKEN_ENV: TOKEN}, **hold.env()))
        try:
            wait_until(hold.held_pid, "the run's kernel did not reach the hold before a cell", procs=[proc])
        finally:
            proc.send_signal(signal.SIGTERM)  # the run is inside a step, its kernel started and busy
            code = proc.wait(timeout=600)
        requests = list(peer.requests)
    return {"home": home, "boot": boot, "log": log, "code": code, "requests": requests}


def test_a_webhook_that_times_out_is_recorded_in_the_manifest_and_the_run_still_succeeds(announced_runs):
    boot = announced_runs["boot"]
    m = json.loads((boot.run_dir / "manifest.json").read_text())
    assert m["status"] == "succeeded" and m["outcome"] == "bootstrapped" and m["exit_code"] == 0
    log_rec, hook = m["notifications"]
    assert log_rec == {**log_rec, "channel": "log", "event": "bootstrapped"}
    assert hook["status"] == "failed" and hook["attempts"] == 2 and "timed out" in hook["error"]
    assert len(boot.requests) == 2  # the peer saw both attempts, each with the token
    assert all(r["headers"]["Authorization"] == f"Bearer {TOKEN}" for r in boot.requests)
    assert "could not send bootstrapped" in boot.log.read_text()


def test_sigterm_during_retrain_run_leaves_a_complete_failed_record_and_announces_the_failure(announced_runs):
    home = announced_runs["home"]
    assert announced_runs["code"] == 143, announced_runs["log"].read_text()[-3000:]
    m = manifests(home)[-1]
    assert m["status"] == "failed" and m["outcome"] == "failed" and m["finished"]
    assert m["error"]["message"] == "interrupted (Terminated)"
    assert all(s["status"] in ("succeeded", "failed", "not-run") for s in m["steps"])
    assert m["champion_after"] == "v0001"
    assert m["error"]["step"] == "10-analyze-drift"  # where it was held
    (req,) = announced_runs["requests"]
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert req["body"]["event"] == "failed" and req["body"]["run_id"] == m["run_id"] and req["body"]["model"] == MODEL
    assert req["body"]["report"].endswith(f"/runs/index.html#{m['run_id']}")
    assert m["notifications"][1] == {**m["notifications"][1], "status": "sent", "http_status": 200, "attempts": 1}
    # the log says what happened in a few lines: no kernel traceback, no kernel start-up warnings
    for log in (announced_runs["log"], announced_runs["boot"].log):
        text = log.read_text()
        assert "Traceback" not in text and "without encryption" not in text, text[-4000:]


def test_the_token_appears_in_no_file_of_the_home_and_in_no_log(announced_runs):
    home, token = announced_runs["home"], TOKEN.encode()
    scanned = 0
    for path in home.rglob("*"):
        if path.is_file():
            assert token not in path.read_bytes(), path
            scanned += 1
    for log in (announced_runs["log"], announced_runs["boot"].log):
        assert token not in log.read_bytes(), log
    runs = [d for d in (home / "runs").iterdir() if d.is_dir()]
    assert len(runs) == 2 and scanned > 20
    assert all((d / "manifest.json").exists() and list(d.glob("*.ipynb")) for d in runs)
