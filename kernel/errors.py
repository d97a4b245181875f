"""Domain errors with stable codes. The CLI prints them; the service turns them into HTTP."""

from __future__ import annotations

from typing import Any

# code -> HTTP status. The codes are part of the public contract: never rename one.
ERROR_STATUS: dict[str, int] = {
    "INVALID_INPUT": 422,
    "INVALID_IMAGE": 422,
    "IMAGE_TOO_LARGE": 413,
    "REQUEST_TOO_LARGE": 413,
    "JOB_NOT_FOUND": 404,
    "CHECKPOINT_NOT_FOUND": 404,
    "ARTIFACT_NOT_FOUND": 404,
    "JOB_NOT_RESUMABLE": 409,
    "JOB_NOT_CANCELLABLE": 409,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "MODEL_UNAVAILABLE": 503,
    "GPU_OUT_OF_MEMORY": 507,
    "RENDER_FAILED": 500,
    "LLM_OUTPUT_INVALID": 502,
    "SITE_CHECK_FAILED": 500,
    "INTERNAL": 500,
}


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


def _rebuild(code: str, message: str, details: dict[str, Any]) -> AdgraphError:
    return AdgraphError(code, message, **details)


class TransientError(Exception):
    """A failure worth one more try (a browser tab crashed, a connection dropped)."""


class StepCancelled(Exception):
    """Raised inside a long step (a diffusion loop) when the job's cancel was requested.

    The run ends "cancelled" like a drain at a node boundary; the unfinished node re-runs on resume.
    """
