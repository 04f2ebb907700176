"""Logs: one JSON object a line (LOG_FORMAT=json, the default), or plain text for development.

Each line carries the ids of what it is about, held in context variables: the request's (set by
api/request_ids.py), the session's and the principal's (set when a turn starts, inherited by the
turn's task), and the trace's and span's when tracing is on. uvicorn's own loggers write through
the same handler, in the same format.
"""

import json
import logging
import logging.config
import re
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from .config import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
session_id: ContextVar[str | None] = ContextVar("session_id", default=None)
principal: ContextVar[str | None] = ContextVar("principal", default=None)

CONTEXT_FIELDS = ("request_id", "session_id", "principal", "trace_id", "span_id")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# What SdkValuesFilter adds where it withheld values.
WITHHELD = "[values withheld: LOG_PROMPTS=false]"
# A context value shown as it is in text; any other is quoted (a session id may hold spaces and
# brackets, and so pass for more of the context than it is).
PLAIN_VALUE = re.compile(r"[\w.@:/+-]+")


class ContextFilter(logging.Filter):
    """Adds to each record the ids of the request, session, principal and span it is about."""

    def filter(self, record: logging.LogRecord) -> bool:
        for variable in (request_id, session_id, principal):
            if (value := variable.get()) is not None:
                setattr(record, variable.name, value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = trace.format_trace_id(span.trace_id)
            record.span_id = trace.format_span_id(span.span_id)
        return True


class SdkValuesFilter(logging.Filter):
    """Withholds the values in the Strands SDK's log lines, and the messages of the exceptions
    they carry: it logs a model's tool input at WARNING when it cannot parse it (the user's
    words, as the model repeated them), and other parts of a conversation elsewhere. Each line
    still says what happened, its placeholders (`%s`, `%d`) as they are. Unless
    LOG_PROMPTS=true. (It changes the record: the service logs through one handler.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.partition(".")[0] != "strands":
            return True
        if record.args:
            record.msg, record.args = f"{record.msg} {WITHHELD}", ()
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.msg} ({type(record.exc_info[1]).__name__}, {WITHHELD})"
            record.exc_info, record.exc_text = None, None
        return True


class TextFormatter(logging.Formatter):
    """Plain text for a developer's terminal: the context's ids follow the message."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{name}={text_value(getattr(record, name))}"
            for name in CONTEXT_FIELDS
            if hasattr(record, name)
        )
        message = super().formatMessage(record)
        return f"{message} [{context}]" if context else message


def text_value(value: object) -> str:
    text = str(value)
    return text if PLAIN_VALUE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def log_config(settings: Settings) -> dict[str, Any]:
    """The `logging.config.dictConfig` of the service, for `serve` to hand uvicorn too."""
    if settings.log_format == "json":
        formatter = {
            "()": JsonFormatter,
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
            # uvicorn adds a copy of some messages with terminal colours.
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
        }
    else:
        formatter = {
            "()": TextFormatter,
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        }
    loggers: dict[str, Any] = {
        name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS
    }
    level = settings.log_level
    filters = ["context"] if settings.log_prompts else ["context", "sdk_values"]
    if not settings.log_prompts and level == "DEBUG":
        # Libraries log their requests at DEBUG, prompts included (the Strands SDK, the model
        # providers' clients): only the service's own loggers go below INFO.
        loggers["{{ cookiecutter.__package_name }}"] = {"level": level}
        level = "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}, "sdk_values": {"()": SdkValuesFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": filters,
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": loggers,
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(log_config(settings))
    logging.captureWarnings(True)  # Python's warnings too, as log lines of the same format
