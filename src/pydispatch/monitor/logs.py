"""Logging set-up for pydispatch's processes: text lines, or one JSON object a line.

JSON lines come from ``python-json-logger``: every record's standard fields plus whatever the
call passed as ``extra`` (the dispatcher, job masters and workers pass ``worker``, ``job_id``,
``task_id``, ``client`` where a line is about one), so a log pipeline can filter on them
without parsing messages.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

__all__ = ["LOG_FORMATS", "TEXT_FORMAT", "configure_logging"]

TEXT_FORMAT: Final = "%(asctime)s %(name)s %(levelname)s %(message)s"
LOG_FORMATS: Final = ("text", "json")


def configure_logging(level: str, log_format: Literal["text", "json"] | str = "text") -> None:
    """The root logger's one handler on stderr, at ``level``, in ``log_format``."""
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(name)s %(levelname)s %(message)s %(process)d",
                rename_fields={"asctime": "time", "name": "logger", "levelname": "level"},
            )
        )
        logging.basicConfig(level=level, handlers=[handler], force=True)
    elif log_format == "text":
        logging.basicConfig(level=level, format=TEXT_FORMAT)
    else:
        raise ValueError(f"unknown log format {log_format!r} (one of {', '.join(LOG_FORMATS)})")
