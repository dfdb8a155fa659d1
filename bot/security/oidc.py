"""Optional staff sign-in through the company's OpenID Connect provider (authlib).

Configured by INBOX_OIDC_ISSUER, INBOX_OIDC_CLIENT_ID and INBOX_OIDC_CLIENT_SECRET
(INBOX_OIDC_REDIRECT_URI when the inbox is reached under another address than
the one its requests carry, e.g. behind a proxy that rewrites the host).

The authorization code flow with PKCE (S256), ``state`` and ``nonce``: `begin`
makes the provider's URL and the values the browser keeps for the way back
(in a short-lived cookie); `finish` swaps the code for tokens at the token
endpoint and accepts the ID token only when its signature checks against the
provider's published keys (JWKS), and ``iss``, ``aud``, ``exp`` and ``nonce``
are right. The provider only proves who the person is: the inbox still needs
an enabled staff account whose username is the token's ``preferred_username``
or ``email`` (`account_for`).
"""
from __future__ import annotations

import os
import secrets
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
with warnings.catch_warnings():  # authlib 1.x announces joserfc; its jose module stays until 2.0
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.jose.errors import JoseError
    from authlib.oidc.core import CodeIDToken
try:  # authlib >= 1.6 checks claims with joserfc, which raises its own errors
    from joserfc.errors import JoseError as _JoserfcError

    TOKEN_ERRORS: tuple = (JoseError, _JoserfcError)
except ImportError:
    TOKEN_ERRORS = (JoseError,)
from sqlalchemy.engine import Engine

from bot.security import staff

# Asymmetric algorithms only: an HS256 token "signed" with the provider's public key is refused.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
PENDING_SECONDS = 600  # a sign-in must come back from the provider within 10 minutes
LEEWAY_SECONDS = 30  # clock skew allowed on exp / iat
_CACHE_SECONDS = 3600  # discovery document and keys are fetched again after an hour


class OidcError(RuntimeError):
    """The provider's answer was refused; the message says why (shown to the person, audited)."""


@dataclass
class Pending:
    """What the browser keeps between leaving for the provider and coming back."""

    state: str
    nonce: str
    verifier: str
    started: float

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Any) -> Optional["Pending"]:
        """The pending sign-in in `data`, or None when it is malformed or too old."""
        try:
            pending = cls(str(data["state"]), str(data["nonce"]), str(data["verifier"]), float(data["started"]))
        except (KeyError, TypeError, ValueError):
            return None
        return pending if time.time() - pending.started <= PENDING_SECONDS else None


