"""The OS seams: every read of /proc and /sys, every Windows tool found, every privileged write.

    procfs        one root for every /proc and /sys read (``--proc-root``), the parsers
    environment   which kind of machine this is (WSL2, WSL1, a VM, bare Linux)
    windows       interop: finding powershell.exe/tasklist.exe, decoding their text, distro names
    wslconfig     WSL's own autoMemoryReclaim, read from the Windows user's .wslconfig
    privilege     the one narrow path that writes /proc/sys/vm/* (root, or the sudo rule)
    filelock      flock-based locks that name their holder, and who holds one (/proc/locks)
    vmclaim       one watcher acts per VM: a claim under /mnt/wsl, shared by every distro
    users         user and group names by id (who asks the watcher, who runs it)
    cgroups       cgroup v2 groups and the memory each holds, in words (who holds the cache), read-only
    cgroup_aim    the groups an aimed rule or schedule names (cgroup = "GLOB") and their page cache, read-only

May import: the vocabulary (monitor.errors, monitor.units, monitor.sample).
"""
