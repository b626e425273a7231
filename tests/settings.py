"""Test settings: the example project's, on the database TOKENOPS_TEST_DB names.

TOKENOPS_TEST_DB=sqlite (default) | postgres | mysql; DATABASE_URL, when set, wins.
The servers are the ones on this machine (127.0.0.1); a backend asked for and not
reachable fails the run, it is never skipped.
"""

import os
import tempfile
from pathlib import Path

import dj_database_url

from my_bathhouse_backend.settings import *  # noqa: F403
from my_bathhouse_backend.settings import BASE_DIR

TEST_DB = os.environ.get("TOKENOPS_TEST_DB", "sqlite")
TEST_DIR = Path(tempfile.gettempdir()) / f"tokenops-tests-{os.getpid()}"
TEST_DIR.mkdir(exist_ok=True)

SERVERS = {
    "postgres": "postgres://postgres@127.0.0.1:5432/postgres",
    "mysql": "mysql://root@127.0.0.1:3306/test",
}

if os.environ.get("DATABASE_URL"):
    default = dj_database_url.config(conn_max_age=0)
elif TEST_DB == "sqlite":
    default = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        "TEST": {"NAME": str(TEST_DIR / "default.sqlite3")},
    }
elif TEST_DB in SERVERS:
    default = dj_database_url.parse(SERVERS[TEST_DB], conn_max_age=0)
else:
    raise RuntimeError(f"TOKENOPS_TEST_DB={TEST_DB!r}: use sqlite, postgres or mysql")

# Parallel runs against one server need distinct test databases.
SUFFIX = os.environ.get("TOKENOPS_TEST_DB_SUFFIX", "")
if TEST_DB in SERVERS or os.environ.get("DATABASE_URL"):
    default.setdefault("TEST", {})["NAME"] = f"test_tokenops{SUFFIX}"

if default["ENGINE"].endswith("mysql"):
    default.setdefault("OPTIONS", {})["charset"] = "utf8mb4"
    default.setdefault("TEST", {})["CHARSET"] = "utf8mb4"

DATABASES = {
    "default": default,
    # A second, always-SQLite database: --database must really switch databases.
    "secondary": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(TEST_DIR / "secondary-dev.sqlite3"),
        "TEST": {"NAME": str(TEST_DIR / "secondary.sqlite3")},
    },
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
