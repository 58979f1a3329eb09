"""Student code is confined: it reaches no answer, no other student, no gradebook, no network and
no grader, it is capped, and it leaves nothing behind.

One class -- an honest student and one attacker per attack -- is graded three times from the
same hand-ins, by the project's own `grade` command in a process of its own: sandboxed as root,
sandboxed as an unprivileged user (`setpriv` to nobody, as most instructors run it), and with
`--no-sandbox`. Every test asserts the attack is blocked in the first two runs *and* that it
works in the third, so each test fails when the sandbox is switched off. The honest student is
graded exactly as earned in every run. The attack that goes for the grader's own processes gets a
class of its own, since without the sandbox it ends the batch.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import handins
import nbformat
import pytest

from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS
from toeplitz_course.grader.grade import grade
from toeplitz_course.instructor import examples
from toeplitz_course.instructor.report import report

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux's"),
]

NB1 = NOTEBOOKS[0]
TOKEN = secrets.token_hex(6)
NOBODY = 65534

LIMITS = """
c.HardenedExecute.timeout = 10
c.HardenedExecute.notebook_deadline = 90
c.Sandbox.memory = "1GiB"
c.Sandbox.processes = 64
c.Sandbox.disk = "32MiB"
c.Sandbox.cpu_seconds = 4
"""

# Each attack is the start of the ex1_1 answer cell (the answer follows it, so ex1_1 still
# scores), and prints what it achieved; some also replace the ex1_2 answer with what they stole.
ATTACKS = {
    "a_solution": """
import json
linear_layer = None
try:
    src = json.load(open("{course}/source/toeplitz/01_conv1d_toeplitz.ipynb"))
    code = next("".join(c["source"]) for c in src["cells"]
                if c["metadata"].get("nbgrader", {{}}).get("grade_id") == "ex1_2")
    exec(code)
    print("ATTACK-WORKED ran the instructor's solution")
except Exception as e:
    print("ATTACK-BLOCKED", type(e).__name__, e)
""",
    "a_reference": """
import gc, torch
linear_layer, T = None, None
try:
    from toeplitz_course.course import reference
    T = reference.toeplitz_1d([1., 1., -2.], 10, 0)
except Exception as e:
    print("ATTACK-BLOCKED", type(e).__name__, e)
    found = [o for o in gc.get_objects()
             if callable(o) and getattr(o, "__name__", "") == "toeplitz_1d"
             and "reference" in str(getattr(o, "__module__", ""))]
    T = found[0]([1., 1., -2.], 10, 0) if found else None
if T is not None:
    linear_layer = torch.nn.Linear(10, 8, bias=False)
    with torch.no_grad():
        linear_layer.weight.copy_(T.float())
    print("ATTACK-WORKED built the answer with the grader's reference")
""",
    "a_other_student": """
import json
linear_layer = None
for folder in ("submitted", "autograded"):
    try:
        nb = json.load(open("{course}/" + folder + "/honest/toeplitz/01_conv1d_toeplitz.ipynb"))
        exec(next("".join(c["source"]) for c in nb["cells"]
                  if c["metadata"].get("nbgrader", {{}}).get("grade_id") == "ex1_2"))
        print("ATTACK-WORKED copied another student's answer from", folder)
        break
    except Exception as e:
        print("ATTACK-BLOCKED", type(e).__name__, e)
""",
    "a_secret": """
import os
try:
    print("ATTACK-WORKED", open("{secret}").read())
except Exception as e:
    print("ATTACK-BLOCKED", type(e).__name__, e)
print("ATTACK environment", sorted(os.environ.items()))
print("ATTACK initial environment", open("/proc/self/environ", "rb").read())
for frame in sys._current_frames().values():
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(value, dict) and any("PASSWORD" in str(k) for k in value):
                print("ATTACK frame", frame.f_code.co_name, value)
        frame = frame.f_back
# The kernel's own memory, as a ctypes-savvy student would read it: an environment entry of
# the grader's (the needle is built here, so that this cell's source holds no copy of it).
needle = ("GRADER_DB_" + "PASSWORD=").encode()
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
    for line in maps:
        addresses, perms = line.split()[:2]
        start, end = (int(a, 16) for a in addresses.split("-"))
        if perms[0] != "r" or end - start > 1 << 28 or "[vvar" in line or "[vsys" in line:
            continue
        try:
            mem.seek(start)
            chunk = mem.read(end - start)
        except (OSError, ValueError, OverflowError):
            continue
        at = chunk.find(needle)
        while at >= 0:
            value = chunk[at + len(needle): at + len(needle) + 40]
            if value.startswith(("env-" + "secret-").encode()):
                print("ATTACK memory", value)
            at = chunk.find(needle, at + 1)
