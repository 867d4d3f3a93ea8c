"""Request and response bodies: JSON (the default) and msgpack (`application/octet-stream`).

Model outputs are often numpy arrays or scalars and sometimes pydantic models; both encode
without the model converting them first. orjson is used when it is installed (it is several
times faster on large payloads and encodes numpy arrays natively); the stdlib is the fallback.
"""

from __future__ import annotations

import json
from typing import Any

from truss_cli.server import typed_io

try:
    import orjson
except ImportError:  # optional speed-up, not a requirement
    orjson = None

JSON_CONTENT_TYPE = b"application/json"
MSGPACK_CONTENT_TYPE = b"application/octet-stream"


class EncodeError(TypeError):
    """An output the server cannot encode; the message names the offending type."""


def _plain(value: Any) -> Any:
    """The `default` hook: turn what json/msgpack cannot encode into something they can."""
    if typed_io.is_model_instance(value):
        return typed_io.dump(value, for_json=True)
    tolist = getattr(value, "tolist", None)  # numpy arrays and numpy scalars
    if callable(tolist):
        return tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise EncodeError(f"cannot encode a value of type {type(value).__module__}.{type(value).__qualname__}")


if orjson is not None:
    _ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def decode_json(body: bytes) -> Any:
        return orjson.loads(body)

    def encode_json(value: Any) -> bytes:
        try:
            return orjson.dumps(value, default=_plain, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            # Integers beyond 64 bits are fine for the stdlib; anything really unencodable
            # fails there too, with the offending type named by `_plain`.
            return _stdlib_encode_json(value)

else:

    def decode_json(body: bytes) -> Any:
        return json.loads(body)

    def encode_json(value: Any) -> bytes:
        return _stdlib_encode_json(value)


def _stdlib_encode_json(value: Any) -> bytes:
    try:
        return json.dumps(value, default=_plain, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise EncodeError(str(exc)) from None


def decode_msgpack(body: bytes) -> Any:
    import msgpack  # only models called with msgpack pay for the import

    return msgpack.unpackb(body, raw=False)


def encode_msgpack(value: Any) -> bytes:
    import msgpack

    if typed_io.is_model_instance(value):
        value = typed_io.dump(value, for_json=False)
    try:
        return msgpack.packb(value, default=_plain, use_bin_type=True)
    except (TypeError, ValueError) as exc:
        raise EncodeError(str(exc)) from None


def encode_chunk(chunk: Any) -> bytes:
    """One streamed chunk: text as UTF-8, bytes as they are, anything else as a JSON line."""
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    return encode_json(chunk) + b"\n"


def chunk_content_type(first_chunk: Any) -> bytes:
    if isinstance(first_chunk, str):
        return b"text/plain; charset=utf-8"
    if isinstance(first_chunk, (bytes, bytearray, memoryview)):
        return b"application/octet-stream"
    return b"application/x-ndjson"
