"""Probes turn the outside world into immutable samples.

    guest         the distro's /proc: memory, cache, refaults, CPU, I/O, PSI
    host          the VM's footprint on the host: psutil on the VM process, or an estimate
    interop       the same from inside WSL2 through powershell.exe / tasklist.exe
    execfiles     the guest's /proc read through a command (host mode: ``wsl.exe -d D -e ...``)
    probeset      :class:`Probes` and :func:`build`: the set a run samples with, wired from config

May import: the vocabulary, monitor.kernel, monitor.config.
"""
