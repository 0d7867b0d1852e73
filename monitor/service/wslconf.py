"""The /etc/wsl.conf ``[boot] command=`` line, for a distro without systemd."""

from __future__ import annotations

import shlex
from typing import Sequence

from monitor.service.common import BOOT_LOG, SYSTEM_ENVIRONMENT, SYSTEM_STATE_DIR, _absolute, _check_text


def wsl_conf_value(text: str) -> str:
    """``text`` as a value WSL's config parser reads back unchanged.

    WSL's parser (src/shared/configfile/configfile.cpp) drops unescaped
    double quotes, understands only the escapes ``\\\\ \\" \\b \\n \\t``, and
    ends the value at an unquoted ``#``. So: escape backslashes and double
    quotes, and put the whole value in double quotes.
    """
    _check_text("wsl.conf value", text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def boot_shell_command(exe: str, args: Sequence[str]) -> str:
    """The ``sh -c`` line: the system unit's environment, detached, output to a log, never blocking boot."""
    words = ["env", *(f"{k}={v}" for k, v in SYSTEM_ENVIRONMENT.items()), "nohup",
             _absolute("executable", exe), *args]
    for word in words:
        _check_text("argument", word)
    return " ".join(shlex.quote(w) for w in words) + f" </dev/null >>{BOOT_LOG} 2>&1 &"


def wsl_conf_boot_command(exe: str, args: Sequence[str]) -> str:
    """The /etc/wsl.conf ``[boot] command=`` alternative for a distro without systemd, with how to use it."""
    return "\n".join([
        "# Without systemd, WSL runs [boot] command as root, through a shell, each time the distro",
        "# starts. The trailing & and nohup detach the watcher so the distro's start never waits",
        f"# for it; what escapes its own log goes to {BOOT_LOG}.",
        f"# It runs as root, so it reclaims; history and state go to {SYSTEM_STATE_DIR},",
        "# the config is read from /etc/vmmemctl/config.toml.",
        "# Add this to /etc/wsl.conf (merge with an existing [boot] section: a key may appear once),",
        "# then run `wsl --shutdown` in Windows and open the distro again. Do not also enable the",
        "# systemd unit: the watcher's single-instance lock would make one of them exit.",
        "[boot]",
        f"command = {wsl_conf_value(boot_shell_command(exe, args))}",
        "",
    ])
