"""Shared fixtures: token rows with chosen expiries, and running manage.py in-process."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import ManagementUtility
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def stored(moment: datetime) -> datetime:
    """``moment`` (aware UTC) as simplejwt stores it: naive UTC when USE_TZ is False."""
    return moment if settings.USE_TZ else moment.astimezone(timezone.utc).replace(tzinfo=None)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def manage(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``manage.py <args>`` through Django's real command-line path.

    Needs ``transactional_db`` (the command-line path closes connections at the end).
    """

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = 0
        try:
            ManagementUtility(["manage.py", *args]).execute()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def make_tokens(db: None) -> Callable[..., list[OutstandingToken]]:
    """Create OutstandingToken rows expiring at the given aware datetimes."""

    def make(
        expiries: Iterable[datetime],
        *,
        blacklisted: bool = False,
        user: object | None = None,
        using: str = "default",
    ) -> list[OutstandingToken]:
        if user is None:
            user, _ = (
                get_user_model()._default_manager.db_manager(using).get_or_create(username="alice")
            )
        rows = []
        for expires in expiries:
            row = OutstandingToken.objects.using(using).create(
                user=user,
                jti=uuid.uuid4().hex,
                token="header.payload.signature",
                created_at=stored(utcnow()),
                expires_at=stored(expires),
            )
            if blacklisted:
                BlacklistedToken.objects.using(using).create(token=row)
            rows.append(row)
        return rows

    return make
