"""Customer tokens: how the widget learns which signed-in customer is on the page.

The company's own website backend signs a short-lived JWT for its signed-in
customer and puts it in the page (``data-customer-token``). The assistant only
verifies; it never signs a token on request. The key is, from the environment:

- ``WEB_CUSTOMER_TOKEN_SECRET``: an HS256 shared secret, or
- ``WEB_CUSTOMER_TOKEN_PUBLIC_KEY``: a PEM public key, RS256 (RSA) or ES256 (P-256).

A token is believed when it is signed with that key and algorithm (nothing
else, ``alg: none`` included), names the configured issuer (``iss``) and
audience (``aud``), has ``exp``, lives no longer than
``web_token_max_lifetime_s`` (``exp - iat``, or ``exp - now`` without ``iat``),
and ``sub`` is a customer id (`bot.security.identity.CUSTOMER_ID`); clocks may
differ by ``web_token_leeway_s``.

In demo mode only, the demo page signs in ``?customer=<id>`` with a demo key
made at random when the process starts (`demo_token`); that key is believed in
demo mode only.
"""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bot.security.identity import CUSTOMER_ID, is_demo

# Random per process: a demo token from one run is worthless in the next, and in any other mode.
_DEMO_KEY = secrets.token_bytes(32)
DEMO_ISSUER = "assistant-demo"


class CustomerTokenError(ValueError):
    """A customer token that is not believed; the message says why, briefly."""


def _public_key_algorithm(pem: str) -> Tuple[object, str]:
    try:
        key = load_pem_public_key(pem.encode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"WEB_CUSTOMER_TOKEN_PUBLIC_KEY is not a PEM public key: {exc}") from exc
    if isinstance(key, rsa.RSAPublicKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise ValueError("WEB_CUSTOMER_TOKEN_PUBLIC_KEY must be an RSA or a P-256 (ES256) public key")


@dataclass
class TokenVerifier:
    """Checks customer tokens against the configured key (and, in demo mode, the demo key)."""

    keys: List[Tuple[object, str, str]] = field(default_factory=list)  # (key, algorithm, issuer)
    audience: str = "northwind-assistant"
    max_lifetime_s: int = 900
    leeway_s: int = 30

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None, settings=None) -> "TokenVerifier":
        """The verifier for this process: the website's key from the environment, the demo key in demo mode."""
        from core.settings import get_settings

        environ = os.environ if environ is None else environ
        settings = settings or get_settings()
        keys: List[Tuple[object, str, str]] = []
        secret = (environ.get("WEB_CUSTOMER_TOKEN_SECRET") or "").strip()
        pem = (environ.get("WEB_CUSTOMER_TOKEN_PUBLIC_KEY") or "").strip()
        if secret:
            keys.append((secret, "HS256", settings.web_token_issuer))
        if pem:
            key, algorithm = _public_key_algorithm(pem.replace("\\n", "\n"))
            keys.append((key, algorithm, settings.web_token_issuer))
        if is_demo():
            keys.append((_DEMO_KEY, "HS256", DEMO_ISSUER))
        return cls(keys, settings.web_token_audience, settings.web_token_max_lifetime_s, settings.web_token_leeway_s)

    @property
    def enabled(self) -> bool:
        """Whether any signed-in customer can be believed (otherwise the widget is anonymous-only)."""
        return bool(self.keys)

    def verify(self, token: object, now: Optional[float] = None) -> str:
        """The customer id (``sub``) of a believed `token`; raises `CustomerTokenError` otherwise."""
        if not self.keys:
            raise CustomerTokenError("signed-in customers are off: no customer token key is configured")
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise CustomerTokenError("the customer token must be a JWT string")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise CustomerTokenError("the customer token is not a JWT") from None
        problem = "the customer token is signed with an algorithm this server does not accept"
        for key, algorithm, issuer in self.keys:
            if header.get("alg") != algorithm:
                continue
            try:
                claims = jwt.decode(
                    token, key, algorithms=[algorithm], audience=self.audience, issuer=issuer,
                    leeway=self.leeway_s, options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except jwt.ExpiredSignatureError:
                raise CustomerTokenError("the customer token has expired") from None
            except jwt.InvalidAudienceError:
                raise CustomerTokenError("the customer token is for another audience") from None
            except jwt.InvalidIssuerError:
                problem = "the customer token is from another issuer"
                continue  # the demo key and the website's may share HS256
            except jwt.MissingRequiredClaimError as exc:
                raise CustomerTokenError(f"the customer token lacks the '{exc.claim}' claim") from None
            except jwt.InvalidSignatureError:
                problem = "the customer token's signature does not match"
                continue
            except jwt.PyJWTError as exc:
                raise CustomerTokenError(f"the customer token is invalid ({type(exc).__name__})") from None
            return self._customer(claims, now)
        raise CustomerTokenError(problem)

    def _customer(self, claims: dict, now: Optional[float]) -> str:
        now = time.time() if now is None else now
        try:
            exp = float(claims["exp"])
            iat = float(claims["iat"]) if "iat" in claims else None
        except (TypeError, ValueError):
            raise CustomerTokenError("the customer token's times are not numbers") from None
        lifetime = exp - iat if iat is not None else exp - now
        if lifetime > self.max_lifetime_s + self.leeway_s:
            raise CustomerTokenError(
                f"the customer token lives too long ({int(lifetime)} s; at most {self.max_lifetime_s} s)"
            )
        customer = claims.get("sub")
        if not isinstance(customer, str) or not CUSTOMER_ID.match(customer) or customer.startswith("anon-"):
            raise CustomerTokenError("the customer token's 'sub' is not a customer id")
        return customer


def demo_token(customer_id: str, lifetime_s: Optional[int] = None) -> str:
    """A token for `customer_id` signed with this process's demo key; demo mode only.

    Raises `PermissionError` outside demo mode: the chat server never mints
    customer tokens for a real site.
    """
    if not is_demo():
        raise PermissionError("customer tokens are minted only in demo mode (ASSISTANT_ENV=demo)")
    from core.settings import get_settings

    settings = get_settings()
    now = int(time.time())
    claims = {
        "sub": customer_id, "iss": DEMO_ISSUER, "aud": settings.web_token_audience,
        "iat": now, "exp": now + (lifetime_s or settings.web_token_max_lifetime_s),
    }
    return jwt.encode(claims, _DEMO_KEY, "HS256")
