"""The sandbox every grading kernel runs in: Linux namespaces and rlimits, no Docker, no setuid.

What student code sees
----------------------
A grading kernel (and every process it starts) runs as an unprivileged user in its own user,
mount, PID, network, IPC and UTS namespaces:

* **files**: a new root holding, read-only, the system's libraries (``/usr``, ``/lib*``, a few
  files of ``/etc``), the Python installation and its ``site-packages``, and of this project only
  ``toeplitz_course/__init__.py`` and the kernel side ``toeplitz_course/kernel/``. Writable: one
  tmpfs of ``Sandbox.disk`` bytes holding the working copy of the notebook's own folder (the
  kernel's cwd and ``$HOME``: the files handed in beside the notebooks), ``/tmp`` and
  ``/dev/shm``; and the kernel's own channel sockets.
  No course directory, no ``source/``, no other student, no gradebook, no home directory;
* **processes**: its own PID namespace with its own ``/proc``: it sees and can signal nothing
  outside; when the kernel (PID 1 there) ends, the kernel kills every process left in it,
  whatever ``setsid()`` or double fork they did;
* **network**: a network namespace of its own whose loopback is down: no route to any address.
  The kernel's channels are Unix sockets in a private directory (``transport="ipc"``);
* **limits** (``setrlimit``, per kernel): address space (``Sandbox.memory`` beyond what the warm
  kernel already maps), processes and threads (counted per user namespace, so per kernel), open
  files, CPU seconds, file size;
* **privileges**: none. The user is the grader's own uid (an unprivileged grader) or
  ``Sandbox.user`` (``nobody`` by default, when the grader runs as root), mapped to itself; all
  capabilities are dropped, the bounding set emptied and ``no_new_privs`` set after the mounts,
  so no mount can be undone or made writable.

How
---
The warm parent (``warmkernel``) forks each kernel. The forked child (``confine``) reads the
notebook's folder, drops to the sandbox user, ``unshare``\\ s the namespaces and forks once more:
the grandchild is PID 1 of the new PID namespace, builds the new root (bubblewrap's sequence:
a tmpfs base, ``pivot_root`` to it, bind mounts from the old root, ``/proc`` mounted while the old
root is still visible, ``pivot_root`` into the new root, the old one detached), sets its limits,
drops its capabilities and becomes the kernel. The child in between stays as the kernel's
"leader" the grader holds a pidfd of, waits, and exits as the kernel exits.

The kernel never holds the grader's verdicts or references: the warm parent is forked before
the grader imports them, ``confine`` refuses to run if it finds them in memory, and every module
of the project but the kernel side is dropped from ``sys.modules`` before student code runs.

Linux only. Needs unprivileged user namespaces (or root). ``check_support`` tries the whole
confinement in a throwaway process and says what failed.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import platform
import pwd
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
MNT_DETACH = 2
# statvfs f_flag bits -> the mount flags a remount in a user namespace must keep (they are locked)
_KEPT_FLAGS = {1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: MS_NOATIME}
_KEPT_FLAGS |= {2048: MS_NODIRATIME, 4096: MS_RELATIME}

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
M_ARENA_MAX = -8
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "clone": 56, "seccomp": 317},
    "aarch64": {"pivot_root": 41, "capset": 91, "clone": 220, "seccomp": 277},
}

# seccomp: what a confined kernel may not call (numbers per architecture, AUDIT_ARCH_*). Only
# holes in the other limits are closed, so nothing a notebook legitimately does breaks:
# memfd_create makes memory that neither RLIMIT_AS nor the tmpfs counts; a nested user namespace
# could mount a tmpfs of any size; clone3's flags cannot be inspected (glibc falls back to clone
# on ENOSYS), clone and unshare are refused with CLONE_NEWUSER only; the keyrings are the user's,
# not the sandbox's; io_uring bypasses the system call checks altogether.
_SECCOMP = {
    "x86_64": {
        "arch": 0xC000003E,
        "enosys": (319, 435),  # memfd_create, clone3
        "eperm": (248, 249, 250, 425),  # add_key, request_key, keyctl, io_uring_setup
        "flags": (56, 272),  # clone, unshare
        "x32": True,
    },
    "aarch64": {
        "arch": 0xC00000B7,
        "enosys": (279, 435),
        "eperm": (217, 218, 219, 425),
        "flags": (220, 97),
        "x32": False,
    },
}
SECCOMP_SET_MODE_FILTER = 1

#: Files of /etc a Python process may read (dynamic loader, time zone, users, certificates).
ETC = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/fonts",
    "/etc/mime.types",
)
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")

#: Environment variables a sandboxed kernel keeps from the grader's (the rest may hold secrets).
KEPT_ENV = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "MPLBACKEND",
    "NBGRADER_EXECUTION",
    "PYDEVD_DISABLE_FILE_VALIDATION",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "PYTHONHASHSEED",
)

#: Modules that compute or judge answers: a kernel whose memory holds one is not started.
FORBIDDEN_MODULES = ("toeplitz_course.course.reference", "toeplitz_course.grader.verdicts")

#: How a sandbox limit shows in a kernel: (kind, substrings of the error name and value).
LIMIT_SIGNS = {
    "memory": ("MemoryError", "can't allocate memory", "Cannot allocate memory"),
    "processes": ("BlockingIOError", "Resource temporarily unavailable"),
    "disk": ("No space left on device", "File too large"),
    "open files": ("Too many open files",),
}


class SandboxUnavailable(RuntimeError):
    """This machine cannot confine grading kernels; the message says why and what to do."""


def parse_size(text: str | int) -> int:
    """Bytes in ``"2GiB"``, ``"256MiB"``, ``"512M"``, ``"1.5G"`` or a plain number of bytes."""
    if isinstance(text, int):
        return text
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = text.strip().upper().replace("IB", "").replace("B", "")
    number, unit = (s[:-1], s[-1]) if s and s[-1] in units else (s, "")
    try:
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise ValueError(f"not a size: {text!r} (e.g. '2GiB', '256MiB')") from None


def format_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % (size // 4) == 0:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


class Sandbox(LoggingConfigurable):
    """How grading kernels are confined (``c.Sandbox.*`` in ``nbgrader_config.py``)."""

    enabled = Bool(
        True,
        help="Confine every grading kernel (namespaces, limits, no network). Off "
        "(`grade --no-sandbox`): student code runs with the grader's rights, and every grading "
        "record and the integrity report say so.",
    ).tag(config=True)
    memory = Unicode(
        "2GiB", help="Address space a kernel may add to what the warm kernel maps (RLIMIT_AS)."
    ).tag(config=True)
    processes = Integer(
        256, help="Processes and threads in one kernel's sandbox (RLIMIT_NPROC, per namespace)."
    ).tag(config=True)
    open_files = Integer(512, help="Open files per process (RLIMIT_NOFILE).").tag(config=True)
    cpu_seconds = Integer(
        120, help="CPU seconds per process (RLIMIT_CPU), besides the per-cell timeout."
    ).tag(config=True)
    disk = Unicode(
        "256MiB", help="Size of the writable tmpfs: working copy, /tmp and /dev/shm together."
    ).tag(config=True)
    user = Unicode("nobody", help="User the kernels run as when the grader runs as root.").tag(
        config=True
    )
    read_only = List(Unicode(), help="Further host paths to show read-only in every sandbox.").tag(
        config=True
    )

    def limits(self) -> dict[str, int]:
        return {
            "memory": parse_size(self.memory),
            "processes": self.processes,
            "open_files": self.open_files,
            "cpu_seconds": self.cpu_seconds,
            "disk": parse_size(self.disk),
        }

    def ids(self) -> tuple[int, int]:
        """The uid and gid kernels run as."""
        if os.geteuid() != 0:
            return os.geteuid(), os.getegid()
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            raise SandboxUnavailable(f"c.Sandbox.user = {self.user!r}: no such user") from None
        if entry.pw_uid == 0:
            raise SandboxUnavailable("c.Sandbox.user must not be root")
        return entry.pw_uid, entry.pw_gid

    def spec(self, work: str, connection_file: str) -> dict[str, Any]:
        """Everything ``confine`` needs, as plain data for the warm parent's spawn request."""
        uid, gid = self.ids()
        return {
            **self.limits(),
            "uid": uid,
            "gid": gid,
            "work": os.path.abspath(work),
            "connection_file": os.path.abspath(connection_file),
            "runtime": os.path.dirname(os.path.abspath(connection_file)),
            "read_only": read_only_paths(tuple(self.read_only)),
            "package": package_dir(),
        }

    def describe_limit(self, kind: str) -> str:
        limits = self.limits()
        if kind == "memory":
            return f"memory limit of {format_size(limits['memory'])}"
        if kind == "disk":
            return f"disk limit of {format_size(limits['disk'])}"
        if kind == "processes":
            return f"process limit of {limits['processes']}"
        if kind == "cpu":
            return f"CPU time limit of {limits['cpu_seconds']} s"
        return f"limit of {limits['open_files']} open files"


