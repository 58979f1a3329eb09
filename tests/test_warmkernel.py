"""Kernels forked from the warm zygote behave like stock kernels, and share nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time

import nbformat
import psutil
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from toeplitz_course.grader import warmkernel
from toeplitz_course.grader.warmkernel import WarmKernelManager

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfds and prctl: Linux"),
    pytest.mark.timeout(120),
]

# A zygote of its own for the tests that shut one down or break one, so that they cannot
# disturb the shared one (zygotes are per preload list).
SMALL_PRELOAD = ["numpy", "ipykernel.kernelapp", "ipykernel.ipkernel"]

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook(*sources: str) -> nbformat.NotebookNode:
    return new_notebook(
        cells=[new_code_cell(src) for src in sources],
        metadata={"kernelspec": KERNELSPEC},
    )


def run(nb, path, manager=WarmKernelManager, config=None, **kwargs) -> nbformat.NotebookNode:
    """Run ``nb``; unconfined unless ``config`` says otherwise: these tests are of the warm
    mechanism itself (pids, parents, descriptors), the sandbox has tests/test_sandbox.py."""
    kwargs.setdefault("timeout", 60)
    config = config or Config()
    if "enabled" not in config.Sandbox:
        config.Sandbox.enabled = False
    client = NotebookClient(
        nb,
        kernel_manager_class=manager,
        resources={"metadata": {"path": str(path)}},
        config=config,
        **kwargs,
    )
    return client.execute()


def stdout(cell) -> str:
    return "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout")


def facts(cell) -> dict:
    """The JSON object the cell printed last."""
    return json.loads(stdout(cell).strip().splitlines()[-1])


def zygote() -> psutil.Process:
    return psutil.Process(warmkernel._zygotes[tuple(warmkernel.DEFAULT_PRELOAD)].pid)


def gone(pid: int) -> bool:
    # Orphans are reaped by pid 1, which in some containers never reaps: a zombie is gone too.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module", autouse=True)
def warm_zygote():
    info = warmkernel.prewarm()
    assert not info["failed_preloads"], info
    yield info


COMPUTE = (
    "import torch, numpy as np\n"
    "x = torch.arange(10.0).view(1, 1, -1)\n"
    "w = torch.tensor([1.0, 2.0, 1.0]).view(1, 1, -1)\n"
    "print(torch.nn.functional.conv1d(x, w).flatten().tolist())\n"
    "print(np.linalg.matrix_rank(np.eye(4)))",
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
    "raise ValueError('expected')",
    # What a kernel sees of how it was started.
    "import os, sys, matplotlib\n"
    "print(sys.path, os.path.basename(sys.argv[0]), sys.argv[1], __name__)\n"
    "print(os.environ.get('MPLBACKEND'), matplotlib.get_backend(), matplotlib.is_interactive())\n"
    "print('ipykernel_launcher' in sys.modules, 'JPY_PARENT_PID' in os.environ)\n"
    "print(type(get_ipython()).__name__, os.getsid(0) == os.getpid())",
)


def test_same_outputs_as_stock_kernel(tmp_path):
    stock = run(notebook(*COMPUTE), tmp_path, manager=AsyncKernelManager, allow_errors=True)
    warm = run(notebook(*COMPUTE), tmp_path, allow_errors=True)
    for s, w in zip(stock.cells, warm.cells, strict=True):
        assert [o["output_type"] for o in w.outputs] == [o["output_type"] for o in s.outputs]
        assert stdout(w) == stdout(s)
        assert [sorted(o.get("data", {})) for o in w.outputs] == [
            sorted(o.get("data", {})) for o in s.outputs
        ]
    assert "image/png" in warm.cells[1].outputs[0]["data"]  # inline backend hooked into the shell
    assert warm.cells[2].outputs[0]["ename"] == "ValueError"
    assert warm.metadata["language_info"] == stock.metadata["language_info"]


PROBE = (
    "import os, sys, json, random, numpy as np, torch\n"
    "print(json.dumps({'pid': os.getpid(), 'ppid': os.getppid(), 'cwd': os.getcwd(),\n"
    "  'env': os.environ.get('NBGRADER_EXECUTION'), 'x': os.environ.get('X'),\n"
    "  'torch_foo': hasattr(torch, 'foo'), 'secret': 'secret' in globals(),\n"
    "  'minidom': 'xml.dom.minidom' in sys.modules,\n"
    "  'np': np.random.rand(), 'py': random.random(), 'torch': torch.rand(1).item(),\n"
    "  'threads': torch.get_num_threads(), 'pgid': os.getpgid(0), 'sid': os.getsid(0),\n"
    "  'links': sorted({os.readlink('/proc/self/fd/' + f) for f in os.listdir('/proc/self/fd')\n"
    "                   if os.path.exists('/proc/self/fd/' + f)})}))"
)


def test_kernels_are_isolated(tmp_path):
    a = run(
        notebook(
            "import os, torch, xml.dom.minidom\n"
            "torch.foo = 1\nos.environ['X'] = '1'\nsecret = 42\n"
            "torch.set_num_threads(2)",
            PROBE,
        ),
        tmp_path,
    )
    b = run(notebook(PROBE), tmp_path)
    first, second = facts(a.cells[1]), facts(b.cells[0])
    assert (first["torch_foo"], first["x"], first["secret"], first["minidom"]) == (
        True,
        "1",
        True,
        True,
    )
    assert (second["torch_foo"], second["x"], second["secret"], second["minidom"]) == (
        False,
        None,
        False,
        False,
    )
    assert second["threads"] == 1
    assert first["pid"] != second["pid"]
    zygote_pid = zygote().pid
    assert first["ppid"] == second["ppid"] == zygote_pid  # both forked from the clean parent
    # Own session and process group, like a kernel launched by jupyter_client.
    assert second["pgid"] == second["sid"] == second["pid"]
    # Fresh randomness, not a copy of the zygote's generator state.
    assert all(first[k] != second[k] for k in ("np", "py", "torch"))
    # Nothing of the zygote's conversation with the manager is open in the kernel.
    zygote_sockets = {
        link
        for fd in os.listdir(f"/proc/{zygote_pid}/fd")
        if (link := os.readlink(f"/proc/{zygote_pid}/fd/{fd}")).startswith("socket:")
    }
    assert zygote_sockets and not zygote_sockets & set(second["links"])


def test_env_and_cwd_come_from_the_start_request(tmp_path, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    out = facts(run(notebook(PROBE), tmp_path).cells[0])
    assert out["env"] == "autograde"
    assert out["cwd"] == str(tmp_path)
    monkeypatch.delenv("NBGRADER_EXECUTION")
    assert facts(run(notebook(PROBE), tmp_path).cells[0])["env"] is None


def test_dead_kernel_is_detected_and_the_zygote_carries_on(tmp_path):
    with pytest.raises(DeadKernelError):
        run(notebook("import os\nos._exit(1)", "print('never')"), tmp_path)
    out = run(notebook("print('next')"), tmp_path)
    assert stdout(out.cells[0]) == "next\n"
    stats = warmkernel.zygote_stats()
    assert stats["kernels"] == [] and stats["unreaped"] == []
    assert zygote().children() == []


def test_interrupt_on_timeout(tmp_path):
    started = time.monotonic()
    out = run(
        notebook("while True:\n    pass", "print('still alive')"),
        tmp_path,
        timeout=2,
        interrupt_on_timeout=True,
        allow_errors=True,
    )
    assert out.cells[0].outputs[-1]["ename"] == "KeyboardInterrupt"
    assert stdout(out.cells[1]) == "still alive\n"
    assert time.monotonic() - started < 15


def test_restart_gives_a_new_fresh_kernel(tmp_path):
    async def scenario():
        km = WarmKernelManager(kernel_name="python3")
        await km.start_kernel(cwd=str(tmp_path))
        first = km.provisioner.pid
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=30)
        await kc.execute_interactive("x = 1", timeout=30)
        await km.restart_kernel()
        second = km.provisioner.pid
        await kc.wait_for_ready(timeout=30)
        reply = await kc.execute_interactive("x", timeout=30)
        kc.stop_channels()
        await km.shutdown_kernel()
        return first, second, reply["content"]

    first, second, content = asyncio.run(scenario())
    assert first != second
    assert content["status"] == "error" and content["ename"] == "NameError"
    assert wait_gone(first) and wait_gone(second)


def test_kernels_die_with_their_zygote_and_a_new_zygote_takes_over(tmp_path):
    config = Config()
    config.WarmProvisioner.preload = SMALL_PRELOAD

    async def start() -> WarmKernelManager:
        km = WarmKernelManager(kernel_name="python3", config=config)
        await km.start_kernel(cwd=str(tmp_path))
        assert km.provisioner.process is None  # forked, not Popen-ed
        return km

    async def scenario():
        km = await start()
        kernel, zygote_pid = km.provisioner.pid, psutil.Process(km.provisioner.pid).ppid()
        os.kill(zygote_pid, signal.SIGKILL)
        assert wait_gone(kernel)  # PR_SET_PDEATHSIG
        # The leader shows as a zombie while its other threads are still exiting; the pidfd
        # (and so is_alive) reports the exit only once the whole thread group is gone.
        deadline = time.monotonic() + 5
        while await km.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not await km.is_alive()
        await km.cleanup_resources()
        km = await start()
        assert psutil.Process(km.provisioner.pid).ppid() not in (zygote_pid, os.getpid())
        await km.shutdown_kernel(now=True)
        return zygote_pid

    assert wait_gone(asyncio.run(scenario()))


def test_no_leftover_processes(tmp_path):
    config = Config()
    config.WarmProvisioner.preload = SMALL_PRELOAD
    out = run(
        notebook(
            "import os, subprocess, json\n"
            "child = subprocess.Popen(['sleep', '300'])\n"
            "print(json.dumps({'kernel': os.getpid(), 'zygote': os.getppid(), 'child': child.pid}))"
        ),
        tmp_path,
        config=config,
    )
    pids = facts(out.cells[0])
    # The kernel is reaped and what it spawned died with its process group.
    assert wait_gone(pids["kernel"]) and wait_gone(pids["child"])
    assert psutil.Process(pids["zygote"]).children() == []
    warmkernel.shutdown_zygotes(SMALL_PRELOAD)
    assert wait_gone(pids["zygote"])


def test_fallback_to_a_normal_kernel_when_the_zygote_is_unsafe(tmp_path, monkeypatch, caplog):
    # A preload that starts a thread: forking that zygote would be unsafe, so it must refuse.
    (tmp_path / "starts_a_thread.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    config = Config()
    config.WarmProvisioner.preload = ["starts_a_thread", *SMALL_PRELOAD]
    caplog.set_level(logging.WARNING)
    out = run(notebook("import os\nprint(os.getppid())"), tmp_path, config=config)
    assert int(stdout(out.cells[0])) == os.getpid()  # a stock kernel: our own child
    assert any("has threads" in r.getMessage() for r in caplog.records)
    assert tuple(config.WarmProvisioner.preload) in warmkernel._disabled


def test_config_reaches_the_manager_through_an_execute_subclass():
    from nbgrader.preprocessors import Execute

    class ConfiguredExecute(Execute):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            cls = warmkernel.configured_kernel_manager_class(self)
            if cls is not None:
                self.kernel_manager_class = cls

    config = Config()
    config.Execute.kernel_manager_class = "toeplitz_course.grader.warmkernel.WarmKernelManager"
    # nbgrader's Execute passes kernel_manager_class as a keyword, which beats config...
    assert Execute(config=config).kernel_manager_class is AsyncKernelManager
    # ...so the course's subclass has to re-apply it.
    assert ConfiguredExecute(config=config).kernel_manager_class is WarmKernelManager
    assert ConfiguredExecute(config=Config()).kernel_manager_class is AsyncKernelManager


def test_warming_the_kernel_app_leaves_no_state_behind():
    # Run where nothing else has touched ipykernel's app: a fresh interpreter, as the zygote is.
    probe = """
