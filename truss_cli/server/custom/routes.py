"""Where each request goes: Truss's routes mapped to the custom server's own endpoints.

As Truss's proxy in front of a custom server: `/` is its liveness endpoint,
`/v1/models/<name>` its readiness endpoint, `/v1/models/<name>:predict` (and
`:predict_binary`) and `/v1/websocket` its predict endpoint; every other path reaches it
unchanged. The query string is kept.
"""

from __future__ import annotations

from truss_cli.server.custom.options import CustomServerOptions

_MODELS_PREFIX = b"/v1/models/"
_PREDICT_SUFFIXES = (b":predict", b":predict_binary")
_WEBSOCKET = b"/v1/websocket"


class RouteMap:
    def __init__(self, options: CustomServerOptions) -> None:
        self._predict = options.predict_endpoint.encode("latin-1")
        self._readiness = options.readiness_endpoint.encode("latin-1")
        self._liveness = options.liveness_endpoint.encode("latin-1")

    def upstream_target(self, target: bytes) -> bytes:
        """The request target to send to the custom server for `target` (path and query)."""
        path, mark, query = target.partition(b"?")
        mapped = self._mapped_path(path)
        if mapped is None:
            return target
        if not mark:
            return mapped
        return mapped + (b"&" if b"?" in mapped else b"?") + query

    def _mapped_path(self, path: bytes):  # -> Optional[bytes]
        if path == b"/":
            return self._liveness
        if path.startswith(_MODELS_PREFIX):
            name = path[len(_MODELS_PREFIX):]
            if name.endswith(_PREDICT_SUFFIXES):
                name = name[: name.rindex(b":")]
                return self._predict if _is_model_name(name) else None
            return self._readiness if _is_model_name(name) else None
        if path == _WEBSOCKET:
            return self._predict
        return None


def _is_model_name(name: bytes) -> bool:
    return bool(name) and b"/" not in name and b":" not in name