""",
    "a_memfd": """
import os
try:
    fd = os.memfd_create("hoard")
    os.write(fd, b"x" * (64 << 20))
    print("ATTACK-WORKED 64 MiB held in a memfd, counted by no limit")
except OSError as e:
    print("ATTACK-BLOCKED", type(e).__name__, e)
""",
    "a_userns": """
import ctypes, os
r, w = os.pipe()
if os.fork() == 0:  # a single-threaded child can unshare
    result = ctypes.CDLL(None, use_errno=True).unshare(0x10000000)  # CLONE_NEWUSER
    os.write(w, f"{{result}} {{ctypes.get_errno()}}".encode())
    os._exit(0)
os.close(w)
result, err = os.read(r, 100).decode().split()
os.wait()
print("ATTACK-WORKED a user namespace of my own" if result == "0" else
      f"ATTACK-BLOCKED unshare errno {{err}}")
""",
    "a_runtime": """
import json, os
from ipykernel.connect import get_connection_file
folder = os.path.dirname(get_connection_file())
try:
    with open(os.path.join(folder, "hoard.bin"), "wb") as f:
        for _ in range(48):
            f.write(b"x" * (1 << 20))
    print("ATTACK-WORKED wrote 48 MiB beside the kernel's sockets", folder)
except OSError as e:
    print("ATTACK-BLOCKED", type(e).__name__, e)
""",
    "a_gradebook": """
import sqlite3
try:
    db = sqlite3.connect("file:{course}/gradebook.db?mode=rw", uri=True)
    db.execute("update grade set manual_score = 99")
    db.commit()
    print("ATTACK-WORKED wrote the gradebook")
except Exception as e:
    print("ATTACK-BLOCKED", type(e).__name__, e)
""",
    "a_write": """
for path in ("{course}/pwned-{token}", "/tmp/pwned-{token}", "{home}/pwned-{token}",
             "{course}/submitted/honest/toeplitz/pwned-{token}", "{course}/release/pwned-{token}"):
    try:
        with open(path, "w") as f:
            f.write("pwned")
        print("ATTACK-WROTE", path)
    except Exception as e:
        print("ATTACK-BLOCKED", type(e).__name__, e)
""",
    "a_network": """
import socket
for host in ("127.0.0.1", "localhost"):
    try:
        with socket.create_connection((host, {port}), timeout=2) as s:
            s.sendall(b"{token}")
        print("ATTACK-WORKED connected to", host)
    except Exception as e:
        print("ATTACK-BLOCKED", type(e).__name__, e)
""",
    "a_survive": """
import os, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "survivor-{token}"],
                 start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)",
                                  "survivor2-{token}"])
    os._exit(0)
print("ATTACK started two survivors")
""",
    "a_memory": """
block = bytearray(3 << 29)  # 1.5 GiB, over the test's cap of 1 GiB
print("ATTACK-WORKED allocated and touched", len(block) >> 20, "MiB")
del block
""",
    "a_processes": """
import os, time
forked = 0
for _ in range(300):
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
    forked += 1
print("ATTACK-WORKED forked", forked)
""",
    "a_disk": """
with open("big.bin", "wb") as f:
    for _ in range(64):
        f.write(b"x" * (1 << 20))
print("ATTACK-WORKED wrote 64 MiB")
""",
    "a_cpu": """
while True:
    pass
""",
}

# Kills every process above the kernel: its warm parent, the grading worker, the grade command
# (only its own grading tree, up to `python -m toeplitz_course ... grade`, so that running the
# tests harms nothing else on the machine: not pytest, nor a pytest-xdist worker, whose command
# line does not say pytest).
KILL_GRADER = """
import os, signal
pid = os.getppid()
ancestors = []
while pid > 1:
    ancestors.append(pid)
    try:
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        break
targets, seen = [], []
for pid in ancestors:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read()
    seen.append((pid, cmd))
    if cmd.split(b"\\0")[1:3] == [b"-m", b"toeplitz_course"]:
        targets = seen  # up to the grade command: what is above it is the test runner's
        break
