"""Retention as a pure plan: which versions go, in which order, and which are never touched.

:func:`retrainlib.registry.retention.plan` is given names, creation times, the versions that served
as champion and the protected ones; every case below is a table row with the deletions it must plan.
(Its application under the lock, on real versions, is tested in test_registry.py.)
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from retrainlib.errors import RegistryError
from retrainlib.registry.retention import Deletion, plan

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


def days_ago(n: float) -> str:
    return (NOW - timedelta(days=n)).isoformat()


def fresh(*names: str) -> list[tuple[str, str]]:
    """Versions created a day apart, the last one a day ago: none older than a week."""
    return [(name, days_ago(len(names) - i)) for i, name in enumerate(names)]


FIVE = ("v0001", "v0002", "v0003", "v0004", "v0005")
NEVER, FORMER = "never champion", "former champion"


def too_many(kind: str, max_versions: int) -> str:
    return f"more than max_versions={max_versions} versions ({kind})"


CASES = {
    "rejected challengers go before any former champion, oldest first": dict(
        versions=fresh(*FIVE), served={"v0001", "v0003", "v0005"}, protected={"v0005", "v0003"}, max_versions=3,
        expected=[("v0002", too_many(NEVER, 3)), ("v0004", too_many(NEVER, 3))],
    ),
    "with no rejected challenger left the oldest former champions go and the newest stay": dict(
        versions=fresh(*FIVE), served=set(FIVE), protected={"v0005", "v0004"}, max_versions=2,
        expected=[("v0001", too_many(FORMER, 2)), ("v0002", too_many(FORMER, 2)), ("v0003", too_many(FORMER, 2))],
    ),
    "a rejected challenger newer than every champion still goes first": dict(
        versions=fresh(*FIVE), served={"v0001", "v0002", "v0003", "v0004"}, protected={"v0004", "v0003"},
        max_versions=4, expected=[("v0005", too_many(NEVER, 4))],
    ),
    "champion, previous champion and kept versions are never deleted, even over the limit": dict(
        versions=fresh("v0001", "v0002", "v0003"), served={"v0002", "v0003"}, protected={"v0003", "v0002", "v0001"},
        max_versions=1, expected=[],
    ),
    "a protected version is skipped and the next one goes instead": dict(
        versions=fresh(*FIVE), served={"v0004", "v0005"}, protected={"v0005", "v0004", "v0001"}, max_versions=3,
        expected=[("v0002", too_many(NEVER, 3)), ("v0003", too_many(NEVER, 3))],
    ),
    "within the limit and the age nothing goes": dict(
        versions=fresh(*FIVE), served={"v0005"}, protected={"v0005"}, max_versions=5, expected=[],
    ),
    "versions older than retention_days go, unless protected": dict(
        versions=[("v0001", days_ago(40)), ("v0002", days_ago(35)), ("v0003", days_ago(31)), ("v0004", days_ago(1))],
        served={"v0002", "v0004"}, protected={"v0004", "v0002"}, max_versions=10,
        expected=[("v0001", f"older than 30 days (created {days_ago(40)})"),
                  ("v0003", f"older than 30 days (created {days_ago(31)})")],
    ),
    "versions deleted for age count towards max_versions": dict(
        versions=[("v0001", days_ago(40)), ("v0002", days_ago(2)), ("v0003", days_ago(1))],
        served={"v0003"}, protected={"v0003"}, max_versions=2,
        expected=[("v0001", f"older than 30 days (created {days_ago(40)})")],
    ),
    "a version without a readable creation time is never too old": dict(
        versions=[("v0001", None), ("v0002", "last tuesday"), ("v0003", days_ago(1))],
        served={"v0003"}, protected={"v0003"}, max_versions=10, expected=[],
    ),
    "a creation time without a zone is read as UTC": dict(
        versions=[("v0001", (NOW - timedelta(days=31)).replace(tzinfo=None).isoformat()), ("v0002", days_ago(1))],
        served={"v0002"}, protected={"v0002"}, max_versions=10,
        expected=[("v0001", f"older than 30 days (created {(NOW - timedelta(days=31)).replace(tzinfo=None).isoformat()})")],
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_retention_plans_the_deletions_in_the_documented_order_with_their_reasons(case):
    c = CASES[case]
    planned = plan(c["versions"], served=c["served"], protected=c["protected"], max_versions=c["max_versions"],
                   retention_days=30, now=NOW)
    assert planned == [Deletion(name, reason) for name, reason in c["expected"]]


def test_the_plan_never_names_a_protected_version_whatever_the_limits():
    versions = fresh(*FIVE)
    for protected in ({"v0001"}, {"v0005", "v0002"}, set(FIVE)):
        for max_versions in (1, 2, 3):
            for served in (set(), set(FIVE), {"v0001", "v0003"}):
                planned = plan(versions, served=served, protected=protected, max_versions=max_versions,
                               retention_days=0.5, now=NOW)
                assert not {d.name for d in planned} & protected
                assert len(versions) - len(planned) >= min(len(versions), len(protected))


def test_a_naive_now_is_read_as_utc():
    versions = [("v0001", days_ago(31)), ("v0002", days_ago(1))]
    aware = plan(versions, served=set(), protected={"v0002"}, max_versions=5, retention_days=30, now=NOW)
    naive = plan(versions, served=set(), protected={"v0002"}, max_versions=5, retention_days=30, now=NOW.replace(tzinfo=None))
    assert aware == naive == [Deletion("v0001", f"older than 30 days (created {days_ago(31)})")]


@pytest.mark.parametrize("max_versions, retention_days, message", [
    (0, 30, r"max_versions must be an integer >= 1; got 0"),
    (True, 30, r"max_versions must be an integer >= 1; got True"),
    (2.5, 30, r"max_versions must be an integer >= 1; got 2.5"),
    (3, 0, r"retention_days must be a number of days > 0; got 0"),
    (3, math.nan, r"retention_days must be a number of days > 0; got nan"),
    (3, "30", r"retention_days must be a number of days > 0; got '30'"),
])
def test_limits_that_are_not_a_count_and_a_positive_number_of_days_are_refused(max_versions, retention_days, message):
    with pytest.raises(RegistryError, match=message):
        plan(fresh(*FIVE), served=set(), protected=set(), max_versions=max_versions, retention_days=retention_days, now=NOW)
