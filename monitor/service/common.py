"""What the three installers share: names, paths, the XDG rules, quoting, the systemctl words."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Callable, Literal

from monitor.errors import UserError

Scope = Literal["user", "system"]
UNIT_NAME = "vmmemctl.service"
LOCK_DIR = "/run/lock"  # monitor.reclaim.reclaimer.default_lock_path: shared by root and sudo reclaims
SYSTEM_STATE_DIR = "/var/lib/vmmemctl"
BOOT_LOG = "/var/log/vmmemctl-boot.log"
MEMORY_MAX = "64M"  # our target RSS is <= 30 MiB; twice that leaves room for a reclaim's samples

# For the system scope, the XDG rules (monitor.kernel.dirs: the CLI's for the history DB, the
# state and log dirs and the config) honours the XDG variables, so these put
# everything under /var/lib/vmmemctl and read /etc/vmmemctl/config.toml,
# instead of root's home, which ProtectHome= makes read-only.
SYSTEM_ENVIRONMENT = {"XDG_DATA_HOME": "/var/lib", "XDG_STATE_HOME": "/var/lib", "XDG_CONFIG_HOME": "/etc"}
SYSTEM_CONFIG = "/etc/vmmemctl/config.toml"  # what the system service reads (XDG_CONFIG_HOME=/etc, above)
PRIVATE_TMP = ("/tmp", "/var/tmp")  # PrivateTmp=yes gives the service its own: it sees nothing of ours there


def under_private_tmp(path: str) -> bool:
    return any(path == top or path.startswith(top + "/") for top in PRIVATE_TMP)

USER_SCOPE_NOTE = (
    "The user unit notifies, prompts and keeps the history, but does not reclaim by itself: a user cannot "
    "write /proc/sys/vm, and the sudo path (sudo -n vmmemctl _privileged-write) needs sudo's setuid bit, "
    "which NoNewPrivileges=yes forbids, as does the user namespace (PrivateUsers=yes) that a user unit needs "
    "for any filesystem sandboxing. For automatic reclaims install the system unit (sudo vmmemctl service "
    "install --system); with the user unit, answer prompts with `vmmemctl reclaim` or the TUI.")

Run = Callable[..., subprocess.CompletedProcess]


class ServiceError(UserError):
    """Input that cannot go into a unit or a task (a hostile distro name, a relative path): one line, exit 2."""


def _check_text(what: str, text: str) -> None:
    """Control characters would end a unit line, an INI value or an XML attribute early: refuse them."""
    if any(not ch.isprintable() for ch in text):
        raise ServiceError(f"{what} {text!r}: contains control characters")


def systemd_quote(word: str, *, expand_dollar: bool = True) -> str:
    """One word for a unit file, read back by systemd as exactly ``word``.

    systemd splits on whitespace, honours "double quotes" with C escapes,
    expands %-specifiers everywhere and (in Exec lines) $VARIABLES, so
    ``%`` becomes ``%%`` and ``$`` becomes ``$$`` (systemd.service(5),
    "Command lines"; systemd.unit(5), "Specifiers").
    """
    _check_text("unit word", word)
    escaped = word.replace("%", "%%")
    if expand_dollar:
        escaped = escaped.replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@+=:,./-]+", word):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _absolute(what: str, path: str) -> str:
    _check_text(what, path)
    if not path.startswith("/") or ".." in Path(path).parts:
        raise ServiceError(f"{what} {path!r}: expected an absolute path without '..'")
    return path


def systemctl_words(scope: Scope) -> str:
    """How a person runs systemctl for this scope (written once: headers, hints and the enable step)."""
    return "systemctl" if scope == "system" else "systemctl --user"
