"""Starts Jupyter Server, optionally with TCP_NODELAY on its kernel WebSocket connections.

    jupyter_server_launch.py [--nodelay] [ServerApp arguments...]

Without --nodelay this is `python3 -m jupyter_server` as shipped. With it, the kernel channels
handler calls tornado's `set_nodelay(True)` as each WebSocket opens. Tornado leaves Nagle's
algorithm on for WebSockets, so a small frame written while an earlier one is still unacknowledged
waits for the client's delayed ACK (about 40 ms on Linux): the usual extra latency of an execute
round trip over Jupyter Server's WebSocket.

Prints one JSON line to stderr before starting, {"jupyter_server": version, "tornado": version,
"nodelay": bool, "handler": "module.Class"}, so the caller can record what it measured.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _kernel_websocket_handler() -> type:
    """The handler class behind /api/kernels/{id}/channels in this Jupyter Server."""
    try:
        # Jupyter Server 2.x
        from jupyter_server.services.kernels.websocket import KernelWebsocketHandler

        return KernelWebsocketHandler
    except ImportError:
        # Jupyter Server 1.x (Debian 12 ships 1.23)
        from jupyter_server.services.kernels.handlers import ZMQChannelsHandler

        return ZMQChannelsHandler


def _set_nodelay_on_open(handler: type) -> None:
    original = handler.open

    def open_with_nodelay(self: Any, *args: Any, **kwargs: Any) -> Any:
        # The connection exists once open() is called; set the flag before any frame is written.
        self.set_nodelay(True)
        return original(self, *args, **kwargs)

    handler.open = open_with_nodelay


def main() -> None:
    argv = sys.argv[1:]
    nodelay = "--nodelay" in argv
    argv = [arg for arg in argv if arg != "--nodelay"]

    import jupyter_server
    import tornado
    from jupyter_server.serverapp import ServerApp

    handler = _kernel_websocket_handler()
    if nodelay:
        _set_nodelay_on_open(handler)
    info = {
        "jupyter_server": jupyter_server.__version__,
        "tornado": tornado.version,
        "nodelay": nodelay,
        "handler": f"{handler.__module__}.{handler.__qualname__}",
    }
    sys.stderr.write(json.dumps(info) + "\n")
    sys.stderr.flush()
    ServerApp.launch_instance(argv=argv)


if __name__ == "__main__":
    main()
