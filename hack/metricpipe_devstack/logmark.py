"""Where logs ended at a moment, so that only the lines written since are read: the edge's
access logs and a process's own, by tests and the demo."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LogMark:
    """Where each log ended when the mark was taken (a log not there yet: at 0)."""

    sizes: dict[Path, int]

    @classmethod
    def take(cls, paths: tuple[Path, ...]) -> LogMark:
        return cls({p: p.stat().st_size if p.exists() else 0 for p in paths})

    def lines(self) -> list[bytes]:
        """Every complete line written since the mark, log by log."""
        out = []
        for path, offset in self.sizes.items():
            if not path.exists():
                continue
            with path.open("rb") as log:
                log.seek(offset)
                text = log.read()
            out += text[: text.rfind(b"\n") + 1].splitlines()
        return out

    def records(self) -> list[dict[str, Any]]:
        """The lines as JSON objects (logs of one JSON object a line)."""
        return [json.loads(line) for line in self.lines()]

    def json_records(self) -> list[dict[str, Any]]:
        """The lines that are JSON objects, others (a traceback's) left out."""
        return [json.loads(line) for line in self.lines() if line.startswith(b"{")]