def limit_hit(ename: str, evalue: str) -> str | None:
    """Which sandbox limit an error in a kernel shows, if any."""
    text = f"{ename}: {evalue}"
    for kind, signs in LIMIT_SIGNS.items():
        if any(sign in text for sign in signs):
            return kind
    return None


@functools.cache
def package_dir() -> str:
    return str(Path(__file__).resolve().parents[1])


@functools.cache
def read_only_paths(extra: tuple[str, ...] = ()) -> list[str]:
    """Host paths shown read-only: the system, the Python installation and its site-packages.

    Of the import path, only entries inside the interpreter's prefixes and ``site-packages`` or
    ``dist-packages`` folders: never the current directory (``python -m`` puts it first, and a
    grader is usually started in the course directory) nor other ``PYTHONPATH`` folders, which
    ``Sandbox.read_only`` can add. The project's own package is shown as its kernel side only
    (``confine``).
    """
    prefixes = {
        Path(p).resolve()
        for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix)
    }
    chosen: list[str] = [*SYSTEM, *ETC, *map(str, sorted(prefixes))]
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        path = Path(entry).resolve()
        in_prefix = any(path == p or p in path.parents for p in prefixes)
        if in_prefix or path.name in ("site-packages", "dist-packages"):
            chosen.append(str(path))
    chosen.extend(extra)
    seen: list[str] = []
    for p in chosen:
        if p not in seen and os.path.lexists(p):
            seen.append(p)
    return seen


