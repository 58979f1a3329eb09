"""Where a warm kernel's ``IPKernelApp.initialize`` spends its CPU, step by step (issue 25, item 2).

    .venv/bin/python benchmarks/kernel_init_steps.py [-k 8]

Imports what a grading worker's warm parent imports (``KERNEL_PRELOAD``) and warms up as it does,
then forks K children as the warm parent forks kernels; each builds the ``IPKernelApp`` with the
grading kernel's command line (``KERNEL_ARGUMENTS``, Unix sockets) and reports the CPU of each
``init_*`` step, unprofiled. What a warm parent could build before the fork (the IPython shell, in
``init_kernel``; the command line, ``parse_command_line``) is bounded by those two lines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.grader import warmkernel  # noqa: E402

os.environ.update(warmkernel._IMPORT_ENV)
os.environ["MPLBACKEND"] = warmkernel.INLINE_BACKEND
from toeplitz_course.grader.config import KERNEL_ARGUMENTS, KERNEL_PRELOAD  # noqa: E402

STEPS = (
    "parse_command_line", "init_profile_dir", "init_connection_file", "init_sockets",
    "init_heartbeat", "init_io", "init_kernel", "init_gui_pylab", "init_extensions", "init_code",
)  # fmt: skip


def _child(write_fd: int) -> None:
    from ipykernel.kernelapp import IPKernelApp
    from jupyter_client.connect import write_connection_file

    folder = tempfile.mkdtemp()
    connection = os.path.join(folder, "kernel.json")
    write_connection_file(connection, transport="ipc", ip=os.path.join(folder, "kernel"))
    times: dict[str, float] = {}
    for name in STEPS:
        original = getattr(IPKernelApp, name)

        def timed(self, *a, _original=original, _name=name, **k):
            start = time.process_time()
            try:
                return _original(self, *a, **k)
            finally:
                times[_name] = times.get(_name, 0.0) + time.process_time() - start

        setattr(IPKernelApp, name, timed)
    start = time.process_time()
    IPKernelApp.instance().initialize(["-f", connection, *KERNEL_ARGUMENTS])
    times["total"] = time.process_time() - start
    os.write(write_fd, json.dumps(times).encode())  # the app has taken stdout over
    shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--runs", type=int, default=8)
    args = parser.parse_args()
    for module in KERNEL_PRELOAD:
        importlib.import_module(module)
    warmkernel._warm_matplotlib()
    warmkernel._warm_tracebacks()
    warmkernel._warm_kernel_app()
    runs = []
    for _ in range(args.runs):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _child(write_fd)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            runs.append(json.loads(f.read() or b"{}"))
        os.waitpid(pid, 0)
    print(f"{args.runs} forked kernels, CPU ms (median; load average {os.getloadavg()[0]:.2f}):")
    for name in (*STEPS, "total"):
        print(f"  {name:22s} {statistics.median(r.get(name, 0.0) for r in runs) * 1000:6.1f}")


if __name__ == "__main__":
    main()
