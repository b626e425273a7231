"""Helpers the token_purge tests share: table snapshots, bulk rows, real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.db import connections
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.conftest import stored

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

OUTSTANDING_FIELDS = ("pk", "jti", "token", "user_id", "created_at", "expires_at")


def snapshot(using: str = "default") -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every column of every row of both tables, in primary-key order."""
    outstanding = list(
        OutstandingToken.objects.using(using).order_by("pk").values_list(*OUTSTANDING_FIELDS)
    )
    blacklisted = list(
        BlacklistedToken.objects.using(using)
        .order_by("pk")
        .values_list("pk", "token_id", "blacklisted_at")
    )
    return outstanding, blacklisted


def bulk_tokens(
    expiries: Iterable[datetime],
    *,
    blacklisted: Iterable[bool] | None = None,
    user: Any = None,
    using: str = "default",
    chunk: int = 5000,
) -> list[int]:
    """Insert rows fast (bulk, short fake JWT text); returns their primary keys in order."""
    expiries = list(expiries)
    flags = list(blacklisted) if blacklisted is not None else [False] * len(expiries)
    now = stored(datetime.now(timezone.utc))
    pks: list[int] = []
    for start in range(0, len(expiries), chunk):
        rows = [
            OutstandingToken(
                user=user,
                jti=uuid.uuid4().hex,
                token="header.payload.signature",
                created_at=now,
                expires_at=stored(expires),
            )
            for expires in expiries[start : start + chunk]
        ]
        OutstandingToken.objects.using(using).bulk_create(rows)
        by_jti = dict(
            OutstandingToken.objects.using(using)
            .filter(jti__in=[row.jti for row in rows])
            .values_list("jti", "pk")
        )
        pks.extend(by_jti[row.jti] for row in rows)
    BlacklistedToken.objects.using(using).bulk_create(
        [BlacklistedToken(token_id=pk) for pk, flag in zip(pks, flags, strict=True) if flag],
        batch_size=chunk,
    )
    return pks


def orphan_blacklist_rows(using: str = "default") -> int:
    """Blacklist rows whose outstanding row is gone (a FK the database may not enforce)."""
    ids = OutstandingToken.objects.using(using).values("pk")
    return BlacklistedToken.objects.using(using).exclude(token_id__in=ids).count()


def database_url(using: str = "default") -> str:
    """A DATABASE_URL for the database this test process is using (the test database)."""
    conn = connections[using].settings_dict
    engine = conn["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"sqlite:///{Path(conn['NAME']).resolve()}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[engine]
    user = quote(conn.get("USER") or "")
    password = f":{quote(conn['PASSWORD'])}" if conn.get("PASSWORD") else ""
    host = conn.get("HOST") or "127.0.0.1"
    port = f":{conn['PORT']}" if conn.get("PORT") else ""
    return f"{scheme}://{user}{password}@{host}{port}/{conn['NAME']}"


def env_for(url: str, settings_module: str = "my_bathhouse_backend.settings", **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE=settings_module,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def manage_process(url: str, *args: str, **kwargs: Any) -> subprocess.Popen:
    """Start ``python manage.py <args>`` on ``url`` in its own process."""
    settings_module = kwargs.pop("settings_module", "my_bathhouse_backend.settings")
    return subprocess.Popen(
        [PYTHON, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env_for(url, settings_module),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def run_manage(url: str, *args: str, timeout: float = 300, **kwargs: Any):
    process = manage_process(url, *args, **kwargs)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_until(predicate, *, timeout: float, interval: float = 0.02, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
