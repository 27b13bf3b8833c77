"""`TokenGate`: the bearer token of `pepx serve`, checked before a request body is read.

An ASGI middleware in front of the application: a request to `/v1/...` without `Authorization: Bearer TOKEN`
(compared in constant time) is answered 401 at once, and its body is never received - so a client without
the token cannot make the server read, spool or parse an upload. FastAPI's security dependencies run only
after the form body has been parsed, which is why this is not one (the app keeps one for the OpenAPI page).
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/v1/"
DETAIL = "missing or wrong bearer token (Authorization: Bearer TOKEN)"


class TokenGate:
    """ASGI middleware: every HTTP request under `prefix` must carry `token` as a bearer token, else 401.

    Args:
        app: the application behind the gate.
        token: the token; requests are compared to it in constant time.
        prefix: the paths the gate covers (the page and its static files stay open).
    """

    def __init__(self, app: ASGIApp, token: str, prefix: str = PREFIX) -> None:
        self.app, self.token, self.prefix = app, token.encode(), prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "http" and scope["path"].startswith(self.prefix)
        if guarded and scope["method"] != "OPTIONS" and not self._authorized(scope):
            body = json.dumps({"detail": DETAIL}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"www-authenticate", b"Bearer"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)


__all__ = ["TokenGate"]
