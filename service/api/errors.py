"""One error shape everywhere: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kernel.errors import AdgraphError


def error_response(code: str, message: str, status: int, details: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}}, status_code=status
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(AdgraphError)
    async def _domain(_: Request, e: AdgraphError) -> JSONResponse:
        return error_response(e.code, e.message, e.http_status, e.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        fields = [".".join(str(p) for p in err["loc"]) for err in e.errors()]
        return error_response("INVALID_INPUT", "; ".join(problems), 422, {"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(e.status_code, "INVALID_INPUT")
        return error_response(code, str(e.detail), e.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        return error_response(
            "INTERNAL", f"{type(e).__name__}: the server failed; the job data is intact", 500
        )