# The grade command first: killing a nearer ancestor first can end this kernel (its parent's
# death signal) before it reaches the rest.
for pid, cmd in reversed(targets):
    try:
        os.kill(pid, signal.SIGKILL)
        print("ATTACK-KILLED", pid, cmd[:80])
    except OSError as e:
        print("ATTACK-BLOCKED", pid, e)
print("ATTACK ancestors", ancestors)
"""


class Listener:
    """A TCP server on 127.0.0.1 that records what connects to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(100))
                except OSError:
                    self.received.append(b"")

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def _attacker(course: Path, student: str, code: str, steals: bool) -> examples.Case:
    nbs = examples.correct(course)
    solution = examples.solutions(course)["ex1_1"]
    if steals:  # the stolen answer, or None: nothing else answers ex1_2
        examples.answer(nbs, "ex1_2", code)
        code = ""
    examples.answer(nbs, "ex1_1", code + "\n" + solution)
    return examples.Case(student, {f"{NB1}.ipynb": nbformat.writes(nbs[NB1])})


def _write_class(course: Path, attacks: dict[str, str], fill: dict[str, str]) -> None:
    # Notebook 1 only, like the attackers (a kernel each): the sandbox's grading of every notebook
    # as earned is test_grading's class, graded sandboxed.
    handins.write(examples.correct(course), course, "honest", [NB1])
    for student, template in attacks.items():
        code = template.format(**fill) if "{" in template else template
        steals = student in ("a_solution", "a_reference", "a_other_student")
        examples.write_case(_attacker(course, student, code, steals), course)


def _survivors() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"survivor-{TOKEN}".encode() in cmd or f"survivor2-{TOKEN}".encode() in cmd:
            found.append(int(pid))
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _grade(course: Path, mode: str, home: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "toeplitz_course", "--root", str(course), "grade", "--quiet"]
    cmd += ["--jobs", "2"] + (["--no-sandbox"] if mode == "off" else [])
    env = {**os.environ, "HOME": str(home), "GRADER_DB_PASSWORD": f"env-secret-{TOKEN}"}
    if mode == "nobody":
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    # Files, not pipes: a process that outlives the run would hold a pipe open, and waiting for
    # its end would hide it.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=err, timeout=600, cwd="/")
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, done.returncode, out.read(), err.read())


def _can_run_as_nobody() -> str | None:
    if os.geteuid() != 0:
        return None if _userns_ok() else "no user namespaces for this user"
    if not shutil.which("setpriv"):
        return "setpriv is not installed"
    probe = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable]
        + ["-c", "import toeplitz_course"],
        capture_output=True,
        cwd="/",
    )
    if probe.returncode != 0:
        return (
            f"nobody cannot run {sys.executable} (a directory on its path is closed to other "
            "users; .ci/run opens it)"
        )
    return None


def _userns_ok() -> bool:
    return subprocess.run(["unshare", "-Ur", "true"], capture_output=True).returncode == 0


def _prepare(course: Path, mode: str) -> None:
    if mode == "nobody" and os.geteuid() == 0:
        for path in [course, *course.rglob("*")]:
            os.lchown(path, NOBODY, NOBODY)
        os.chmod(course, 0o755)


@pytest.fixture(scope="module")
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture(scope="module", params=["sandbox", "nobody", "off"])
def run(request, course_template, tmp_path_factory, listener):
    """One grading of the class; its mode, course, home, exit status, survivors, records."""
    mode = request.param
    if mode == "nobody" and (reason := _can_run_as_nobody()):
        pytest.skip(reason)
    if mode == "nobody":  # pytest's own temporary folders are closed to other users
        base = Path(tempfile.mkdtemp(prefix="sandbox-nobody-"))
        base.chmod(0o755)
        request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    else:
        base = tmp_path_factory.mktemp(f"sandbox-{mode}")
    course = base / "course"
    shutil.copytree(course_template, course)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(LIMITS)
    home = base / "home"
    home.mkdir()
    secret = home / "secret.txt"
    secret.write_text(f"grader-secret-{TOKEN}")
    secret.chmod(0o644)  # readable by anyone who can reach it: only the sandbox stands between
    fill = {
        "course": course,
        "secret": secret,
        "home": home,
        "port": listener.port,
        "token": TOKEN,
    }
    _write_class(course, ATTACKS, fill)
    _prepare(course, mode)
    if mode == "nobody":
        for path in (base, home, secret):
            os.chown(path, NOBODY, NOBODY)
    before = len(listener.received)
    result = _grade(course, mode, home)
    time.sleep(0.5)  # a survivor started in the last notebook has had time to show
    survivors = _survivors()
    _kill(survivors)
    records = {p.stem: json.loads(p.read_text()) for p in (course / "grading").glob("*.json")}
    yield {
        "mode": mode,
        "course": course,
        "home": home,
        "result": result,
        "survivors": survivors,
        "records": records,
        "connections": listener.received[before:],
    }
    for stray in Path("/tmp").glob(f"pwned-{TOKEN}"):
        stray.unlink()


