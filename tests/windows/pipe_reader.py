"""PipeReader on a real pipe, as tests/test_windows_smoke.py runs it under the Windows CPython (where
select() refuses pipes: WinError 10038). Prints what each read gave, as JSON.

Usage: python pipe_reader.py REPO
"""

import json
import subprocess
import sys

sys.path.insert(0, sys.argv[1])
from monitor.probes.interop import PipeReader  # noqa: E402

CHILD = "import sys\nline = sys.stdin.readline()\nprint('got ' + line.strip(), flush=True)\nsys.stdin.read()\n"
child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
reader = PipeReader(child.stdout.fileno(), "child stdout")
seen = {"before": reader.read(0.0)}  # the child waits for our line: nothing can have come yet
child.stdin.write(b"hello\n")
child.stdin.flush()
answer = b""
while b"\n" not in answer:
    chunk = reader.read(120.0)
    if not chunk:
        break
    answer += chunk
seen["answer"] = answer
child.stdin.close()  # the child ends: the pipe's end follows
end = reader.read(120.0)
while end:  # anything still on its way (nothing expected)
    end = reader.read(120.0)
seen["end"] = end
child.wait()
reader.close()
print(json.dumps({k: None if v is None else v.decode() for k, v in seen.items()}))
