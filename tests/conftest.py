"""Shared fixtures: the real-tool gate, and a scratch directory for real storage."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, package: str) -> str:
    """The path of the standard tool ``name``; skip (or fail in CI) when it is missing.

    Interop tests are required in CI: there a missing tool is a broken setup, not a reason to skip.
    """
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        reason = f"{name} not installed (Debian package {package}; scripts/setup.sh --test as root)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return path