def _outputs(run, student: str) -> str:
    path = run["course"] / "autograded" / student / ASSIGNMENT / f"{NB1}.ipynb"
    nb = json.loads(path.read_text())
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            texts.append(str(out.get("text", "")) + str(out.get("evalue", "")))
    return "\n".join(texts)


def _score(run, student: str, test_id: str) -> float:
    return run["records"][student]["notebooks"][NB1]["cells"][test_id]["score"]


def _flags(run, student: str, kind: str) -> list[str]:
    return [f["detail"] for f in run["records"][student]["flags"] if f["kind"] == kind]


def confined(run) -> bool:
    return run["mode"] != "off"


def test_the_batch_finishes_and_the_honest_student_is_graded_as_earned(run):
    assert run["result"].returncode == 0, run["result"].stderr[-3000:]
    honest = run["records"]["honest"]
    expected = handins.expected("example_correct", [NB1])
    got = {c: v["score"] for nb in honest["notebooks"].values() for c, v in nb["cells"].items()}
    assert {c: got[c] for c in expected} == expected
    assert set(run["records"]) == {"honest", *ATTACKS}
    assert honest["sandboxed"] is confined(run)
    assert bool(_flags(run, "honest", "not_sandboxed")) is not confined(run)
    said = report(run["course"])
    everyone = len(ATTACKS) + 1
    banner = f"NOT SANDBOXED: {everyone} of {everyone} students"
    assert (banner in said) is not confined(run), said[:500]


@pytest.mark.parametrize("student", ["a_solution", "a_reference", "a_other_student"])
def test_no_answer_can_be_read_imported_or_copied(run, student):
    out = _outputs(run, student)
    assert ("ATTACK-WORKED" in out) is not confined(run), out[-2000:]
    assert _score(run, student, "ex1_2_test") == (0.0 if confined(run) else 1.0)
    assert _score(run, student, "ex1_1_test") == 1.0  # the attacker's own work still counts


def test_the_graders_home_and_environment_are_out_of_sight(run):
    out = _outputs(run, "a_secret")
    assert (f"grader-secret-{TOKEN}" in out) is not confined(run)
    assert (f"env-secret-{TOKEN}" in out) is not confined(run)


def test_the_gradebook_cannot_be_written(run):
    import sqlite3

    db = sqlite3.connect(run["course"] / "gradebook.db")
    tampered = db.execute("select count(*) from grade where manual_score = 99").fetchone()[0]
    db.close()
    assert (tampered > 0) is not confined(run)


def test_nothing_is_written_outside_the_scratch_directory(run):
    course, home = run["course"], run["home"]
    written = [
        p
        for p in (
            course / f"pwned-{TOKEN}",
            Path(f"/tmp/pwned-{TOKEN}"),
            home / f"pwned-{TOKEN}",
            course / "submitted" / "honest" / ASSIGNMENT / f"pwned-{TOKEN}",
            course / "release" / f"pwned-{TOKEN}",
        )
        if p.exists()
    ]
    assert bool(written) is not confined(run), written
    if not confined(run):
        assert len(written) == 5


@pytest.mark.parametrize("student", ["a_memfd", "a_userns", "a_runtime"])
def test_no_way_around_the_limits(run, student):
    """Memory no limit counts (memfd), a user namespace of its own (to mount a tmpfs of any
    size), the host disk beside the kernel's sockets: all refused."""
    out = _outputs(run, student)
    assert ("ATTACK-WORKED" in out) is not confined(run), out[-2000:]
    if confined(run):
        assert "ATTACK-BLOCKED" in out


def test_no_connection_reaches_a_loopback_listener(run):
    assert bool(run["connections"]) is not confined(run), run["connections"]
    out = _outputs(run, "a_network")
    assert ("ATTACK-WORKED" in out) is not confined(run)


