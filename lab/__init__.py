"""The QEMU lab: a small Linux guest with free page reporting and memory.reclaim, and its
command channel (``lab.vm``). The tests (tests/lab) and the benches (bench/lab_*.py) both use
it; ``lab/build.sh`` builds it. Stdlib only. See lab/README.md."""
