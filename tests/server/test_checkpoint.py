"""WAL checkpoints run in a thread of the store's own, never inside a commit on the loop."""

from __future__ import annotations

import time
from pathlib import Path

from mimc_rx.server.storage import schema


def test_file_database_checkpoints_in_a_thread_until_closed(tmp_path: Path) -> None:
    db = schema.open_database(str(tmp_path / "s.db"), sync_full=False)
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] > 1000
    checkpointer = db.checkpointer  # type: ignore[attr-defined]
    assert isinstance(checkpointer, schema.WalCheckpointer)
    db.execute("INSERT INTO meta VALUES ('k', 'v')")
    db.commit()
    deadline = time.monotonic() + 10
    while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpointer.checkpoints > 0
    thread = checkpointer._thread
    assert thread.is_alive()
    db.close()
    assert not thread.is_alive()


def test_memory_database_has_no_thread() -> None:
    db = schema.open_database(":memory:", sync_full=False)
    assert db.checkpointer is None  # type: ignore[attr-defined]
    db.close()
