"""Tell people what a run did: always a log line, optionally a webhook POST.

:func:`notify_run` is called by the runner once a run's record is complete. For the events in
:data:`EVENTS` (promoted, bootstrapped, rejected, rolled back, blocked by data quality, stuck, failed; a shadow
started, promoted from shadow, dropped) it
logs one line and, when the profile's ``notify.webhook_url`` is set, POSTs a JSON body (model, run
id, event, reasons, metrics, champion, link to the report). The token is read from the environment
variable the profile names (``notify.token_env``) and sent as ``Authorization: Bearer``; it is never
written to the manifest, a notebook or a log line. A webhook that fails or times out is retried
``notify.retries`` times, then the failure is recorded in the manifest's ``notifications``; it
never fails the run. Redirects are refused, so the token cannot follow a redirect to another host.

>>> event_for("promoted"), event_for("no-retrain-needed")
('promoted', None)
>>> redact("HTTP 401 for token abc123", "abc123")
'HTTP 401 for token ***'
>>> redact_url("https://bot:pw@hooks.slack.com/services/T0001/B0002/XyZ123abcDEF456ghiJKL789?token=s3&team=a")
'https://***@hooks.slack.com/services/***/***/***?token=***&team=a'
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .manifest import RunManifest

__all__ = ["EVENTS", "event_for", "build_payload", "post_json", "notify_run", "report_url", "redact", "redact_url",
           "redact_profile_text"]

log = logging.getLogger("retrainlib.notify")

#: outcomes that are announced, and the log level of their line
EVENTS = {
    "promoted": logging.INFO,
    "bootstrapped": logging.INFO,
    "rejected": logging.INFO,
    "rolled-back": logging.WARNING,
    "blocked-by-quality": logging.WARNING,
    "stuck": logging.WARNING,
    "failed": logging.ERROR,
    "shadow-started": logging.INFO,  # validation.shadow_batches: a shadow period starts ...
    "promoted-from-shadow": logging.INFO,  # ... and ends: promoted
    "shadow-dropped": logging.WARNING,  # ... or dropped
}
#: HTTP statuses worth another try; any other error status is final
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_BACKOFF_SECONDS = 1.0


def event_for(outcome: str | None) -> str | None:
    """The event a run's outcome announces, or None when it is not announced."""
    return outcome if outcome in EVENTS else None


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (also stripped, and as Python escapes it) replaced by ``***``."""
    if not secret:
        return text
    for form in sorted({secret, secret.strip(), repr(secret)[1:-1]} - {""}, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


#: query keys whose values are secrets (Slack/Teams/Discord-style signed URLs, API keys)
_SECRET_KEYS = re.compile(r"(?i)(token|key|sig|signature|secret|pass(word)?|pwd|auth|credential|code|hash)")
#: a path segment that looks like a secret: long, or mixing letters and digits at some length
_SECRET_SEGMENT = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-]{12,}$|^[A-Za-z0-9_\-]{24,}$")


def redact_url(url: str) -> str:
    """``url`` without its secrets: user:password@, secret-looking path segments (every segment after
    ``/services/`` or ``/webhooks/``), and the values of query keys such as ``token``, ``key``, ``sig``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    segments, secret_tail = [], False
    for seg in parts.path.split("/"):
        secret = secret_tail and seg != "" or bool(_SECRET_SEGMENT.match(seg))
        segments.append("***" if secret else seg)
        secret_tail = secret_tail or seg.lower() in ("services", "webhooks", "webhook", "hooks")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    shown = "&".join(f"{k}={'***' if _SECRET_KEYS.search(k) or _SECRET_SEGMENT.match(v) else v}" for k, v in query)
    fragment = "***" if parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, "/".join(segments), shown, fragment))


