"""Running ``vmmemctl watch`` in the background: a systemd unit, a wsl.conf boot command, a Windows task.

Three ways, one per situation:

    systemd unit       WSL with ``[boot] systemd=true`` in /etc/wsl.conf: ``service install [--user|--system]``
    wsl.conf command   systemd off: ``[boot] command=`` runs as root when the distro starts
    Windows task       Task Scheduler starts a hidden ``wsl.exe -d DISTRO -u root -e vmmemctl watch`` at logon

The system unit runs as root so it can reclaim; it is hardened (read-only
filesystem except what it writes, no new privileges, a memory cap). The user
unit is hardened the same way and therefore cannot reclaim: see USER_SCOPE_NOTE.

Nothing here builds a shell string from user input except the wsl.conf
command, which WSL itself runs through a shell; every word of it is quoted
with :func:`shlex.quote` and then escaped for WSL's config parser.
Stdlib only: the CLI imports this for ``service install`` and nothing heavier.
"""

from monitor.service.common import (BOOT_LOG, LOCK_DIR, MEMORY_MAX, SYSTEM_ENVIRONMENT, SYSTEM_STATE_DIR,
                                    UNIT_NAME, USER_SCOPE_NOTE, Run, Scope, ServiceError, systemctl_words,
                                    systemd_quote)
from monitor.kernel.dirs import xdg_dir  # the installers' XDG rule is the watcher's
from monitor.service.keepalive import KEEPALIVE_TEXT
from monitor.service.systemd import (default_environment, default_paths, install, systemd_running, systemd_unit,
                                     tmp_conflict, unit_path)
from monitor.service.windows_task import (SCHTASKS_NOTE, TASK_NAMESPACE, encode_task_xml, task_xml_as_utf8,
                                          validate_distro_name, windows_task_xml, windows_user)
from monitor.service.wslconf import boot_shell_command, wsl_conf_boot_command, wsl_conf_value

__all__ = ["BOOT_LOG", "KEEPALIVE_TEXT", "LOCK_DIR", "MEMORY_MAX", "SCHTASKS_NOTE", "SYSTEM_ENVIRONMENT",
           "SYSTEM_STATE_DIR", "TASK_NAMESPACE", "UNIT_NAME", "USER_SCOPE_NOTE", "Run", "Scope", "ServiceError",
           "boot_shell_command", "default_environment", "default_paths", "encode_task_xml", "install",
           "systemctl_words", "systemd_quote", "systemd_running", "systemd_unit", "task_xml_as_utf8", "tmp_conflict",
           "unit_path",
           "validate_distro_name", "windows_task_xml", "windows_user", "wsl_conf_boot_command", "wsl_conf_value",
           "xdg_dir"]
