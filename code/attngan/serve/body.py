"""Request bodies bounded in bytes and in time, by an ASGI receive wrapper.

The bytes are counted as the server hands them to the app, whatever the framing
(``Content-Length`` or chunked), so a chunked body cannot pass the limit that a declared
length would not. uvicorn bounds neither the body nor the time it takes to arrive: without
a deadline a client sending one byte a minute holds a connection and a request for ever.

FastAPI (0.164+) has a ``max_body_size`` of its own, but it answers a request that declares
too long a body with a plain-text 413 in place of whatever the app answers, which breaks
the JSON errors of this API, and it has no deadline: hence this small wrapper.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyError(HTTPException):
    """A body the server will not read to its end; the connection is closed after the answer
    (the rest of the body is never read, so the connection cannot carry another request)."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message, headers={"Connection": "close"})


def too_large(size: str, max_bytes: int) -> BodyError:
    return BodyError(413, f"body: {size}; at most {max_bytes} (attngan-serve --max-body-bytes)")


class BodyGuard:
    """ASGI middleware: while the app reads a request's body, more than ``max_bytes`` raises
    a 413 BodyError as soon as they have arrived, and a body not complete ``timeout_s``
    seconds after the request began raises a 408 one. A declared ``Content-Length`` over the
    limit is refused before a byte is read. The app's exception handlers answer them."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        declared = Headers(scope=scope).get("content-length", "")
        received, complete = 0, False

        async def guarded() -> Message:
            nonlocal received, complete
            if complete:  # after the body: http.disconnect, whenever it comes
                return await receive()
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise too_large(f"{int(declared)} bytes", self.max_bytes)
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                raise BodyError(
                    408,
                    f"body: {received} bytes arrived in {self.timeout_s:g} s and it was not complete "
                    "(attngan-serve --body-timeout-s)",
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(f"more than {self.max_bytes} bytes", self.max_bytes)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        await self.app(scope, guarded, send)
