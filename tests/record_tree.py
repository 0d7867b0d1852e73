"""Record this machine's kernel files into a tree that ``--proc-root`` can read.

    python tests/record_tree.py tests/trees/NAME

Copies exactly the files vmmemctl reads (see monitor.probes.guest.FILES and
monitor.kernel.environment) so a test can replay them.
"""

import sys
from pathlib import Path

FILES = ["proc/meminfo", "proc/pressure/memory", "proc/pressure/io", "proc/vmstat", "proc/buddyinfo",
         "proc/stat", "proc/sys/kernel/osrelease", "proc/version",
         "sys/module/page_reporting/parameters/page_reporting_order", "sys/kernel/mm/lru_gen/enabled"]


def main(dest: str) -> None:
    for rel in FILES:
        src = Path("/") / rel
        if src.exists():
            out = Path(dest) / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(src.read_bytes())
            print(f"recorded {rel}")


if __name__ == "__main__":
    main(sys.argv[1])
