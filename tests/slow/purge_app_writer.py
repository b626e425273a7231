"""The app, working while a purge runs: issue, rotate and blacklist simplejwt refresh tokens.

Run as a script with DATABASE_URL and DJANGO_SETTINGS_MODULE set; loops until the file
named by ``--stop`` exists, then checks every token it made through simplejwt and prints
one JSON object: iterations, errors, lost or wrong tokens, and when each write finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.serializers import TokenRefreshSerializer
    from rest_framework_simplejwt.settings import api_settings
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
    from rest_framework_simplejwt.tokens import RefreshToken

    from tests.simplejwt_compat import HAS_OUTSTAND, outstand

    assert api_settings.ROTATE_REFRESH_TOKENS and api_settings.BLACKLIST_AFTER_ROTATION
    user, _ = get_user_model().objects.get_or_create(username="app-user")
    live: list[str] = []
    blacklisted: list[str] = []
    errors: list[str] = []
    finished_at: list[float] = []
    longest = 0.0
    iterations = 0
    while not args.stop.exists():
        started = time.monotonic()
        try:
            token = RefreshToken.for_user(user)  # login
            serializer = TokenRefreshSerializer(data={"refresh": str(token)})
            serializer.is_valid(raise_exception=True)  # rotation blacklists the old one
            blacklisted.append(str(token))
            rotated = serializer.validated_data["refresh"]
            if not HAS_OUTSTAND:
                # simplejwt < 5.5 leaves the rotated token out of OutstandingToken; record
                # it as 5.5's serializer does, so every token made here has a row to keep.
                outstand(RefreshToken(rotated))
            if iterations % 2:
                RefreshToken(rotated).blacklist()  # logout
                blacklisted.append(rotated)
            else:
                live.append(rotated)
        except Exception as exc:  # the test reports every failure, whatever it is
            errors.append(f"{type(exc).__name__}: {exc}")
        longest = max(longest, time.monotonic() - started)
        finished_at.append(time.time())
        iterations += 1
        if iterations == 1:
            args.ready.touch()

    wrong: list[str] = []
    for text in live:
        try:
            RefreshToken(text)
        except TokenError as exc:
            wrong.append(f"live token rejected: {exc}")
    for text in blacklisted:
        try:
            RefreshToken(text)
            wrong.append("blacklisted token accepted")
        except TokenError:
            pass
    jtis = [RefreshToken(text, verify=False)["jti"] for text in live + blacklisted]
    lost = len(jtis) - OutstandingToken.objects.filter(jti__in=jtis).count()
    json.dump(
        {
            "iterations": iterations,
            "live": len(live),
            "blacklisted": len(blacklisted),
            "errors": errors,
            "wrong": wrong,
            "lost_rows": lost,
            "longest_write_seconds": longest,
            "finished_at": finished_at,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
