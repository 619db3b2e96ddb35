"""The peek API's one root exception: an HTTP status and a JSON body that says what to change."""

from __future__ import annotations

from typing import Any


class PeekError(Exception):
    """A refused request: `status` is the HTTP status, `body()` the JSON the caller gets."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.details}


class LimitError(PeekError):
    """A request over one of the limits that protect the cluster: names the limit, the value
    asked for, the maximum and how to narrow the query."""

    def __init__(
        self, status: int, message: str, *, limit: str, value: Any, maximum: Any, hint: str
    ) -> None:
        super().__init__(status, message, limit=limit, value=value, max=maximum, hint=hint)
