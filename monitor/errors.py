"""Errors a user can fix, each with the exit code the CLI returns for it."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a config, an argument, an unusable proc root): exit 2, one line."""

    exit_code = 2
    label = ""  # printed before the message ("config error: ")


class PrivilegeError(UserError):
    """The right to write /proc/sys/vm is missing; the message says how to get it. Exit 3."""

    exit_code = 3