import json, logging, os, sys, threading
from ipykernel.kernelapp import IPKernelApp
from toeplitz_course.grader.warmkernel import _warm_kernel_app

def state():
    log = logging.getLogger("IPKernelApp")
    return [sorted(os.listdir("/proc/self/fd")), threading.active_count(), list(sys.path),
            dict(os.environ), [repr(h) for h in log.handlers], log.level, log.propagate]

before = state()
_warm_kernel_app()
print(json.dumps({"same": state() == before, "singleton": IPKernelApp.initialized()}))
"""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"same": True, "singleton": False}


# A process like a grading worker forked from the preload server: it has imported the preloads
# under the zygote's import environment and holds a descriptor that must not reach any kernel.
FORKED_ZYGOTE = """
import json, os, sys, threading, time
for name, value in {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}.items():
    os.environ[name] = value
import numpy, ipykernel.kernelapp, ipykernel.ipkernel
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook
from toeplitz_course.grader import warmkernel

PRELOAD = ["numpy", "ipykernel.kernelapp", "ipykernel.ipkernel"]
secret_r, secret_w = os.pipe()
secret = os.readlink(f"/proc/self/fd/{secret_w}")
if sys.argv[1] == "threaded":
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
info = warmkernel.prewarm(PRELOAD, fork=True)
zygote = warmkernel._zygotes[tuple(PRELOAD)]
fd_dir = f"/proc/{zygote.pid}/fd"
zygote_fds = [os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)]
cell = '''import os
links = []
for fd in os.listdir("/proc/self/fd"):
    try:
        links.append(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:  # the listing's own descriptor
        pass
print(links)
'''
spec = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb = new_notebook(cells=[new_code_cell(cell)], metadata={"kernelspec": spec})
from traitlets.config import Config
config = Config({"WarmProvisioner": {"preload": PRELOAD}, "Sandbox": {"enabled": False}})
manager = warmkernel.WarmKernelManager
NotebookClient(nb, kernel_manager_class=manager, config=config, timeout=60).execute()
kernel_fds = nb.cells[0].outputs[0]["text"]
pid = zygote.pid
warmkernel.shutdown_zygotes()
print(json.dumps({
    "kind": type(zygote.proc).__name__,
    "import_seconds": info["import_seconds"],
    "secret_in_zygote": secret in zygote_fds,
    "secret_in_kernel": secret in kernel_fds,
    "reaped": not os.path.exists(f"/proc/{pid}"),
    "threads": threading.active_count(),
}))
"""


@pytest.mark.parametrize("worker", ["single", "threaded"])
def test_a_zygote_forked_from_a_worker_holds_none_of_its_descriptors(worker):
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", FORKED_ZYGOTE, worker],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["secret_in_zygote"] is False and result["secret_in_kernel"] is False
    assert result["reaped"] is True
    # A worker with a thread must not fork: its zygote is a new interpreter instead.
    assert result["kind"] == ("_ForkedZygote" if worker == "single" else "Popen")


class _Channel:
    """A client channel that hands out scripted messages; ``None`` in the script is a timeout."""

    def __init__(self, script):
        self.script = script
        self.reads = 0

    async def get_msg(self, timeout=None):
        from queue import Empty

        self.reads += 1
        msg = next(self.script)
        if msg is None:
            raise Empty
        return msg


def _status(state: str, parent: str | None) -> dict:
    return {
        "msg_type": "status",
        "content": {"execution_state": state},
        "parent_header": {"msg_id": parent} if parent else {},
    }


def _scripted_client(iopub_for):
    """A ``WarmKernelClient`` of a manager whose kernel answers every kernel_info on shell at
    once and whose IOPub, for the n-th request, plays ``iopub_for(n, msg_id)``."""
    import itertools

    kc = warmkernel.WarmKernelClient(parent=WarmKernelManager())
    sent: list[str] = []

    def kernel_info():
        sent.append(f"req-{len(sent)}")
        return sent[-1]

    def shell():
        while True:
            yield {
                "msg_type": "kernel_info_reply",
                "parent_header": {"msg_id": sent[-1]},
                "content": {"status": "ok", "protocol_version": "5.3"},
            }

    def iopub():
        for n in itertools.count():
            yield from iopub_for(n, sent[-1])

    async def alive():
        return True

    kc.kernel_info = kernel_info
    kc._shell_channel = _Channel(shell())
    kc._iopub_channel = _Channel(iopub())
    kc._async_is_alive = alive
    return kc, sent


def test_a_warm_client_is_ready_once_iopub_closes_the_answered_request():
    """jupyter_client waits for IOPub to be silent for 0.2 s after the reply: on a kernel that
    keeps publishing it never returns. Ours returns with the idle status of the request."""
    import itertools

    def iopub_for(n, msg_id):
        yield _status("busy", msg_id)
        yield _status("idle", msg_id)
        # Then, never silent: a kernel still publishing (another client's request, say).
        yield from (_status("busy", "someone-else") for _ in itertools.count())

    kc, sent = _scripted_client(iopub_for)
    asyncio.run(asyncio.wait_for(kc.wait_for_ready(timeout=5), 2))
    assert sent == ["req-0"]
    assert kc._iopub_channel.reads == 2  # busy, idle: nothing read after the idle


def test_a_warm_client_asks_again_when_iopub_missed_the_idle():
    """A subscription made after the idle was published (ZeroMQ's slow joiner) shows as IOPub
    silence: then the client asks again, as jupyter_client does, and never takes an earlier
    request's or another request's idle for it."""

    def iopub_for(n, msg_id):
        if n == 0:
            yield _status("idle", "someone-else")
            yield None  # silence: the request's own idle was missed
        else:
            yield _status("idle", "req-0")  # the first request's, late
            yield _status("busy", msg_id)
            yield _status("idle", msg_id)

    kc, sent = _scripted_client(iopub_for)
    asyncio.run(asyncio.wait_for(kc.wait_for_ready(timeout=5), 2))
    assert sent == ["req-0", "req-1"]
    assert kc._iopub_channel.reads == 5


def test_warm_kernels_use_the_warm_client_and_lose_no_output_of_their_first_cell(tmp_path):
    """Ready without IOPub's silence, the first cell's every output still arrives."""
    config = Config()
    config.WarmProvisioner.preload = SMALL_PRELOAD
    for _ in range(5):
        client = NotebookClient(
            notebook("print('first'); import sys; sys.stderr.write('err'); 6 * 7"),
            kernel_manager_class=WarmKernelManager,
            resources={"metadata": {"path": str(tmp_path)}},
            config=config,
        )
        nb = client.execute()
        assert type(client.kc) is warmkernel.WarmKernelClient or client.kc is None
        outputs = nb.cells[0].outputs
        assert [o.get("name") or o.output_type for o in outputs] == [
            "stdout",
            "stderr",
            "execute_result",
        ], outputs
