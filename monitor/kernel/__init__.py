"""The OS seams: every read of /proc and /sys, every Windows tool found, every privileged write.

    procfs        one root for every /proc and /sys read (``--proc-root``), the parsers
    environment   which kind of machine this is (WSL2, WSL1, a VM, bare Linux)
    windows       interop: finding powershell.exe/tasklist.exe, decoding their text, distro names
    wslconfig     WSL's own autoMemoryReclaim, read from the Windows user's .wslconfig
    privilege     the one narrow path that writes /proc/sys/vm/* (root, or the sudo rule)
    filelock      flock-based locks that name their holder

May import: the vocabulary (monitor.errors, monitor.units, monitor.sample).
"""
