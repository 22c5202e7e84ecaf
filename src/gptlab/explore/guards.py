"""What stands between the network and the explorer's routes (ASGI wrappers and uvicorn's protocol).

    Host check     bound to loopback, only a loopback Host (localhost, 127.0.0.1, [::1], with the
                   served port) is answered: a web page that rebinds its own DNS name to 127.0.0.1
                   (DNS rebinding) would otherwise drive the API from the user's browser
    body limit     over MAX_BODY_BYTES: 413; a JSON body nested deeper than fileio's
                   MAX_JSON_DEPTH: 400; a body that stops arriving for BODY_TIMEOUT_S: 408
    header time    a connection that has not sent a whole request head within HEADER_TIMEOUT_S is
                   closed (uvicorn itself waits forever for one; its keep-alive timeout only runs
                   between requests)

Every refusal is the API's error shape, {"error": "one line"}.
"""

from __future__ import annotations

import asyncio
import json

from gptlab.fileio import MAX_JSON_DEPTH, loads_json

HEADER_TIMEOUT_S = 10.0  # a request head is a few hundred bytes: even a slow link sends it in 10 s
BODY_TIMEOUT_S = 30.0  # the longest pause allowed between chunks of a request body
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


async def send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LoopbackHostOnly:
    """Answer 400 to a request whose Host header is not this loopback server's own name."""

    def __init__(self, app, port: int):
        self.app = app
        self.allowed = {name.encode() for name in LOOPBACK_NAMES}
        self.allowed |= {f"{name}:{port}".encode() for name in LOOPBACK_NAMES}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope.get("headers", [])).get(b"host", b"").lower()
            if host not in self.allowed:
                shown = host.decode("latin-1")[:100] or "none"
                return await send_error(
                    send,
                    400,
                    f"Host {shown!r} is not this server's: it answers only "
                    f"{', '.join(LOOPBACK_NAMES)} (a page on another site may not use it)",
                )
        return await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413) whether the client declares the size
    (Content-Length) or streams it in chunks, JSON bodies nested too deeply (400), and bodies that
    stall (408)."""

    def __init__(self, app, limit: int, http_exception: type):
        self.app = app
        self.limit = limit
        self.http_exception = http_exception

    def __getattr__(self, name: str):  # app.openapi(), app.routes ... reach the FastAPI app
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await send_error(send, 413, self.too_large())
        chunks: list[bytes] = []
        complete = False

        async def guarded_receive():
            # Raised here, the HTTPExceptions become FastAPI's JSON answers (see create_app).
            nonlocal complete
            if complete:  # the body is in: later receives wait for a disconnect, as long as needed
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_TIMEOUT_S)
            except TimeoutError:
                raise self.http_exception(
                    408, f"the request body stopped arriving for {BODY_TIMEOUT_S:.0f} s"
                ) from None
            chunks.append(message.get("body", b""))
            if sum(map(len, chunks)) > self.limit:
                raise self.http_exception(413, self.too_large())
            if not message.get("more_body", False):
                complete = True
                self.check_depth(b"".join(chunks))
            return message

        await self.app(scope, guarded_receive, send)

    def check_depth(self, body: bytes) -> None:
        if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
            return  # too few brackets to nest too deeply: the common case costs one count
        try:
            loads_json(body)
        except json.JSONDecodeError as exc:
            if "nested" in exc.msg:
                raise self.http_exception(
                    400, f"the request body's JSON is {exc.msg}; send a flat JSON object"
                ) from None
        except ValueError:
            pass  # not JSON at all: FastAPI's own answer (422) says so

    def too_large(self) -> str:
        return f"the request body is over {self.limit // 1_000_000} MB; send a shorter prompt"


def header_timeout_protocol():
    """uvicorn's h11 protocol, closing a connection that leaves a request head unfinished for
    HEADER_TIMEOUT_S (a client that connects and sends nothing, or half a request line)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:  # partway through a request head
                self.arm()

        def connection_lost(self, exc) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
            super().connection_lost(exc)

        def arm(self) -> None:
            if self.deadline is None and not self.transport.is_closing():
                self.deadline = self.loop.call_later(HEADER_TIMEOUT_S, self.head_overdue)

        def head_overdue(self) -> None:
            self.deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()
            elif not self.transport.is_closing():
                self.arm()  # a request is under way: watch the next one's head

    return HeaderTimeoutH11Protocol
