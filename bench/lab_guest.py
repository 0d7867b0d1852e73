"""Guest-side pieces of bench/lab_policies.py: busybox scripts run in the QEMU lab guest, and their parsers.

Everything the guest runs for the bench is here, as text that goes through
the lab's command channel (lab/vm.py). Under TCG one channel call costs
the guest ~0.07 s of CPU (its agent forks a dozen busybox processes), so the
bench does not sample the guest through the channel while the workload is
quiet: a logger inside the guest does, with shell builtins only (no fork per
sample), and the bench collects its file when the run ends.

    LOGGER   every N s: uptime, the aggregate /proc/stat line, meminfo (up to Shmem)
    HOT      re-read a region of /data/fill.bin every N s for S s (an editor and its LSP); per pass the
             guest uptime before/after and pgpgin/workingset_refault_file before/after
    START    starts one of them in its own session (setsid), detached from the channel, prints its PID

The files live in /tmp/bench (the guest's rootfs is tmpfs: counted as Shmem,
not as page cache).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

DIR = "/tmp/bench"

# Shell builtins only, so a sample forks nothing (a fork and exec cost the TCG guest milliseconds):
# busybox ash's `read` takes a file one byte per read(2), so only the lines needed are read, and
# `read -t` on a private FIFO is the sleep (the sleep applet would fork).
_COMMON = r"""
fifo=/tmp/bench/.wait.$$
mkfifo "$fifo" && exec 3<>"$fifo" && rm -f "$fifo"
pause() {  # centiseconds
    [ "$1" -gt 0 ] || return 0
    f=$(($1 % 100)); [ $f -lt 10 ] && f=0$f
    read -t "$(($1 / 100)).$f" -u 3 _
}
cs() { read -r up _ < /proc/uptime; now=${up%.*}${up#*.}; }
"""

# vmstat lists workingset_refault_file (line ~30) before pgpgin (~70): stop there.
_VMSTAT = r"""
vmstat() {
    rf=0; pi=0
    while read -r k v; do
        case $k in
            workingset_refault_file) rf=$v ;;
            pgpgin) pi=$v; break ;;
        esac
    done < /proc/vmstat
}
"""

LOGGER = _COMMON + r"""
# usage: logger.sh EVERY_CS SECONDS OUT
every=$1; seconds=$2; out=$3
cs; end=$((now + seconds * 100)); next=$now
while :; do
    cs
    [ "$now" -ge "$end" ] && break
    read -r _ u n s i w q sq st _ < /proc/stat
    mf=0; bu=0; ca=0; sh=0; af=0; inf=0
    while read -r k v _; do
        case $k in
            MemFree:) mf=$v ;;
            Buffers:) bu=$v ;;
            Cached:) ca=$v ;;
            "Active(file):") af=$v ;;
            "Inactive(file):") inf=$v ;;
            Shmem:) sh=$v; break ;;
        esac
    done < /proc/meminfo
    echo "$up $u $n $s $i $w $q $sq $st $mf $bu $ca $sh $af $inf" >> "$out"
    next=$((next + every))
    cs
    pause $((next - now))
done
echo "end $up" >> "$out"
"""

HOT = _COMMON + _VMSTAT + r"""
# usage: hot.sh EVERY_CS SECONDS SKIP_MIB COUNT_MIB OUT
every=$1; seconds=$2; skip=$3; count=$4; out=$5
cs; end=$((now + seconds * 100)); next=$now
echo "start $up" >> "$out"
while :; do
    cs
    [ "$now" -ge "$end" ] && break
    up0=$up
    vmstat; pi0=$pi; rf0=$rf
    dd if=/data/fill.bin of=/dev/null bs=1M skip="$skip" count="$count" 2>/dev/null
    cs
    vmstat
    echo "pass $up0 $up $pi0 $pi $rf0 $rf" >> "$out"
    next=$((next + every))
    pause $((next - now))
done
echo "end $up" >> "$out"
"""

# $1 = script name in DIR, the rest its arguments. setsid: its own session and process group (the
# agent's watchdog kills only the channel command's group), so PID = PGID; stdio away from the channel.
START = f'''
name=$1; shift
cd {DIR} || exit 1
setsid sh "{DIR}/$name" "$@" </dev/null >/dev/null 2>>"{DIR}/$name.err" &
echo $!
'''

INSTALL = f'mkdir -p {DIR} && cat > {DIR}/"$1"'  # the script text comes on stdin

# Stops a started script's whole process group (its dd and sleep included); says whether it had ended.
STOP = '''
pid=$1
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -"$pid" 2>/dev/null; sleep 0.5; kill -KILL -"$pid" 2>/dev/null; echo killed
else
    echo ended
fi
'''

VMSTAT = "grep -E '^(pgpgin|workingset_refault_file|drop_pagecache) ' /proc/vmstat"
EQUALIZE = "sync; echo 3 > /proc/sys/vm/drop_caches; echo 1 > /proc/sys/vm/compact_memory"


def clock_cs(text: str) -> int:
    """'123.45' (from /proc/uptime) -> 12345."""
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


@dataclass
class LogRow:
    up: float  # guest uptime, s
    busy: int  # jiffies: user+nice+system+irq+softirq
    total: int  # jiffies: all of the aggregate line's first 8 fields
    free: int  # bytes
    page_cache: int  # Buffers + Cached - Shmem, bytes
    active_file: int
    inactive_file: int


def parse_log(text: str) -> list[LogRow]:
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) != 15 or f[0] == "end":
            continue
        try:
            up = float(f[0])
            u, n, s, i, w, q, sq, st = (int(x) for x in f[1:9])
            mf, bu, ca, sh, af, inf = (int(x) for x in f[9:15])
        except ValueError:
            continue  # a line cut by the kill at the end
        rows.append(LogRow(up, u + n + s + q + sq, u + n + s + i + w + q + sq + st, mf * 1024,
                           max(0, (bu + ca - sh) * 1024), af * 1024, inf * 1024))
    return rows


@dataclass
class HotPass:
    up: float  # guest uptime at the start of the pass
    read_s: float  # 10 ms resolution (/proc/uptime)
    pgpgin_bytes: int  # read from disk during the pass (the whole guest; nothing else reads the disk)
    refault_bytes: int


def parse_hot(text: str) -> list[HotPass]:
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) == 7 and f[0] == "pass":
            up0, up1 = float(f[1]), float(f[2])
            pi0, pi1, rf0, rf1 = (int(x) for x in f[3:7])
            out.append(HotPass(up0, round(up1 - up0, 2), (pi1 - pi0) * 1024, (rf1 - rf0) * 4096))
    return out


class RssSampler:
    """The QEMU process's RSS every second on a thread of its own, the policy polled every fifth
    (its emulated idle checks): ``rss`` is [(time, bytes)]; :meth:`stop` ends it (the lab benches')."""

    def __init__(self, vm: Any, policy: Any):
        import threading

        self.vm, self.policy = vm, policy
        self.rss: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            now = time.time()
            try:
                self.rss.append((now, self.vm.rss_bytes()))
            except OSError:
                pass
            n += 1
            if n % 5 == 0:
                self.policy.observe(now)
            self._stop.wait(max(0.0, 1.0 - (time.time() - now)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
