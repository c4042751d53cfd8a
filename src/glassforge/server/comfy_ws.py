"""ComfyUI's ``/ws?clientId=`` websocket: one :class:`Hub` per server relays the executor's events.

Events are produced on the worker thread; the hub hands them to the event loop with
``loop.call_soon_threadsafe`` and every connection has its own queue and sender task, so messages reach
a client in the order they were produced (``execution_start`` … ``executing null``) even when sockets
are slow.

Delivery follows ComfyUI 0.3.64: execution events go to the ``client_id`` that submitted the prompt;
for a prompt without one, only ``progress``, previews and ``execution_interrupted`` are broadcast.
``status`` goes to everybody on every queue change, and to a new socket first, with its ``sid``.

Preview frames (big-endian u32 headers): type 4 ``[4][json length][{"node_id", "prompt_id", …,
"image_type": "image/jpeg"}][JPEG]`` to clients that sent ``feature_flags`` with
``supports_preview_metadata``, else the legacy type 1 ``[1][1 = JPEG][JPEG]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("glassforge.server")

PREVIEW_IMAGE = 1  # legacy binary frame: [u32 1][u32 image type][bytes]
PREVIEW_IMAGE_WITH_METADATA = 4  # [u32 4][u32 json length][json][bytes]
JPEG = 1
PREVIEW_SIZE = 512  # ComfyUI's --preview-size default: the longer side of a preview, at most
MAX_UPLOAD_SIZE = 100 * 2**20  # announced in feature_flags (ComfyUI's default --max-upload-size 100 MB)
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE}


def preview_jpeg(image) -> bytes:
    """A PIL image as ComfyUI's preview JPEG: fitted into 512×512, quality 95."""
    image = image.convert("RGB")
    if max(image.size) > PREVIEW_SIZE:
        image = image.copy()
        image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def legacy_frame(jpeg: bytes) -> bytes:
    return struct.pack(">II", PREVIEW_IMAGE, JPEG) + jpeg


def metadata_frame(jpeg: bytes, metadata: dict[str, Any]) -> bytes:
    meta = json.dumps(metadata).encode()
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + jpeg


@dataclass(eq=False)
class Connection:
    sid: str
    websocket: Any
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    flags: dict[str, Any] = field(default_factory=dict)  # what the client announced in feature_flags

    @property
    def wants_metadata(self) -> bool:
        return bool(self.flags.get("supports_preview_metadata"))


class Hub:
    """The open sockets by ``sid`` and the thread-safe ways to reach them."""

    def __init__(
        self, queue_remaining: Callable[[], int], on_connect: Callable[[str], list[dict]] | None = None
    ):
        self.queue_remaining = queue_remaining  # called on the event loop
        self.on_connect = on_connect  # extra messages for a (re)connecting client
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: dict[str, Connection] = {}  # touched on the event loop only

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the server's event loop (called from its handlers) for the worker thread's messages."""
        self.loop = loop

    def clients(self) -> list[str]:
        return list(self.connections)

    # ---------------------------------------------------------------- from any thread

    def _call(self, fn: Callable, *args) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile: nobody to tell
            loop.call_soon_threadsafe(fn, *args)

    def send(self, sid: str | None, message: dict[str, Any], *, broadcast: bool = False) -> None:
        """A JSON message to client ``sid``; to everybody when ``sid`` is None and ``broadcast``."""
        if sid is None and not broadcast:
            return
        self._call(self._deliver, sid, json.dumps(message))

    def preview(self, sid: str | None, jpeg: bytes, metadata: dict[str, Any]) -> None:
        """A preview JPEG to client ``sid`` (everybody when None), framed per client's feature flags."""
        self._call(self._deliver_preview, sid, jpeg, metadata)

    def broadcast_status(self) -> None:
        self._call(self._status)

    # ---------------------------------------------------------------- on the event loop

    def _targets(self, sid: str | None) -> list[Connection]:
        if sid is None:
            return list(self.connections.values())
        conn = self.connections.get(sid)
        return [conn] if conn is not None else []

    def _deliver(self, sid: str | None, payload: str | bytes) -> None:
        for conn in self._targets(sid):
            conn.queue.put_nowait(payload)

    def _deliver_preview(self, sid: str | None, jpeg: bytes, metadata: dict[str, Any]) -> None:
        for conn in self._targets(sid):
            frame = metadata_frame(jpeg, metadata) if conn.wants_metadata else legacy_frame(jpeg)
            conn.queue.put_nowait(frame)

    def status_message(self, sid: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}
        if sid is not None:
            data["sid"] = sid
        return {"type": "status", "data": data}

    def _status(self) -> None:
        text = json.dumps(self.status_message())
        for conn in self.connections.values():
            conn.queue.put_nowait(text)

    async def serve(self, websocket, client_id: str | None) -> None:
        """One socket's life: status with its sid, then relay until it closes; answers feature_flags."""
        self.bind(asyncio.get_running_loop())
        await websocket.accept()
        sid = client_id or uuid.uuid4().hex
        conn = Connection(sid, websocket)
        self.connections[sid] = conn  # a reconnect with the same id takes over
        conn.queue.put_nowait(json.dumps(self.status_message(sid)))
        for message in self.on_connect(sid) if self.on_connect else []:
            conn.queue.put_nowait(json.dumps(message))
        sender = asyncio.create_task(self._sender(conn))
        try:
            while True:
                incoming = await websocket.receive()
                if incoming["type"] == "websocket.disconnect":
                    break
                self._received(conn, incoming.get("text"))
        except Exception as err:  # a broken socket ends its own connection only
            log.debug("websocket %s closed: %s", sid, err)
        finally:
            sender.cancel()
            if self.connections.get(sid) is conn:
                del self.connections[sid]

    def _received(self, conn: Connection, text: str | None) -> None:
        if not text:
            return
        try:
            message = json.loads(text)
        except ValueError:
            return  # ComfyUI ignores what it cannot parse too
        if isinstance(message, dict) and message.get("type") == "feature_flags":
            data = message.get("data")
            conn.flags = data if isinstance(data, dict) else {}
            conn.queue.put_nowait(json.dumps({"type": "feature_flags", "data": SERVER_FEATURES}))

    @staticmethod
    async def _sender(conn: Connection) -> None:
        while True:
            payload = await conn.queue.get()
            try:
                if isinstance(payload, bytes):
                    await conn.websocket.send_bytes(payload)
                else:
                    await conn.websocket.send_text(payload)
            except Exception:  # closed while sending: the receive loop ends the connection
                return
