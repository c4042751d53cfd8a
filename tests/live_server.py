"""A real ``glassforge serve`` app on a free loopback port, in a thread of the test process.

    with live_server(tmp_path, api_key="k") as srv:   # srv.port, srv.base, srv.app, srv.state, srv.data
        httpx.get(srv.base + "/health")

The app is built by ``create_app`` from a ``ServerConfig`` (CPU, fp32 unless given); uvicorn serves it on a
socket bound before it starts, so the port is known and free.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace


@contextmanager
def live_server(data: Path, **config):
    import uvicorn

    from glassforge.server.app import create_app
    from glassforge.server.config import ServerConfig

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(
        ServerConfig(**{"port": port, "data_dir": data, "device": "cpu", "precision": "fp32", **config})
    )
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # the app starts without loading a model
    while not srv.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    try:
        yield SimpleNamespace(port=port, base=f"http://127.0.0.1:{port}", app=app, state=app.state.glassforge,
                              data=data)  # fmt: skip
    finally:
        srv.should_exit = True
        thread.join(60)
        sock.close()
