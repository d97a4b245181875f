"""One error shape everywhere: {"error": {"code", "message", "details", "request_id"}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from kernel.errors import AdgraphError, public
from service.jobs import invalid_input
from service.observability import request_id_var


def error_response(code: str, message: str, status: int, details: dict | None = None) -> JSONResponse:
    """`request_id`: the request's (`X-Request-ID`), to quote when reporting the error."""
    error = {"code": code, "message": message, "details": details or {}, "request_id": request_id_var.get()}
    return JSONResponse({"error": error}, status_code=status)


def domain_response(e: AdgraphError) -> JSONResponse:
    """An AdgraphError as the client reads it: its HTTP status, no server path, Retry-After and
    WWW-Authenticate where they apply."""
    shown = public(e)  # no server path in what a client reads
    response = error_response(e.code, shown["message"], e.http_status, shown["details"])
    if "retry_after" in e.details:  # RATE_LIMITED, QUOTA_EXCEEDED, QUEUE_FULL: when to try again
        response.headers["Retry-After"] = str(e.details["retry_after"])
    if e.code == "UNAUTHENTICATED":
        response.headers["WWW-Authenticate"] = 'Bearer realm="adgraph"'
    return response


def install(app: FastAPI) -> None:
    @app.exception_handler(AdgraphError)
    async def _domain(_: Request, e: AdgraphError) -> JSONResponse:
        return domain_response(e)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        err = invalid_input(e.errors())  # at most MAX_PROBLEMS fields named
        return error_response(err.code, err.message, 422, err.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 416: "RANGE_NOT_SATISFIABLE"}
        response = error_response(codes.get(e.status_code, "INVALID_INPUT"), str(e.detail), e.status_code)
        response.headers.update(e.headers or {})  # Content-Range of a 416
        if e.status_code == 405:  # every method of the path, not only those of the route tried first
            response.headers["Allow"] = ", ".join(_allowed(request))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        return error_response(
            "INTERNAL", f"{type(e).__name__}: the server failed; the job data is intact", 500
        )


def _allowed(request: Request) -> list[str]:
    """The methods some route takes at this request's path (asked of the router, included routers too)."""
    routes = request.app.router.routes
    return [
        method
        for method in ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]