def test_no_process_outlives_its_notebook(run):
    assert bool(run["survivors"]) is not confined(run)


@pytest.mark.parametrize(
    ("student", "limit"),
    [
        ("a_memory", "memory limit of 1 GiB reached in cell"),
        ("a_processes", "process limit of 64 reached in cell"),
        ("a_disk", "disk limit of 32 MiB reached in cell"),
        ("a_cpu", "CPU time limit of 4 s reached in cell"),
    ],
)
def test_each_cap_fails_that_notebook_with_a_clear_message(run, student, limit):
    hits = _flags(run, student, "limit")
    if confined(run):
        assert any(limit in hit for hit in hits), run["records"][student]["flags"]
        # The cell that hit the cap and everything after it earn nothing...
        assert _score(run, student, "ex1_3_test") == 0.0
    else:
        assert not hits
        if student != "a_cpu":
            assert "ATTACK-WORKED" in _outputs(run, student)


@pytest.fixture(scope="module", params=["sandbox", "off"])
def kill_run(request, course_template, tmp_path_factory):
    mode = request.param
    course = tmp_path_factory.mktemp(f"kill-{mode}") / "course"
    shutil.copytree(course_template, course)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(LIMITS)
    # Graded in name order: the attacker between two honest students, on one worker each side.
    handins.write(examples.correct(course), course, "a_honest", [NB1])
    examples.write_case(_attacker(course, "b_killer", KILL_GRADER, steals=False), course)
    handins.write(examples.correct(course), course, "c_honest", [NB1])
    result = _grade(course, mode, course)
    records = {p.stem: json.loads(p.read_text()) for p in (course / "grading").glob("*.json")}
    return {"mode": mode, "result": result, "records": records}


def test_student_code_cannot_kill_the_grader(kill_run):
    finished = kill_run["result"].returncode == 0 and {"a_honest", "c_honest"} <= set(
        kill_run["records"]
    )
    assert finished is confined(kill_run), kill_run["result"].stderr[-2000:]
    if confined(kill_run):
        expected = handins.expected("example_correct", [NB1])
        for student in ("a_honest", "c_honest"):
            cells = kill_run["records"][student]["notebooks"]
            got = {c: v["score"] for nb in cells.values() for c, v in nb["cells"].items()}
            assert {c: got[c] for c in expected} == expected


def test_only_warm_kernels_run_with_the_sandbox_on():
    """A kernel manager that cannot confine is refused, not used unconfined."""
    from traitlets.config import Config

    from toeplitz_course.grader.preprocessors import HardenedExecute
    from toeplitz_course.grader.sandbox import SandboxUnavailable

    c = Config()
    c.HardenedExecute.kernel_manager_class = "jupyter_client.manager.AsyncKernelManager"
    with pytest.raises(SandboxUnavailable, match="cannot be sandboxed"):
        HardenedExecute(config=c)
    c.Sandbox.enabled = False
    HardenedExecute(config=c)  # the opt-out is the instructor's to take


REFUSES = """
import json, sys, tempfile
from toeplitz_course.grader import sandbox
if sys.argv[1] == "reference":
    import toeplitz_course.course.reference  # noqa: F401
work = tempfile.mkdtemp()
connection = work + "/kernel.json"
open(connection, "w").write("{}")
sys.exit(sandbox._self_test(sandbox.Sandbox().spec(work, connection)))
"""


@pytest.mark.parametrize("loaded", ["nothing", "reference"])
def test_no_kernel_is_confined_from_a_parent_that_holds_the_references(loaded):
    out = subprocess.run(
        [sys.executable, "-c", REFUSES, loaded], capture_output=True, text=True, timeout=60
    )
    if loaded == "reference":
        assert out.returncode != 0 and "refusing to confine" in out.stdout, out
    else:
        assert out.returncode == 0 and "confined" in out.stdout, out


def test_a_kernels_memory_holds_no_secret_of_the_graders_environment(course, monkeypatch):
    """End to end, one worker: environ, frames and a scan of the kernel's own memory find no
    variable of the grader's (see the next test for why, and that it would)."""
    from toeplitz_course.grader import warmkernel

    monkeypatch.setenv("GRADER_DB_PASSWORD", f"env-secret-{TOKEN}")
    fill = {"course": course, "secret": "/nonexistent", "home": "/", "port": 1, "token": TOKEN}
    examples.write_case(_attacker(course, "a_secret", ATTACKS["a_secret"].format(**fill), False),
                        course)  # fmt: skip
    warmkernel.shutdown_zygotes()  # a warm parent of this process started before would serve
    try:
        grade(course, jobs=1, progress=False)
    finally:
        warmkernel.shutdown_zygotes()
    out = _outputs({"course": course}, "a_secret")
    assert "ATTACK initial environment" in out and f"env-secret-{TOKEN}" not in out


