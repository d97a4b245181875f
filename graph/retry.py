"""The retry policy every workflow node runs under."""

from __future__ import annotations

from langgraph.types import RetryPolicy

from kernel.errors import TransientError

TRANSIENT = RetryPolicy(max_attempts=2, initial_interval=0.2, retry_on=TransientError)
"""Only failures that can pass on their own (a crashed browser tab) are retried; bad input never is."""
