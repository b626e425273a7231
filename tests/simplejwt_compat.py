"""What simplejwt 5.5 does and the oldest simplejwt tokenops claims (5.3.1) does not.

simplejwt 5.5 added ``Token.outstand()`` and calls it in ``TokenRefreshSerializer`` for
the rotated refresh token; before 5.5 a token got its OutstandingToken row only from
``for_user`` or ``blacklist``. ``outstand(token)`` is simplejwt's own method where it
exists, else the same row written by the same code (rest_framework_simplejwt/tokens.py,
5.5.0), so the tests build the same tables on every simplejwt in the tested matrix.

Import it after ``django.setup()``.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import datetime_from_epoch

# simplejwt >= 5.5: outstand() exists and the refresh serializer records rotated tokens.
HAS_OUTSTAND = hasattr(Token, "outstand")


def outstand(token: Token) -> OutstandingToken:
    """``token.outstand()``: the token's OutstandingToken row, created when missing."""
    if HAS_OUTSTAND:
        return token.outstand()
    # Copied from simplejwt 5.5.0 Token.outstand (a method of BlacklistMixin's classes).
    jti = token.payload[api_settings.JTI_CLAIM]
    exp = token.payload["exp"]
    user_id = token.payload.get(api_settings.USER_ID_CLAIM)
    user_model = get_user_model()
    try:
        user = user_model.objects.get(**{api_settings.USER_ID_FIELD: user_id})
    except user_model.DoesNotExist:
        user = None
    return OutstandingToken.objects.get_or_create(
        jti=jti,
        defaults={
            "user": user,
            "created_at": token.current_time,
            "token": str(token),
            "expires_at": datetime_from_epoch(exp),
        },
    )
