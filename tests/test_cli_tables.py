"""Listings fit an 80-column terminal, keep ids whole, and say times and durations plainly."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from truss_cli.cli import tables
from truss_cli.cli.deployments_cmd import print_deployments
from truss_cli.cli.usage_cmd import parse_since
from truss_cli.errors import UsageError

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def deployment(index: int, **fields: object) -> dict[str, object]:
    return {
        "id": f"dep{index:05d}", "name": f"deployment-{index}", "model_id": "mod12345", "version": f"0.{index}.0",
        "status": "ACTIVE", "status_label": "Active", "status_detail": None, "is_production": False,
        "is_development": False, "environment": None, "active_replica_count": 1, "replicas": 1,
        "created_at": (NOW - timedelta(hours=index)).isoformat(), **fields,
    }


# The widest cells a listing meets: long names, the longest status words, a long failure cause.
WIDE = [
    deployment(1, name="a-rather-long-deployment-name-from-ci-pipeline-1234", is_production=True, environment="production"),
    deployment(2, status="LOADING_MODEL", status_label="Deploying", active_replica_count=0, replicas=3),
    deployment(3, status="BUILD_FAILED", status_label="Deployment Failed", active_replica_count=0,
               status_detail="pip install failed: " + "no matching distribution for nosuchpkg==1.0 " * 4),
    deployment(4, name="development", version=None, is_development=True, status="SCALED_TO_ZERO", status_label="Scaled to zero"),
]


def test_the_deployments_table_fits_80_columns_and_keeps_ids_whole(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    print_deployments(WIDE)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    text = "\n".join(lines)
    for item in WIDE:
        assert any(str(item["id"]) in line for line in lines)  # an id is never broken across lines
    assert "★ production" in text and "development" in text
    assert "Deploying" in text and "LOADING_MODEL" in text
    assert "0/3" in text
    assert "BUILD_FAILED" in text and "nosuchpkg" in text  # the failure's cause, wrapped below


def test_a_status_word_that_says_it_all_is_not_repeated(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    print_deployments([deployment(1)])
    out = capsys.readouterr().out
    assert "Active" in out and "ACTIVE" not in out


def test_ages_read_as_people_say_them() -> None:
    before = lambda **delta: (NOW - timedelta(**delta)).isoformat()  # noqa: E731
    assert [tables.age(before(seconds=42), NOW), tables.age(before(minutes=12), NOW), tables.age(before(minutes=90), NOW)] == ["42s", "12m", "90m"]
    assert [tables.age(before(hours=3, minutes=5), NOW), tables.age(before(hours=36), NOW), tables.age(before(days=5), NOW)] == ["3h", "36h", "5d"]
    assert tables.age("2024-01-02T03:04:05Z", NOW) == "5mo"
    assert tables.age(None, NOW) == "-"
    assert tables.ago(before(hours=3), NOW) == "3h ago"


def test_replica_time_reads_in_the_largest_units() -> None:
    assert [tables.duration(s) for s in (7, 185, 7620, 2 * 86400 + 3600 * 4)] == ["7s", "3m 05s", "2h 07m", "2d 04h"]


def test_since_takes_dates_times_and_ages_and_refuses_anything_else() -> None:
    assert parse_since("2024-05-01") == "2024-05-01"
    assert parse_since("2024-05-01T12:00:00Z") == "2024-05-01T12:00:00Z"
    assert parse_since("7d", NOW) == "2024-05-25T12:00:00+00:00"
    assert parse_since("30m", NOW) == "2024-06-01T11:30:00+00:00"
    with pytest.raises(UsageError, match="--since 'last week'"):
        parse_since("last week")
