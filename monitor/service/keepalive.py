"""Prose for `service install`: what keeps the watcher alive, and what happens when the VM stops."""

KEEPALIVE_TEXT = """\
What keeps the watcher alive, and what happens when the VM stops

WSL stops a distro a few seconds after the last wsl.exe session attached to
it exits ([general] instanceIdleTimeout, 15 s by default), and stops the VM
after vmIdleTimeout (60 s by default) once no distro runs. A systemd service
is not a session: since WSL's systemd support, a distro is shut down shortly
after its last shell closes even with services running (microsoft/WSL#8854,
still open; microsoft/WSL#9968). Reports differ across WSL versions
(sakai135/wsl-vpnkit#221 saw a systemd service hold the VM up), so do not
rely on it either way.

So the systemd unit and the wsl.conf boot command run the watcher while you
use WSL: from the first shell, VS Code window or any wsl.exe until shortly
after the last one exits. That is the time that matters. When the VM stops,
the watcher stops with it (SIGTERM, then the VM is gone) and there is
nothing left to reclaim: Windows gets all of the VM's memory back. The next
wsl.exe boots the VM, systemd or the boot command starts the watcher again,
and it carries on with the same history.

To keep the watcher (and so the VM) running with no terminal open, start it
from Windows: the Task Scheduler task runs a hidden `wsl.exe -d DISTRO -u
root -e vmmemctl watch` at logon, and that wsl.exe is a session, so it holds
the distro and the VM up (agezt/agezt#489 found an in-VM systemd keepalive
was not enough and a Windows-side wsl.exe task was). Setting
`vmIdleTimeout=-1` under [wsl2] and `instanceIdleTimeout=-1` under [general]
in .wslconfig also keeps them up (a maintainer suggests the former in
microsoft/WSL#11239). Either way the VM then never returns its base
footprint; vmmemctl keeps the page-cache part of it small.
"""
