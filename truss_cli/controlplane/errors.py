"""The management API's errors: `{"error", "error_code", "detail"}` with the right status.

Route code raises `ApiError` (or lets a store / config error through); one handler per
exception type turns it into JSON, so no route ever answers an error with a 200.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from truss_cli.archive.format import ArchiveError
from truss_cli.config import ConfigError
from truss_cli.controlplane.store import Conflict, NotFound, StoreError


class ApiError(Exception):
    def __init__(self, status: int, error_code: str, error: str, detail: Any = None):
        super().__init__(error)
        self.status = status
        self.error_code = error_code
        self.error = error
        self.detail = detail


def error_response(status: int, error_code: str, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_code": error_code, "detail": detail}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error_code, exc.error, exc.detail)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        # detail lists what exists, so a typo is fixed in one step.
        return error_response(404, exc.code or "NOT_FOUND", exc.message, {"existing": exc.existing, "hint": exc.hint})

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        # A named refusal (NAME_TAKEN, PRODUCTION_NOT_DELETABLE, ...) keeps its name.
        return error_response(409, exc.code or "CONFLICT", exc.message, exc.hint)

    @app.exception_handler(StoreError)
    async def _store(_: Request, exc: StoreError) -> JSONResponse:
        return error_response(400, exc.code or "BAD_REQUEST", exc.message, exc.hint)

    @app.exception_handler(ConfigError)
    async def _config(_: Request, exc: ConfigError) -> JSONResponse:
        message = str(exc)
        return error_response(400, "INVALID_CONFIG", message.splitlines()[0], message)

    @app.exception_handler(ArchiveError)
    async def _archive(_: Request, exc: ArchiveError) -> JSONResponse:
        return error_response(400, "INVALID_ARCHIVE", exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return error_response(422, "VALIDATION_ERROR", "the request body is not valid", detail)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return error_response(exc.status_code, code, str(exc.detail), None)
