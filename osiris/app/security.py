"""Secrets: password hashes (argon2), opaque API tokens (hashed), short-lived JWTs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "osr_"
ACCESS_TOKEN_PREFIX = "osa_"  # OAuth access tokens (osiris/app/oauth.py), hashed the same way
TOKENS_CHANNEL = "osiris_tokens"  # NOTIFY payload: the hash of a token that stopped being valid
_hasher = PasswordHasher()
# Verifying against this keeps the time of an unknown-user login equal to a wrong-password one. A
# constant (of "osiris-timing-equaliser"): hashing it at import cost every start a tenth of a second
# (issue 17). tests/app/test_start_up.py checks it has the hasher's parameters, i.e. costs the same.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$a5lLmOGJW5OPt2oESoGt3A$WdTnJWX46RH2m23FhfrD4mqxi3ObqjZMXLf1ibZOZ7s"
)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def issue_jwt(*, user_id: int, org_id: int, role: str, key: str, ttl_seconds: int) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "org": org_id,
        "role": role,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
        "typ": "access",
    }
    return jwt.encode(claims, key, algorithm="HS256")


def decode_jwt(token: str, *, key: str) -> dict:
    """Raises jwt.InvalidTokenError on a bad signature, expiry or shape."""
    return jwt.decode(token, key, algorithms=["HS256"], options={"require": ["sub", "exp", "org"]})