class OidcProvider:
    """One OpenID Connect provider, found through its discovery document."""

    def __init__(self, issuer: str, client_id: str, client_secret: str, redirect_uri: str = "", timeout: float = 10) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.timeout = timeout
        self._lock = threading.Lock()
        self._metadata: Optional[Dict[str, Any]] = None
        self._keys: Any = None
        self._fetched = 0.0

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Optional["OidcProvider"]:
        """The provider the environment configures, or None when INBOX_OIDC_ISSUER etc. are not all set."""
        environ = os.environ if environ is None else environ
        values = [(environ.get(name) or "").strip() for name in
                  ("INBOX_OIDC_ISSUER", "INBOX_OIDC_CLIENT_ID", "INBOX_OIDC_CLIENT_SECRET")]
        if not all(values):
            return None
        return cls(*values, redirect_uri=(environ.get("INBOX_OIDC_REDIRECT_URI") or "").strip())

    # ------------------------------------------------------------ provider documents
    def _get_json(self, url: str) -> Dict[str, Any]:
        try:
            answer = requests.get(url, timeout=self.timeout)
            answer.raise_for_status()
            return answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise OidcError(f"the sign-in provider could not be reached ({url}): {exc}") from exc

    def _refresh(self, force: bool = False) -> None:
        with self._lock:
            if not force and self._metadata is not None and time.time() - self._fetched < _CACHE_SECONDS:
                return
            metadata = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            if (metadata.get("issuer") or "").rstrip("/") != self.issuer:
                raise OidcError(f"the provider's discovery document names issuer {metadata.get('issuer')!r}, not {self.issuer!r}")
            for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not metadata.get(needed):
                    raise OidcError(f"the provider's discovery document has no {needed}")
            self._keys = JsonWebKey.import_key_set(self._get_json(metadata["jwks_uri"]))
            self._metadata = metadata
            self._fetched = time.time()

    def metadata(self) -> Dict[str, Any]:
        """The provider's discovery document (cached for an hour)."""
        self._refresh()
        return dict(self._metadata or {})

    # ------------------------------------------------------------ the flow
    def _client(self, redirect_uri: str) -> OAuth2Session:
        return OAuth2Session(
            self.client_id, self.client_secret, scope="openid profile email", redirect_uri=redirect_uri,
            code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic",
        )

    def begin(self, redirect_uri: str) -> Tuple[str, Pending]:
        """(URL to send the browser to, what it must keep until it comes back). Blocking (network)."""
        metadata = self.metadata()
        pending = Pending(state=generate_token(32), nonce=generate_token(32), verifier=generate_token(64), started=time.time())
        with self._client(self.redirect_uri or redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"], state=pending.state, nonce=pending.nonce, code_verifier=pending.verifier,
            )
        return url, pending

    def finish(self, code: str, state: str, pending: Optional[Pending], redirect_uri: str) -> Dict[str, Any]:
        """The checked ID token claims for the `code` the provider sent back; `OidcError` when anything is off."""
        if pending is None:
            raise OidcError("the sign-in started too long ago or in another browser: start again")
        if not state or not secrets.compare_digest(state, pending.state):
            raise OidcError("the provider's answer does not belong to this sign-in (state mismatch)")
        if not code:
            raise OidcError("the provider sent no authorization code")
        metadata = self.metadata()
        try:
            with self._client(self.redirect_uri or redirect_uri) as client:
                token = client.fetch_token(
                    metadata["token_endpoint"], grant_type="authorization_code", code=code,
                    code_verifier=pending.verifier, timeout=self.timeout,
                )
        except Exception as exc:  # authlib raises its own OAuthError, requests its own: both mean "refused"
            raise OidcError(f"the provider refused the authorization code: {exc}") from exc
        id_token = token.get("id_token")
        if not id_token:
            raise OidcError("the provider's answer has no ID token")
        return self._claims(id_token, pending.nonce)

    def _claims(self, id_token: str, nonce: str) -> Dict[str, Any]:
        options = {"iss": {"essential": True, "value": self.issuer}, "aud": {"essential": True, "value": self.client_id},
                   "exp": {"essential": True}, "sub": {"essential": True}, "nonce": {"essential": True, "value": nonce}}
        for attempt in (0, 1):
            try:
                claims = JsonWebToken(ALGORITHMS).decode(
                    id_token, self._keys, claims_cls=CodeIDToken, claims_options=options,
                    claims_params={"nonce": nonce, "client_id": self.client_id},
                )
                claims.validate(leeway=LEEWAY_SECONDS)
                return dict(claims)
            except ValueError as exc:  # no key with the token's kid: the provider may have rotated its keys
                if attempt == 0:
                    self._refresh(force=True)
                    continue
                raise OidcError(f"the ID token's signing key is not among the provider's keys ({exc})") from exc
            except TOKEN_ERRORS as exc:
                raise OidcError(f"the ID token was refused: {exc}") from exc
        raise OidcError("the ID token was refused")  # not reached


def account_for(engine: Optional[Engine], claims: Dict[str, Any]) -> Optional[staff.Account]:
    """The enabled staff account the provider's person is: username = preferred_username, else e-mail."""
    for claim in ("preferred_username", "email"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            if claim == "email" and claims.get("email_verified") is False:
                continue  # an unverified address proves nothing
            account = staff.get_account(engine, value)
            if account is not None and not account.disabled:
                return account
    return None
