"""Logging: stdlib logging to stderr (or a file), plus one access log per service.

Diagnostics go through ``logging.getLogger(__name__)`` in every module.  Access logs are the
one-line-per-transfer/message/query records that users of each protocol know (Squid's native
format for the proxy); they go to the logger ``netlab.access.<service>`` so that a deployment can
route them separately, and by default they share the diagnostic handler.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["access_logger", "setup_logging"]

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", log_file: str | None = None) -> None:
    """Send every netlab log record at ``level`` or above to stderr, or to ``log_file``."""
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    # The formats name neither process nor thread: don't look them up (a getpid() system call)
    # for every record, which on a busy server is every message.
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The access log's records are already formatted lines; keep them bare.
    access = logging.getLogger("netlab.access")
    access.propagate = False
    for old in list(access.handlers):
        access.removeHandler(old)
    bare = logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler(sys.stderr)
    bare.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(bare)
    access.setLevel(logging.INFO)


def access_logger(service: str) -> logging.Logger:
    """The access log of ``service`` (``"proxy"``, ``"tftp"``, ...)."""
    return logging.getLogger(f"netlab.access.{service}")
