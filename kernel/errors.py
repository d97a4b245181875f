"""Domain errors with stable codes. The CLI prints them; the service turns them into HTTP."""

from __future__ import annotations

import re
from typing import Any

# code -> HTTP status. The codes are part of the public contract: never rename one.
ERROR_STATUS: dict[str, int] = {
    "INVALID_INPUT": 422,
    "INVALID_IMAGE": 422,
    "IMAGE_TOO_LARGE": 413,
    "REQUEST_TOO_LARGE": 413,
    "JOB_NOT_FOUND": 404,
    "CHECKPOINT_NOT_FOUND": 404,
    "THREAD_NOT_FOUND": 404,
    "ASSISTANT_NOT_FOUND": 404,
    "ARTIFACT_NOT_FOUND": 404,
    "BATCH_NOT_FOUND": 404,
    "RANGE_NOT_SATISFIABLE": 416,
    "JOB_NOT_RESUMABLE": 409,
    "JOB_NOT_CANCELLABLE": 409,
    "JOB_NOT_DELETABLE": 409,
    "IDEMPOTENCY_IN_PROGRESS": 409,
    "THREAD_BUSY": 409,
    "THREAD_EXISTS": 409,
    "NOT_FOUND": 404,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "RATE_LIMITED": 429,
    "QUOTA_EXCEEDED": 429,
    "QUEUE_FULL": 503,
    "METHOD_NOT_ALLOWED": 405,
    "INVALID_HOST": 400,
    "REQUEST_TIMEOUT": 408,
    "HEADERS_TOO_LARGE": 431,
    "MODEL_UNAVAILABLE": 503,
    "ARTIFACT_STORE_UNAVAILABLE": 503,
    "GPU_OUT_OF_MEMORY": 507,
    "RENDER_FAILED": 500,
    "LLM_OUTPUT_INVALID": 502,
    "SITE_CHECK_FAILED": 500,
    "SHUTTING_DOWN": 503,
    "TRANSIENT_FAILURE": 503,
    "DATABASE_UNAVAILABLE": 503,
    "INTERNAL": 500,
}
TRANSIENT_CODES = frozenset(
    {"TRANSIENT_FAILURE", "DATABASE_UNAVAILABLE", "ARTIFACT_STORE_UNAVAILABLE", "GPU_OUT_OF_MEMORY"}
)
"""A job that failed with one of these is tried again (ADGRAPH_MAX_ATTEMPTS, with backoff): the failure
may pass on its own (a renderer that crashed again after its node's own retry, a database or artifact
store that blinked, a GPU another process was filling)."""


class AdgraphError(Exception):
    """An error a user can act on: a stable `code`, a message naming the bad value, optional details."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        if code not in ERROR_STATUS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        return ERROR_STATUS[self.code]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __reduce__(self):  # keep code and details when pickled across processes
        return (_rebuild, (self.code, self.message, self.details))


# A file system path in a message: absolute ("/srv/data/…", "~/…"), "./…" or "../…", or relative with two or
# more slashes ("data/artifacts/ab/cd.zip"); never the API's own routes, a URL's path or a MIME type.
_PATH = re.compile(
    r"(?<![\w.:/~-])(?:~?/(?!v1/|healthz|readyz|metrics)|\.{1,2}/|[\w.-]+/(?=[\w.-]+/))"
    r"[^\s'\"`<>|;,()\[\]{}]+"
)


def without_paths(text: str) -> str:
    """`text` with every file system path in it replaced by "<path>": what a server says to its clients
    never shows where it keeps its files (a job's error, an HTTP error body)."""
    return _PATH.sub("<path>", text)


def public(error: AdgraphError) -> dict[str, Any]:
    """`error.to_dict()` with the paths taken out of its message and its text details."""
    details = {k: _clean(v) for k, v in error.details.items()}
    return {"code": error.code, "message": without_paths(error.message), "details": details}


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return without_paths(value)
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _rebuild(code: str, message: str, details: dict[str, Any]) -> AdgraphError:
    return AdgraphError(code, message, **details)


class TransientError(Exception):
    """A failure worth one more try (a browser tab crashed, a connection dropped)."""


class StepCancelled(Exception):
    """Raised inside a long step (a diffusion loop) when the job's cancel was requested.

    The run ends "cancelled" like a drain at a node boundary; the unfinished node re-runs on resume.
    """
