"""`ApiServer`: the API app served by uvicorn on a thread of the service's process."""
from __future__ import annotations

import errno
import logging
import socket
import threading
import time

from fastapi import FastAPI

__all__ = ["ApiServer", "ApiServerError"]

log = logging.getLogger("hailong.api")


class ApiServerError(RuntimeError):
    """The HTTP server could not start (port taken, bad address) or died."""


class ApiServer:
    """uvicorn on a daemon thread: `start()` returns once it accepts connections, `stop()` drains it."""

    def __init__(self, app: FastAPI, host: str, port: int, *, log_level: str = "warning"):
        import uvicorn

        self.host, self.port = host, port
        # log_config=None: keep the service's logging setup instead of uvicorn's own.
        self._config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level=log_level,
                                      lifespan="off", timeout_graceful_shutdown=5, server_header=False)
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._stopping = False
        self.error: BaseException | None = None

    def bind(self) -> "ApiServer":
        """Claim the address now (ApiServerError if taken); `start` then serves on it."""
        if self._sock is not None:
            return self
        # Binding here, not in uvicorn, turns "address in use" into an exception for the
        # caller instead of a log line on a thread and a server that never starts.
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as e:
            raise ApiServerError(f"HTTP API: cannot use address {self.host}:{self.port}: {e}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            # Listening is what claims the port on Linux: with SO_REUSEADDR two sockets may
            # both be bound to it until one listens. Early connections wait in the backlog.
            sock.listen(self._config.backlog)
        except OSError as e:
            sock.close()
            hint = " (is another service using that port?)" if e.errno == errno.EADDRINUSE else ""
            raise ApiServerError(f"HTTP API: cannot listen on {self.host}:{self.port}: {e.strerror or e}{hint}") \
                from None
        self._sock = sock
        self.port = sock.getsockname()[1]  # the real one when asked for port 0
        return self

    def start(self, timeout: float = 10.0) -> "ApiServer":
        """Serve on a thread; returns once connections are accepted."""
        self.bind()
        self._thread = threading.Thread(target=self._run, args=(self._sock,), name="http-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            self._thread.join(0.01)  # doubles as the wait and the "did it die?" check
            if not self._thread.is_alive():
                raise ApiServerError(f"HTTP API on {self.host}:{self.port} failed to start: {self.error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise ApiServerError(f"HTTP API on {self.host}:{self.port} did not start within {timeout} s")
        return self

    def _run(self, sock: socket.socket) -> None:
        try:
            self._server.run(sockets=[sock])
        except BaseException as e:  # noqa: BLE001 - uvicorn exits with SystemExit on startup failure
            self.error = e
            log.error("HTTP API stopped: %r", e)
        finally:
            sock.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def failed(self) -> bool:
        """True if the server ended without being asked to."""
        return self._thread is not None and not self._thread.is_alive() and not self._stopping

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._server.should_exit = True
        if self._thread is None and self._sock is not None:
            self._sock.close()  # bound but never served
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
