"""A local stand-in for the company's OpenID Connect provider, for the inbox's sign-in tests.

It speaks the protocol at the network edge, as a real provider does:
``/.well-known/openid-configuration``, ``/authorize`` (the person is already
signed in at the provider: it answers at once with a code for `person`),
``/token`` (client_secret_basic, single-use codes, PKCE S256 checked) and
``/jwks`` (the public half of an RS256 key made for this run). The test sets
`person` (the claims of whoever signs in) and, to play a hostile or broken
provider, `tamper` (claims overridden in the next ID tokens), `foreign_key`
(sign with a key that is not published) or `hs256` (sign with HS256 and the client secret).

    with OidcStandIn(client_id="inbox", client_secret="s3cret") as provider:
        provider.person = {"sub": "42", "preferred_username": "robin"}
        provider.issuer  # http://127.0.0.1:PORT
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.jose import JsonWebKey, jwt


class OidcStandIn:
    """The provider, on a free loopback port in a background thread."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "standin-1"})
        self.other_key = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "standin-1"})
        self.person: Dict[str, Any] = {"sub": "1"}
        self.tamper: Dict[str, Any] = {}
        self.foreign_key = False
        self.hs256 = False  # sign with HS256 and the client secret (an algorithm the inbox must not accept)
        self.codes: Dict[str, Dict[str, Any]] = {}
        self.authorize_requests: List[Dict[str, str]] = []
        self.token_requests: List[Dict[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "OidcStandIn":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ protocol
    def discovery(self) -> Dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def authorize(self, query: Dict[str, str]) -> str:
        """The redirect back to the client, with a code (or an error)."""
        self.authorize_requests.append(query)
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return f"{redirect}?{urllib.parse.urlencode({'error': 'unauthorized_client', 'state': query.get('state', '')})}"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return f"{redirect}?{urllib.parse.urlencode({'error': 'invalid_request', 'state': query.get('state', '')})}"
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"nonce": query.get("nonce"), "challenge": query["code_challenge"], "redirect_uri": redirect,
                            "person": dict(self.person)}
        return f"{redirect}?{urllib.parse.urlencode({'code': code, 'state': query.get('state', '')})}"

    def token(self, form: Dict[str, str], authorization: str) -> tuple:
        """(status, JSON body) of the token endpoint."""
        self.token_requests.append(form)
        expected = "Basic " + base64.b64encode(
            f"{urllib.parse.quote(self.client_id)}:{urllib.parse.quote(self.client_secret)}".encode()).decode()
        if authorization != expected:
            return 401, {"error": "invalid_client"}
        grant = self.codes.pop(form.get("code", ""), None)  # single use
        if form.get("grant_type") != "authorization_code" or grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                  **grant["person"], **self.tamper}
        if self.hs256:
            id_token = jwt.encode({"alg": "HS256"}, claims, self.client_secret).decode()
        else:
            key = self.other_key if self.foreign_key else self.key
            id_token = jwt.encode({"alg": "RS256", "kid": "standin-1"}, claims, key).decode()
        return 200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300, "id_token": id_token}

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif url.path == "/jwks":
                    self._json(200, {"keys": [provider.key.as_dict(is_private=False)]})
                elif url.path == "/authorize":
                    self.send_response(302)
                    self.send_header("Location", provider.authorize(dict(urllib.parse.parse_qsl(url.query))))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                if urllib.parse.urlsplit(self.path).path != "/token":
                    self._json(404, {"error": "not found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                self._json(*provider.token(form, self.headers.get("Authorization", "")))

        return Handler


def no_redirects() -> Any:
    """A urllib opener that returns 3xx answers instead of following them (to walk the flow step by step)."""
    import urllib.request

    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> Optional[Any]:
            return None

    return urllib.request.build_opener(Stop)
