"""The shared message SQL: one text for both drivers but for the parameter spelling."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mimc_rx.server.storage.queries import (
    backlog_query,
    history_query,
    psycopg_param,
    sqlite_param,
)

FILTERS: list[dict[str, Any]] = [
    {"other": 7, "topic_id": None},
    {"other": None, "topic_id": 9},
    {"other": 7, "topic_id": None, "from_ts": 1, "to_ts": 5, "start_seq": 2, "stop_seq": 8},
    {"other": None, "topic_id": 9, "start_seq": 2, "newest": True},
]


def history(param: Any, **given: Any) -> tuple[str, dict[str, Any]]:
    filters: dict[str, Any] = {
        "from_ts": None,
        "to_ts": None,
        "start_seq": None,
        "stop_seq": None,
        "limit": 10,
        "newest": False,
    }
    filters.update(given)
    return history_query(param, 1, **filters)


@pytest.mark.parametrize("given", FILTERS)
def test_history_differs_between_drivers_only_in_parameter_spelling(given: dict[str, Any]) -> None:
    lite_sql, lite_args = history(sqlite_param, **given)
    pg_sql, pg_args = history(psycopg_param, **given)
    assert lite_args == pg_args
    assert re.sub(r"%\((\w+)\)s", r":\1", pg_sql) == lite_sql
    # Every parameter the text names has a value, and every value is named.
    assert set(re.findall(r":(\w+)", lite_sql)) == set(lite_args)
    assert set(re.findall(r"%\((\w+)\)s", pg_sql)) == set(pg_args)


def test_history_keeps_only_the_filters_given() -> None:
    sql, args = history(sqlite_param, other=7, topic_id=None)
    assert args == {"me": 1, "other": 7, "limit": 10}
    assert "ASC" in sql
    assert "DESC" not in sql
    sql, args = history(sqlite_param, other=None, topic_id=9, stop_seq=4, newest=True)
    assert args == {"me": 1, "topic": 9, "stop_seq": 4, "limit": 10}
    assert "h.seq < :stop_seq" in sql
    assert "DESC" in sql


def test_backlog_names_its_parameters_in_either_style() -> None:
    lite_sql, lite_args = backlog_query(sqlite_param, 1, 2, 3)
    pg_sql, pg_args = backlog_query(psycopg_param, 1, 2, 3)
    assert lite_args == pg_args == {"uuid": 1, "after": 2, "limit": 3}
    assert re.sub(r"%\((\w+)\)s", r":\1", pg_sql) == lite_sql
