"""Fill the token tables with realistic demo data: real signed simplejwt refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, transaction
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from tokenops.durations import parse_duration
from tokenops.errors import TokenopsError

CHUNK = 5000

HMAC_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class FastSigner:
    """Sign demo payloads as ``token_backend.encode`` does, about four times faster.

    PyJWT spends most of its time preparing the key and re-encoding the header for every
    token. For HMAC algorithms this signer does that once; its first token is compared with
    simplejwt's own and, if they differ (another algorithm, an audience, an issuer...),
    every token goes through simplejwt instead. The tokens are real either way.
    """

    def __init__(self) -> None:
        digest = HMAC_HASHES.get(token_backend.algorithm)
        self.fast = digest is not None and isinstance(token_backend.signing_key, (str, bytes))
        self.checked = False
        if self.fast:
            key = token_backend.signing_key
            self.key = key.encode() if isinstance(key, str) else key
            self.digest = digest
            header = {"alg": token_backend.algorithm, "typ": "JWT"}
            self.header = b64(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())

    def sign(self, payload: dict[str, Any]) -> str:
        if not self.fast:
            return token_backend.encode(payload)
        body = self.header + b"." + b64(json.dumps(payload, separators=(",", ":")).encode())
        token = (body + b"." + b64(hmac.new(self.key, body, self.digest).digest())).decode()
        if not self.checked:
            self.checked = True
            reference = token_backend.encode(payload)
            if token != reference:
                self.fast = False
                return reference
        return token


class Command(BaseCommand):
    help = (
        "Create demo users and real simplejwt refresh tokens issued over the last --days, "
        "with --lifetime each, a share of them blacklisted (bulk inserts)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=1000, help="Tokens to create.")
        parser.add_argument(
            "--users", type=int, default=1000, help="Demo users to spread them over."
        )
        parser.add_argument(
            "--days", type=float, default=60.0, help="Issue tokens over this many past days."
        )
        parser.add_argument("--lifetime", default="7d", help="Lifetime of each token (default 7d).")
        parser.add_argument(
            "--blacklisted", type=float, default=0.3, help="Share blacklisted (0..1)."
        )
        parser.add_argument(
            "--seed", type=int, help="Random seed for repeatable data (default: new data each run)."
        )
        parser.add_argument(
            "--ordered",
            action="store_true",
            help="Issue times follow the ids, as in a real table (expired rows are the low "
            "ids); default: issue times scattered at random over the ids.",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(
        self,
        *,
        count: int,
        users: int,
        days: float,
        lifetime: str,
        blacklisted: float,
        seed: int | None,
        ordered: bool = False,
        database: str = DEFAULT_DB_ALIAS,
        verbosity: int,
        **options: Any,
    ) -> None:
        if count < 0 or users < 1 or days < 0 or not 0 <= blacklisted <= 1:
            raise CommandError(
                "--count >= 0, --users >= 1, --days >= 0 and 0 <= --blacklisted <= 1."
            )
        try:
            life = parse_duration(lifetime)
        except TokenopsError as exc:
            raise CommandError(str(exc)) from exc
        started = time.monotonic()
        rng = random.Random(seed)
        self.signer = FastSigner()
        user_ids = self.ensure_users(users, database)
        made = black = 0
        now = datetime.now(UTC)
        while made < count:
            size = min(CHUNK, count - made)
            rows = [
                self.make_row(
                    rng,
                    rng.choice(user_ids),
                    now,
                    days,
                    life,
                    # Row i of n is issued within the i-th n-th of the period, oldest first.
                    slot=(made + index, count) if ordered else None,
                )
                for index in range(size)
            ]
            with transaction.atomic(using=database):
                created = OutstandingToken.objects.using(database).bulk_create(rows)
                if created and created[0].pk is None:
                    by_jti = dict(
                        OutstandingToken.objects.using(database)
                        .filter(jti__in=[r.jti for r in rows])
                        .values_list("jti", "pk")
                    )
                    for row in created:
                        row.pk = by_jti[row.jti]
                chosen = [
                    BlacklistedToken(token_id=r.pk) for r in created if rng.random() < blacklisted
                ]
                BlacklistedToken.objects.using(database).bulk_create(chosen)
            made += size
            black += len(chosen)
        if verbosity:
            self.stdout.write(
                f"Created {made} tokens ({black} blacklisted) for {len(user_ids)} users "
                f"in {time.monotonic() - started:.1f} s."
            )

    def ensure_users(self, users: int, database: str) -> list[Any]:
        user_model = get_user_model()
        manager = user_model._default_manager.db_manager(database)
        names = [f"demo{index:05d}" for index in range(users)]
        existing = set(manager.filter(username__in=names).values_list("username", flat=True))
        password = make_password(None)
        manager.bulk_create(
            [user_model(username=name, password=password) for name in names if name not in existing]
        )
        return list(manager.filter(username__in=names).values_list("pk", flat=True))

    def make_row(
        self,
        rng: random.Random,
        user_id: Any,
        now: datetime,
        days: float,
        life: timedelta,
        slot: tuple[int, int] | None = None,
    ) -> OutstandingToken:
        if slot is None:
            issued = now - timedelta(seconds=rng.uniform(0, days * 86400))
        else:
            index, total = slot
            age = 1 - (index + rng.random()) / total
            issued = now - timedelta(seconds=age * days * 86400)
        iat = int(issued.timestamp())
        exp = int((issued + life).timestamp())
        jti = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        # The claims RefreshToken() would set; the signer gives the token simplejwt's
        # backend would (checked on the first token), without building Token objects.
        payload = {
            api_settings.TOKEN_TYPE_CLAIM: RefreshToken.token_type,
            "exp": exp,
            "iat": iat,
            api_settings.JTI_CLAIM: jti,
            api_settings.USER_ID_CLAIM: str(user_id),
        }
        return OutstandingToken(
            user_id=user_id,
            jti=jti,
            token=self.signer.sign(payload),
            created_at=datetime_from_epoch(iat),
            expires_at=datetime_from_epoch(exp),
        )