#: What a warm parent is started with of the grader's environment: the variables libraries read
#: when they are imported, nothing that may be secret (a kernel's memory is a copy of its warm
#: parent's, environment block included; each kernel gets its own environment from its request).
PARENT_ENV = (*KEPT_ENV, "HOME", "TMPDIR", "PYTHONPATH", "MPLCONFIGDIR", "TORCH_HOME")


def parent_env(env: dict[str, str]) -> dict[str, str]:
    """The environment to start a warm parent (or a server warm parents are forked from) with."""
    return {k: v for k, v in env.items() if k in PARENT_ENV or k.startswith(("LC_", "XDG_"))}


def filtered_env(env: dict[str, str], work: str) -> dict[str, str]:
    """The kernel's environment: what a kernel needs of the grader's, nothing that may be secret."""
    kept = {k: v for k, v in env.items() if k in KEPT_ENV or k.startswith(("LC_", "JPY_"))}
    kept.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    kept.update(HOME=work, TMPDIR="/tmp", MPLCONFIGDIR="/tmp/matplotlib", USER="student")
    return kept


# ---------------------------------------------------------------------------------------------
# Inside the forked kernel: confinement. Runs between fork and the kernel's start, in a process
# with one thread; nothing here may start a thread or leave the forked image's state half done.
# ---------------------------------------------------------------------------------------------


