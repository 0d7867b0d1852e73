"""Windows only: every process's private working set without a process handle (issue 27, item 3).

psutil's private set (``memory_full_info().uss``) opens the process and walks its address space;
``vmmem``/``vmmemWSL`` refuses that handle even to an administrator, so psutil falls back to the
whole working set, up to a gigabyte higher (winsiderss/systeminformer#580). Task Manager reads the
private set from ``NtQuerySystemInformation(SystemProcessInformation)`` instead: one call, no handle,
a ``SYSTEM_PROCESS_INFORMATION`` record per process. Its layout on 64-bit Windows (winternl.h; the
phnt headers name the fields Microsoft leaves "Reserved"), offsets in bytes::

      0  ULONG          NextEntryOffset        (0: the last record)
      8  LARGE_INTEGER  WorkingSetPrivateSize  (Vista and later: what Task Manager shows)
     56  UNICODE_STRING ImageName              (USHORT Length in bytes, USHORT MaximumLength, PWSTR Buffer at 64)
     80  HANDLE         UniqueProcessId
    144  SIZE_T         WorkingSetSize

A record whose WorkingSetPrivateSize is 0 while its working set is not says the system left the
field unfilled (Wine does: tests/test_windows_smoke.py); the caller then keeps its labelled
fallback. Nothing here runs except on Windows-native Python (``os.name == "nt"``).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

SYSTEM_PROCESS_INFORMATION = 5
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
_NEXT, _PRIVATE, _NAME_LEN, _NAME_BUF, _PID, _WSET = 0, 8, 56, 64, 80, 144
_RECORD_MIN = 152  # through WorkingSetSize


@dataclass(frozen=True)
class NtProcess:
    pid: int
    name: str
    working_set: int
    private_working_set: int | None  # None: the field was left unfilled (0 beside a working set)


def parse_process_records(buffer: bytes, read_name) -> list[NtProcess]:
    """The records chained in ``buffer`` (what NtQuerySystemInformation filled); ``read_name(address,
    length)`` reads an image name's UTF-16 characters (a pointer into the same buffer)."""
    out, offset = [], 0
    while offset + _RECORD_MIN <= len(buffer):
        nxt = struct.unpack_from("<I", buffer, offset + _NEXT)[0]
        private = struct.unpack_from("<q", buffer, offset + _PRIVATE)[0]
        length = struct.unpack_from("<H", buffer, offset + _NAME_LEN)[0]
        address = struct.unpack_from("<Q", buffer, offset + _NAME_BUF)[0]
        pid = struct.unpack_from("<Q", buffer, offset + _PID)[0]
        wset = struct.unpack_from("<Q", buffer, offset + _WSET)[0]
        name = read_name(address, length) if address and length else ("System Idle Process" if pid == 0 else "")
        out.append(NtProcess(pid, name, wset, private if private > 0 or wset == 0 else None))
        if nxt == 0:
            break
        offset += nxt
    return out


def query_processes() -> list[NtProcess]:
    """Every process as the system reports it; OSError when the call fails (not Windows, 32-bit Python)."""
    if os.name != "nt":
        raise OSError("NtQuerySystemInformation exists on Windows only")
    import ctypes

    if ctypes.sizeof(ctypes.c_void_p) != 8:
        raise OSError("the record layout here is 64-bit Windows'")
    ntdll = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined]
    size = 1 << 20
    for _ in range(8):  # the process list grows between calls: grow the buffer and ask again
        buf = ctypes.create_string_buffer(size)
        needed = ctypes.c_ulong(0)
        status = ntdll.NtQuerySystemInformation(SYSTEM_PROCESS_INFORMATION, buf, size, ctypes.byref(needed)) \
            & 0xFFFFFFFF
        if status == STATUS_INFO_LENGTH_MISMATCH:
            size = max(size * 2, needed.value + 65536)
            continue
        if status != 0:
            raise OSError(f"NtQuerySystemInformation(SystemProcessInformation): NTSTATUS {status:#010x}")
        base = ctypes.addressof(buf)

        def read_name(address: int, length: int) -> str:
            if not base <= address < base + size:  # the names live in the same buffer; anything else is odd
                return ""
            return ctypes.wstring_at(address, length // 2)
        return parse_process_records(buf.raw, read_name)
    raise OSError("NtQuerySystemInformation: the process list kept outgrowing the buffer")