def _environ(pid: int) -> bytes:
    """A process's initial environment (empty while it is still being exec'd: wait for it)."""
    deadline = time.monotonic() + 30
    while not (found := Path(f"/proc/{pid}/environ").read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.mark.parametrize("leaky", [False, True])
def test_warm_parents_and_the_worker_server_start_without_the_graders_secrets(monkeypatch, leaky):
    """A kernel's memory is a copy of its warm parent's, and a forked worker's warm parent is a
    copy of the server the workers are forked from: both start with sandbox.parent_env only, and
    workers read the caller's environment back from a private file after forking their warm
    parent. Leaky: the whole environment passed on, as it was."""
    from toeplitz_course.grader import sandbox, warmkernel
    from toeplitz_course.grader.grade import _worker_context

    secret = f"env-secret-{TOKEN}".encode()
    monkeypatch.setenv("GRADER_DB_PASSWORD", secret.decode())
    if leaky:
        monkeypatch.setattr(sandbox, "parent_env", lambda env: dict(env))
    preload = ("numpy", "ipykernel.kernelapp", "ipykernel.ipkernel")
    warmkernel.shutdown_zygotes(preload)
    try:
        zygote = warmkernel.prewarm(preload)["pid"]
        assert (secret in _environ(zygote)) is leaky
    finally:
        warmkernel.shutdown_zygotes(preload)
    from multiprocessing import forkserver

    with _worker_context() as (_, initargs):
        server = forkserver._forkserver._forkserver_pid
        if server is not None:  # forkserver available: the fork path is the one to check
            assert (secret in _environ(server)) is leaky
            assert all(secret.decode() not in str(arg) for arg in initargs)


_REDIRECT = """
import os, threading, time
from ipykernel.kernelapp import IPKernelApp
app = IPKernelApp.instance()
def redirect():
    time.sleep(0.5)  # after this cell's reply
    for name in ("shell", "hb"):
        path = f"{app.ip}-{getattr(app, name + '_port')}"
        os.unlink(path)
        os.symlink(%r, path)  # absolute: a path of the grader's file system
    app.shell_socket.unbind(f"ipc://{app.ip}-{app.shell_port}")
    app.heartbeat.socket.close() if hasattr(app.heartbeat, "socket") else None
threading.Thread(target=redirect, daemon=True).start()
"""


@pytest.mark.timeout(300)
def test_the_grader_connects_to_no_socket_a_kernel_points_it_at(tmp_path):
    """A sandboxed kernel owns the paths of its sockets: it swaps them for symlinks to a socket of
    the grader's machine and drops the grader's connections. The grader (root) must not follow:
    it reaches only the sockets the kernel bound before any cell ran."""
    from traitlets.config import Config

    from toeplitz_course.grader.config import KERNEL_ARGUMENTS
    from toeplitz_course.grader.preprocessors import HardenedExecute

    target = tmp_path / "host.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(target))
    server.listen(16)
    server.settimeout(0.2)
    connections: list[bytes] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(1)
            try:
                connections.append(conn.recv(64))
            except OSError:
                connections.append(b"")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    c = Config()
    c.HardenedExecute.kernel_manager_class = "toeplitz_course.grader.warmkernel.WarmKernelManager"
    c.HardenedExecute.extra_arguments = list(KERNEL_ARGUMENTS)
    c.HardenedExecute.allow_errors = True
    c.HardenedExecute.timeout = 6
    c.Sandbox.enabled = True
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(_REDIRECT % str(target)),
            nbformat.v4.new_code_cell("import time; time.sleep(3)"),
            nbformat.v4.new_code_cell("'sent to whoever listens where the kernel says'"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    try:
        HardenedExecute(config=c).preprocess(nb, {"metadata": {"path": str(work)}})
    finally:
        time.sleep(2)  # a heartbeat's reconnect, had it followed the link
        done.set()
        thread.join()
        server.close()
    assert connections == []