class _Libc:
    def __init__(self):
        self.lib = ctypes.CDLL(None, use_errno=True)
        self.numbers = _SYSCALLS.get(platform.machine(), {})

    def _check(self, result: int, what: str) -> int:
        if result == -1:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return result

    def unshare(self, flags: int) -> None:
        self._check(self.lib.unshare(ctypes.c_int(flags)), "unshare")

    def mount(self, source, target, fstype, flags: int, data: str | None = None) -> None:
        enc = [None if v is None else os.fsencode(v) for v in (source, target, fstype, data)]
        result = self.lib.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3])
        self._check(result, f"mount {target}")

    def umount(self, target: str, flags: int) -> None:
        self._check(self.lib.umount2(os.fsencode(target), ctypes.c_int(flags)), f"umount {target}")

    def pivot_root(self, new: str, old: str) -> None:
        if "pivot_root" not in self.numbers:
            raise OSError(errno.ENOSYS, f"pivot_root: unknown on {platform.machine()}")
        number = ctypes.c_long(self.numbers["pivot_root"])
        self._check(self.lib.syscall(number, os.fsencode(new), os.fsencode(old)), "pivot_root")

    def prctl(self, option: int, arg: int = 0) -> int:
        args = (ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
        return self.lib.prctl(ctypes.c_int(option), *args)

    def seccomp(self) -> None:
        """Install the filter of ``_SECCOMP`` (no_new_privs must be set)."""
        table = _SECCOMP.get(platform.machine())
        number = self.numbers.get("seccomp")
        if table is None or number is None:
            raise OSError(errno.ENOSYS, f"seccomp: unknown on {platform.machine()}")
        program = _seccomp_program(table)
        filters = (_SockFilter * len(program))(*[_SockFilter(*ins) for ins in program])
        fprog = _SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
        result = self.lib.syscall(
            ctypes.c_long(number),
            ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
            ctypes.c_ulong(0),
            ctypes.byref(fprog),
        )
        self._check(result, "seccomp")

    def drop_capabilities(self) -> None:
        for cap in range(64):
            self.prctl(PR_CAPBSET_DROP, cap)  # EINVAL past the last capability: ignored
        self.lib.prctl(
            ctypes.c_int(PR_CAP_AMBIENT),
            ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
        data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
        if "capset" in self.numbers:
            result = self.lib.syscall(ctypes.c_long(self.numbers["capset"]), header, data)
        else:
            result = self.lib.capset(header, data)
        self._check(result, "capset")
        self._check(self.prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp_program(table: dict) -> list[tuple[int, int, int, int]]:
    """The classic-BPF seccomp program of ``_SECCOMP``: (code, jt, jf, k) per instruction.

    arch check; nr; refused calls -> ENOSYS or EPERM; clone and unshare -> EPERM when their
    flags (args[0]) hold CLONE_NEWUSER; everything else allowed.
    """
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    returns = {
        "allow": 0x7FFF0000,
        "enosys": 0x00050000 | errno.ENOSYS,
        "eperm": 0x00050000 | errno.EPERM,
    }
    # Instructions with jump targets as labels (None: the next instruction), resolved below.
    code: list[tuple[int, str | None, str | None, int]] = [
        (ld, None, None, 4),  # seccomp_data.arch
        (jeq, None, "enosys", table["arch"]),
        (ld, None, None, 0),  # seccomp_data.nr
    ]
    if table["x32"]:
        code.append((jge, "enosys", None, 0x40000000))  # the x32 ABI's numbers
    code += [(jeq, "enosys", None, nr) for nr in table["enosys"]]
    code += [(jeq, "eperm", None, nr) for nr in table["eperm"]]
    labels: dict[str, int] = {}
    for i, nr in enumerate(table["flags"]):
        code.append((jeq, None, f"after{i}", nr))
        code.append((ld, None, None, 16))  # seccomp_data.args[0], low 32 bits
        code.append((jset, "eperm", "allow", CLONE_NEWUSER))
        labels[f"after{i}"] = len(code)
    for name in ("allow", "enosys", "eperm"):
        labels[name] = len(code)
        code.append((ret, None, None, returns[name]))
    program = []
    for here, (op, jt, jf, k) in enumerate(code):

        def offset(label: str | None, here: int = here) -> int:
            return 0 if label is None else labels[label] - here - 1

        program.append((op, offset(jt), offset(jf), k))
    return program


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _working_copy(work: str, budget: int) -> dict[str, bytes]:
    """The files handed in beside the notebooks (data a notebook reads), up to the disk budget.

    Not the notebooks: the kernel is sent its cells one by one, and the folder nbgrader runs it
    in holds the autograded notebooks of earlier runs, hidden tests and all. Not subfolders.
    """
    files: dict[str, bytes] = {}
    used = 0
    try:
        entries = sorted(os.scandir(work), key=lambda e: e.name)
    except OSError:
        return files
    for entry in entries:
        if not entry.is_file(follow_symlinks=False) or entry.name.endswith(".ipynb"):
            continue
        size = entry.stat(follow_symlinks=False).st_size
        if used + size > budget:
            continue
        with open(entry.path, "rb") as f:
            files[entry.name] = f.read()
        used += size
    return files


def fork(spec: dict[str, Any]) -> int:
    """``os.fork()`` into new namespaces: the child is PID 1 of a PID namespace of its own.

    A ``clone`` with namespace flags instead of a fork followed by ``unshare`` and a second fork
    (a PID namespace applies to the caller's children only): copying a warm parent's address
    space is most of what a fork costs, and this is the only one. Python's own fork protocol is
    kept (``PyOS_BeforeFork`` and the after-fork hooks). The caller must be single-threaded.

    As root, every namespace but the user namespace is made now, by root; the new root is
    built with root's rights (the Python installation may lie under a directory only root can
    enter), and only then does the kernel become ``spec["uid"]``, in a user namespace of its own
    that owns none of its mounts (``confine``). As an ordinary user, one user namespace made now
    owns them all.
    """
    flags = NAMESPACES & ~CLONE_NEWUSER if os.geteuid() == 0 else NAMESPACES
    number = _SYSCALLS.get(platform.machine(), {}).get("clone")
    if number is None:
        raise OSError(errno.ENOSYS, f"clone: unknown on {platform.machine()}")
    api = ctypes.pythonapi
    python = ctypes.PyDLL(None, use_errno=True)  # called with the GIL held, as fork is
    api.PyOS_BeforeFork()
    pid = python.syscall(ctypes.c_long(number), ctypes.c_ulong(flags | signal.SIGCHLD), 0, 0, 0, 0)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone into new namespaces: {os.strerror(err)}")
    return pid


def confine(spec: dict[str, Any], on_failure) -> None:
    """Confine the child of ``fork`` before anything of the student's runs in it.

    ``on_failure(exc)`` reports a setup error and ends the process.
    """
    for name in FORBIDDEN_MODULES:
        if name in sys.modules:
            on_failure(RuntimeError(f"the warm parent has imported {name}; refusing to confine"))
    try:
        if os.getpid() != 1:
            raise RuntimeError("not forked by sandbox.fork (not PID 1 of a namespace of its own)")
        libc = _Libc()
        as_root = os.geteuid() == 0
        if not as_root:
            _map_user(spec["uid"], spec["gid"])
        files = _working_copy(spec["work"], spec["disk"])
        with open(spec["connection_file"], "rb") as f:
            connection = f.read()
        # Nothing a student prints reaches the grader's terminal or log: outputs travel on the
        # kernel's channels; what the kernel process itself writes to stdio goes nowhere.
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        _build_root(libc, spec, files, connection)
        if as_root:
            _become(libc, spec["uid"], spec["gid"])
        _limit(libc, spec)
        libc.drop_capabilities()
        libc.seccomp()
        _wipe_initial_environment()
        _forget_the_grader()
    except BaseException as exc:  # noqa: BLE001 - reported, then this process ends
        on_failure(exc)


def _map_user(uid: int, gid: int) -> None:
    """Map this process's user and group to themselves in its new user namespace."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n")


def _become(libc: _Libc, uid: int, gid: int) -> None:
    """Root to ``uid`` for good, then a user namespace of its own (see ``confine``)."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # A change of user makes the process undumpable (its uid_map would be root's to write) and
    # clears the parent-death signal: restore both.
    libc.prctl(PR_SET_DUMPABLE, 1)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    libc.unshare(CLONE_NEWUSER)
    _map_user(uid, gid)


def _make_point(path: str, like: str) -> None:
    """A mount point at ``path`` for the host path ``like`` (a directory or a file)."""
    if os.path.isdir(like):
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def _remount_read_only(libc: _Libc, targets: list[str]) -> None:
    """Make ``targets`` and every mount below them read-only, keeping their locked flags."""
    with open("/oldroot/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in points:
        if any(point == t or point.startswith(t.rstrip("/") + "/") for t in targets):
            flags = 0
            try:
                bits = os.statvfs(point).f_flag
            except OSError:
                continue
            for bit, flag in _KEPT_FLAGS.items():
                if bits & bit:
                    flags |= flag
            libc.mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | flags)


def _bind(libc: _Libc, host: str) -> str:
    """Bind the host path ``host`` at the same place in the new root; returns the mount point."""
    source = "/oldroot" + host
    target = "/newroot" + host
    _make_point(target, source)
    libc.mount(source, target, None, MS_BIND | MS_REC)
    return target


def _build_root(
    libc: _Libc, spec: dict[str, Any], files: dict[str, bytes], connection: bytes
) -> None:
    libc.mount(None, "/", None, MS_REC | MS_PRIVATE)
    # bubblewrap's sequence: a tmpfs base holding the new root and the old one.
    libc.mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    os.mkdir("/tmp/newroot")
    os.mkdir("/tmp/oldroot")
    libc.pivot_root("/tmp", "/tmp/oldroot")
    os.chdir("/")
    libc.mount("tmpfs", "/newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m")

    # Writable: one tmpfs, the working copy, /tmp and /dev/shm sharing its size.
    scratch = "/newroot/.sandbox"
    os.mkdir(scratch)
    size = f"size={spec['disk']},mode=0755,uid={spec['uid']},gid={spec['gid']}"
    libc.mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, size)
    for sub in ("work", "tmp", "shm"):
        os.mkdir(f"{scratch}/{sub}", 0o1777 if sub != "work" else 0o755)
    for name, data in files.items():
        with open(f"{scratch}/work/{name}", "wb") as f:
            f.write(data)
    for path in (f"{scratch}/work", *(f"{scratch}/work/{n}" for n in files)):
        os.chown(path, spec["uid"], spec["gid"])
    # /tmp first: the working copy, the kernel's sockets or the Python may live below it.
    for sub, at in (("tmp", "/tmp"), ("shm", "/dev/shm"), ("work", spec["work"])):
        os.makedirs("/newroot" + at, exist_ok=True)
        libc.mount(f"{scratch}/{sub}", "/newroot" + at, None, MS_BIND)

    read_only = []
    for host in spec["read_only"]:
        if os.path.islink("/oldroot" + host):  # /bin -> usr/bin, /etc/localtime -> /usr/...
            os.makedirs(os.path.dirname("/newroot" + host), exist_ok=True)
            if not os.path.lexists("/newroot" + host):
                os.symlink(os.readlink("/oldroot" + host), "/newroot" + host)
        elif os.path.lexists("/oldroot" + host):
            read_only.append(_bind(libc, host))

    # The project: its package's __init__ and the kernel side, nothing else.
    package = spec["package"]
    os.makedirs("/newroot" + package, exist_ok=True)
    libc.mount("tmpfs", "/newroot" + package, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    with open("/oldroot" + package + "/__init__.py", "rb") as f:
        init = f.read()
    with open("/newroot" + package + "/__init__.py", "wb") as f:
        f.write(init)
    read_only.append(_bind(libc, package + "/kernel"))
    _remount_read_only(libc, read_only)
    libc.mount(None, "/newroot" + package, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)

    for device in DEVICES:
        _bind(libc, f"/dev/{device}")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
        os.symlink(target, f"/newroot/dev/{name}")
    os.symlink("/proc/self/fd/1", "/newroot/dev/stdout")
    os.symlink("/proc/self/fd/2", "/newroot/dev/stderr")

    # The kernel's connection file and sockets, at the path the grader knows, but on the scratch
    # tmpfs: the grader reaches the sockets through /proc/PID/root (symbolic links it makes in
    # its own directory), so nothing of the host's file system is writable from here.
    runtime = "/newroot" + spec["runtime"]
    os.makedirs(runtime, mode=0o700, exist_ok=True)
    with open(os.open(runtime + "/" + os.path.basename(spec["connection_file"]),
                      os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:  # fmt: skip
        f.write(connection)
    for path in (runtime, runtime + "/" + os.path.basename(spec["connection_file"])):
        os.chown(path, spec["uid"], spec["gid"])

    # /proc of the new PID namespace, mounted while the host's is still visible (the kernel
    # allows a new proc only where a full one is already seen).
    os.mkdir("/newroot/proc")
    libc.mount("proc", "/newroot/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)

    os.mkdir("/newroot/.oldroot")
    libc.pivot_root("/newroot", "/newroot/.oldroot")
    os.chdir("/")
    libc.umount("/.oldroot", MNT_DETACH)
    os.rmdir("/.oldroot")
    libc.mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(spec["work"])
    libc.lib.sethostname(b"sandbox", ctypes.c_size_t(7))


def _wipe_initial_environment() -> None:
    """Zero the environment block the warm parent was started with (``/proc/self/environ``).

    The kernel's own environment is its request's (``os.environ`` was replaced); the block the
    process image inherited stays in its memory otherwise, readable by student code.
    """
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    start, end = int(fields[47]), int(fields[48])  # env_start, env_end: fields 50 and 51
    if 0 < start < end:
        ctypes.memset(start, 0, end - start)


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit(libc: _Libc, spec: dict[str, Any]) -> None:
    # Few malloc arenas: each thread's arena reserves 64 MiB of address space otherwise.
    libc.lib.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(2))
    memory = _vm_size() + spec["memory"]
    limits = {
        resource.RLIMIT_AS: (memory, memory),
        # Counted per user namespace: every process and thread of this sandbox, and only those.
        resource.RLIMIT_NPROC: (spec["processes"], spec["processes"]),
        resource.RLIMIT_NOFILE: (spec["open_files"], spec["open_files"]),
        # One second between soft (SIGXCPU, which the kernel turns into its exit status) and
        # hard (SIGKILL): raising the soft limit gains a student at most that second.
        resource.RLIMIT_CPU: (spec["cpu_seconds"], spec["cpu_seconds"] + 1),
        resource.RLIMIT_FSIZE: (spec["disk"], spec["disk"]),
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in limits.items():
        resource.setrlimit(which, value)
    # The kernel is PID 1 of its namespace, and the kernel ignores signals PID 1 has no handler
    # for: without one, the soft CPU limit would pass unseen until the hard one's SIGKILL.
    signal.signal(signal.SIGXCPU, _cpu_limit_reached)


#: The exit status of a kernel that reached its CPU time limit.
CPU_LIMIT_EXIT = 128 + signal.SIGXCPU


def _cpu_limit_reached(signum, frame) -> None:
    os._exit(CPU_LIMIT_EXIT)


#: The grader's modules a kernel inherited, kept alive but out of reach of ``import``: freeing
#: them would touch (and copy) many of the pages the kernel shares with its warm parent, and
#: none of them holds an answer (``FORBIDDEN_MODULES`` were never there).
_OUT_OF_REACH: list[Any] = []


def _forget_the_grader() -> None:
    """Drop every module of the project but the kernel side, so none is importable by name.

    Found by walking the package's submodule attributes (the import system sets one for every
    submodule it loads), not by scanning ``sys.modules``: reading each of its ~1,500 names
    after the fork would write their reference counts and copy the pages they live on (3 ms).
    """
    import toeplitz_course

    pending = [toeplitz_course]
    found: list[str] = []
    while pending:
        package = pending.pop()
        for value in list(vars(package).values()):
            name = getattr(value, "__name__", None)
            if (
                type(value) is type(toeplitz_course)
                and isinstance(name, str)
                and name.startswith(package.__name__ + ".")
                and name not in found
            ):
                found.append(name)
                pending.append(value)
    for name in found:
        if not name.startswith("toeplitz_course.kernel"):
            _OUT_OF_REACH.append(sys.modules.pop(name, None))
    for attr in ("grader", "course", "instructor"):
        _OUT_OF_REACH.append(vars(toeplitz_course).pop(attr, None))


# ---------------------------------------------------------------------------------------------
# Can this machine confine?
# ---------------------------------------------------------------------------------------------

_SUPPORT: dict[tuple, str | None] = {}

HOW_TO_ENABLE = (
    "Grading kernels run in Linux user namespaces. Enable them (as root: "
    "`sysctl -w kernel.unprivileged_userns_clone=1` on Debian, `sysctl -w "
    "kernel.apparmor_restrict_unprivileged_userns=0` on Ubuntu 24.04, or run the grader as "
    "root), or grade without the sandbox at your own risk: `grade --no-sandbox` or "
    "`c.Sandbox.enabled = False` in nbgrader_config.py."
)


def check_support(sandbox: Sandbox | None = None) -> None:
    """Raise :class:`SandboxUnavailable` unless a kernel can be confined here (tried for real,
    in a throwaway process, once per process)."""
    sandbox = sandbox or Sandbox()
    key = (os.geteuid(), sandbox.user)
    if key not in _SUPPORT:
        _SUPPORT[key] = _try_confining(sandbox)
    if _SUPPORT[key]:
        raise SandboxUnavailable(f"cannot confine grading kernels here: {_SUPPORT[key]}")


def _try_confining(sandbox: Sandbox) -> str | None:
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux (this is {sys.platform}). {HOW_TO_ENABLE}"
    import tempfile

    try:
        spec_dirs = tempfile.mkdtemp(prefix="toeplitz-sandbox-check-")
        os.chmod(spec_dirs, 0o755)
        connection = os.path.join(spec_dirs, "kernel.json")
        Path(connection).write_text("{}")
        spec = sandbox.spec(spec_dirs, connection)
    except SandboxUnavailable as exc:
        return str(exc)
    code = (
        "import json, sys\n"
        "from toeplitz_course.grader import sandbox\n"
        "sys.exit(sandbox._self_test(json.loads(sys.argv[1])))\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
    finally:
        import shutil

        shutil.rmtree(spec_dirs, ignore_errors=True)
    if result.returncode == 0 and result.stdout.strip() == "confined":
        return None
    detail = (result.stdout + result.stderr).strip().splitlines()
    return f"{detail[-1] if detail else f'exit {result.returncode}'}. {HOW_TO_ENABLE}"


def _self_test(spec: dict[str, Any]) -> int:
    """Confine a process as a kernel would be, and print whether it is (``check_support``)."""
    read_end, write_end = os.pipe()

    def fail(exc: BaseException) -> None:
        os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
        os._exit(3)

    pid = fork(spec)
    if pid == 0:
        os.close(read_end)
        os.setsid()
        confine(spec, fail)  # stdio is /dev/null from here on
        confined = os.getpid() == 1 and not os.path.exists("/oldroot")
        os.write(write_end, b"confined" if confined else b"not confined")
        os._exit(0)
    os.close(write_end)
    report = b""
    while chunk := os.read(read_end, 4096):
        report += chunk
    _, status = os.waitpid(pid, 0)
    print(report.decode(errors="replace"), flush=True)
    return os.waitstatus_to_exitcode(status)
