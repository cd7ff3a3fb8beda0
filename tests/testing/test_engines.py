"""The engine launchers: a real PostgreSQL and a real Redis start, answer, restart and stop."""

from __future__ import annotations

import socket
import subprocess

import pytest

from mimc_rx.testing.engines import PostgresEngine, RedisEngine, find_postgres_bin


def test_postgres_takes_sql_in_a_fresh_database(postgres_engine: PostgresEngine) -> None:
    psycopg = pytest.importorskip("psycopg")
    first, second = postgres_engine.create_database(), postgres_engine.create_database()
    assert first != second
    with psycopg.connect(first, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    with psycopg.connect(second) as conn:
        # Another database: the table of the first one is not there.
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
    # It listens on loopback only.
    assert postgres_engine.dsn().startswith("postgresql://mimc@127.0.0.1:")


def test_postgres_runs_unprivileged_when_we_are_root(postgres_engine: PostgresEngine) -> None:
    bin_dir = find_postgres_bin()
    assert bin_dir is not None
    ps = subprocess.run(
        ["ps", "-o", "user=", "-C", "postgres"], capture_output=True, text=True, check=False
    )
    owners = set(ps.stdout.split())
    assert owners, "no postgres process seen"
    assert "root" not in owners


def test_redis_restart_keeps_the_port_and_loses_the_data() -> None:
    with RedisEngine() as redis:
        port = redis.port
        with socket.create_connection((redis.host, port)) as sock:
            sock.sendall(b"SET k v\r\n")
            assert sock.recv(16).startswith(b"+OK")
        redis.restart()
        assert redis.port == port
        assert redis.ping()
        assert redis.starts == 2
        with socket.create_connection((redis.host, port)) as sock:
            sock.sendall(b"EXISTS k\r\n")
            assert sock.recv(16).startswith(b":0")
        redis.kill()
        assert not redis.is_running
        assert not redis.ping()
    assert redis.root is None


def test_a_stopped_cluster_restarts_with_its_data() -> None:
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed")
    psycopg = pytest.importorskip("psycopg")
    with PostgresEngine() as pg:
        dsn = pg.create_database("kept")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t AS SELECT 7 AS x")
        pg.stop()
        assert not pg.is_running
        pg.start()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT x FROM t").fetchone() == (7,)