def redact_profile_text(text: str, urls: list[str | None]) -> str:
    """A profile's YAML text with each of ``urls`` replaced by its :func:`redact_url` form."""
    secret = [u for u in urls if u and redact_url(u) != u]
    for url in secret:
        text = text.replace(url, redact_url(url))
    if any(url in text for url in secret) or not all(redact_url(u) in text for u in secret):
        import yaml  # written in a form the plain replacement missed (escapes, folding): write the profile anew

        def clean(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return redact_url(value) if isinstance(value, str) and value in secret else value

        text = yaml.safe_dump(clean(yaml.safe_load(text)), sort_keys=False)
    return text


def report_url(run_id: str, *, runs_dir: Path, base_url: str | None = None) -> str:
    """Where the run's row of ``runs/index.html`` is: ``<base>/index.html#<run_id>``.

    ``base`` is the profile's ``notify.report_base_url`` (where ``runs/`` is served), else the
    ``file://`` URL of the runs folder.

    >>> report_url("20240101T000000Z-demo", runs_dir=Path("/srv/runs"), base_url="https://ml.example/runs/")
    'https://ml.example/runs/index.html#20240101T000000Z-demo'
    """
    base = base_url.rstrip("/") if base_url else Path(runs_dir).resolve().as_uri()
    return f"{base}/index.html#{urllib.parse.quote(run_id)}"


def build_payload(manifest: RunManifest, *, model: str, event: str, link: str) -> dict[str, Any]:
    """The webhook's JSON body for one run (a :class:`~retrainlib.manifest.RunManifest`)."""
    verdict = manifest.validation
    return {
        "event": event,
        "model": model,
        "profile": manifest.profile.name,
        "run_id": manifest.run_id,
        "status": manifest.status,
        "exit_code": manifest.exit_code,
        "reasons": list(manifest.reasons or []),
        "verdict": verdict.reasons if verdict else [],
        "metrics": manifest.metrics or {},
        "champion_before": manifest.champion_before,
        "champion_after": manifest.champion_after,
        "challenger": manifest.challenger,
        "error": manifest.error and manifest.error.to_dict(),
        "warnings": list(manifest.warnings),
        "started": manifest.started,
        "finished": manifest.finished,
        "report": link,
    }


def _target(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what logs and manifests name (paths may hold secrets)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the Authorization header would go with it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib's signature
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


def post_json(
    url: str,
    payload: Mapping[str, Any],
    *,
    token: str | None = None,
    timeout: float = 5.0,
    retries: int = 3,
    backoff: float = _BACKOFF_SECONDS,
) -> dict[str, Any]:
    """POST ``payload`` as JSON, retrying failures and timeouts; return what happened.

    Never raises for a network or HTTP failure: the result's ``status`` is ``sent`` or
    ``failed`` with ``attempts``, ``http_status`` and ``error`` (the token redacted).
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        return {"status": "failed", "attempts": 0, "http_status": None,
                "error": f"webhook_url must be an http(s) URL; got scheme '{scheme}'"}
    body = json.dumps(payload, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "retrainlib-notify"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    error, http_status, attempt = None, None, 0
    for attempt in range(1, retries + 2):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return {"status": "sent", "attempts": attempt, "http_status": response.status, "error": None}
        except urllib.error.HTTPError as exc:
            http_status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
            if exc.code not in _RETRY_STATUSES:
                break
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # refused, reset, timed out
            http_status = None
            reason = getattr(exc, "reason", exc)
            error = f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
        except Exception as exc:  # e.g. a header value urllib refuses: its text quotes the header, so keep only the kind
            return {"status": "failed", "attempts": attempt, "http_status": None,
                    "error": f"{type(exc).__name__}: the request could not be built (an invalid header or URL); nothing was sent"}
        if attempt <= retries:
            time.sleep(min(backoff * 2 ** (attempt - 1), 30.0))
    return {"status": "failed", "attempts": attempt, "http_status": http_status, "error": redact(str(error), token)}


def _summary(manifest: RunManifest, event: str) -> str:
    parts = [f"champion {manifest.champion_before or '(none)'} -> {manifest.champion_after or '(none)'}"]
    if manifest.challenger:
        parts.append(f"challenger {manifest.challenger}")
    for who in ("champion", "challenger"):
        scores = (manifest.metrics or {}).get(who) or {}
        shown = ", ".join(f"{k}={v:.4f}" for k, v in scores.items() if isinstance(v, (int, float)))
        if shown:
            parts.append(f"{who} {shown}")
    if manifest.reasons:
        parts.append("reasons: " + "; ".join(manifest.reasons))
    if manifest.warnings:
        parts.append("resource warnings: " + "; ".join(manifest.warnings))
    if event == "failed" and manifest.error:
        parts.append(f"error at {manifest.error.line()}")
    return ", ".join(parts)


def notify_run(manifest: RunManifest, run_dir: Path, profile: Any) -> list[dict[str, Any]]:
    """Announce a finished run; return the records to store in ``manifest.notifications``.

    Parameters
    ----------
    manifest : RunManifest
        the run's complete record (its ``outcome`` picks the event).
    run_dir : Path
        the run folder (its parent is the ``runs/`` folder the report link points into).
    profile : Profile
        gives the model name and the ``notify`` settings.

    Returns
    -------
    list of dict
        one ``log`` record and, with a webhook, one ``webhook`` record (``sent`` or ``failed``);
        empty when the outcome is not announced.
    """
    event = event_for(manifest.outcome)
    if event is None:
        return []
    settings = profile.notify
    link = report_url(manifest.run_id, runs_dir=Path(run_dir).parent, base_url=settings.report_base_url)
    token = os.environ.get(settings.token_env) if settings.token_env else None
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    line = redact(f"{profile.model_name} {event} (run {manifest.run_id}): {_summary(manifest, event)}; report {link}", token)
    log.log(EVENTS[event], "%s", line)
    records: list[dict[str, Any]] = [{"channel": "log", "event": event, "time": now, "status": "logged"}]
    if not settings.webhook_url:
        return records
    target = _target(settings.webhook_url)
    record: dict[str, Any] = {"channel": "webhook", "event": event, "time": now, "target": target}
    if settings.token_env and not token:
        record.update(status="failed", attempts=0, http_status=None,
                      error=f"environment variable {settings.token_env} (notify.token_env) is not set; nothing was sent")
    else:
        payload = build_payload(manifest, model=profile.model_name, event=event, link=link)
        record.update(post_json(settings.webhook_url, payload, token=token,
                                timeout=settings.timeout_seconds, retries=settings.retries))
    if record["status"] == "sent":
        log.info("webhook %s: sent %s for run %s (HTTP %s, attempt %d)", target, event, manifest.run_id,
                 record["http_status"], record["attempts"])
    else:
        log.warning("webhook %s: could not send %s for run %s after %d attempt(s): %s; recorded in the manifest",
                    target, event, manifest.run_id, record["attempts"], record["error"])
    return records + [record]
