"""A SQLite purge on a disk that fills up: batches shrink until they fit, or one line says why not.

The database lives on a real 8 MiB tmpfs. A batch needs rollback journal space for every
page it touches; when it does not fit, SQLite answers "database or disk is full" and the
batch rolls back. Before, each run deleted what the early small batches could and then
failed as batches grew; now the engine halves the batch and goes on.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.utils import fill_up, project_env, run_manage, sqlite_rows, sqlite_url

pytestmark = pytest.mark.slow

ORPHANS = (
    "SELECT COUNT(*) FROM token_blacklist_blacklistedtoken b WHERE NOT EXISTS "
    "(SELECT 1 FROM token_blacklist_outstandingtoken o WHERE o.id = b.token_id)"
)
COUNTS = (
    "SELECT (SELECT COUNT(*) FROM token_blacklist_outstandingtoken), "
    "(SELECT COUNT(*) FROM token_blacklist_blacklistedtoken)"
)
HISTORY = (
    "SELECT outcome, complete, outstanding_deleted, blacklisted_deleted, error "
    "FROM tokenops_purgerun"
)


def test_batches_halve_until_they_fit_and_the_purge_finishes(seeded_sqlite, small_filesystem):
    database = small_filesystem / "db.sqlite3"
    shutil.copy(seeded_sqlite, database)
    # About 3.5 MB free: a journal for all 20,000 rows does not fit, half of them does.
    done = run_manage(
        "token_purge",
        "--batch-size",
        "100000",
        "--format",
        "json",
        env=project_env(sqlite_url(database)),
    )

    assert (done.returncode, done.stderr) == (0, "")
    result = json.loads(done.stdout)
    assert result["deleted"] == {"outstanding": 20000, "blacklisted": 20000}
    assert result["complete"] is True
    assert result["batches"] > 1, "one batch for everything: the disk was not full"
    assert sqlite_rows(database, COUNTS) == [(5, 0)]
    assert sqlite_rows(database, ORPHANS) == [(0,)]
    assert sqlite_rows(database, HISTORY) == [("ok", 1, 20000, 20000, "")]


def test_no_room_for_one_row_is_one_line_that_says_what_to_do(seeded_sqlite, small_filesystem):
    database = small_filesystem / "db.sqlite3"
    shutil.copy(seeded_sqlite, database)
    fill_up(small_filesystem)

    done = run_manage("token_purge", env=project_env(sqlite_url(database)))

    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "CommandError: Database 'default' is out of space (database or disk is full), even "
        "for a batch of one row: free disk space, then run token_purge again.\n",
    )
    # Nothing was deleted, nothing half-deleted; not even the history row had room.
    assert sqlite_rows(database, COUNTS) == [(20005, 20000)]
    assert sqlite_rows(database, ORPHANS) == [(0,)]
    assert sqlite_rows(database, HISTORY) == []
