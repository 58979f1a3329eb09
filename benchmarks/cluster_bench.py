"""Local grading against a two-worker Dask cluster on this machine, same class, same scores.

    .venv/bin/python benchmarks/cluster_bench.py [--students 20]

One scratch class (the bench's mix of correct, mistaken and blank hand-ins) in two copies: one
graded by ``grade --jobs 2``, the other by ``grade --scheduler`` on a ``dask scheduler`` and two
``dask worker --nthreads 1`` processes started here on 127.0.0.1, so both use the same two
cores. Prints wall and machine time of each (machine time of the cluster run: the grading
command, the scheduler and the workers with everything they started), the overhead the cluster
adds per task, and checks that the gradebooks agree.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.course.contract import NOTEBOOKS  # noqa: E402
from toeplitz_course.instructor import bench  # noqa: E402

DASK = Path(sys.executable).with_name("dask")


def tree_cpu(procs: list[psutil.Process]) -> float:
    """CPU seconds of running processes and their live descendants."""
    total = 0.0
    for proc in procs:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
    return total


def start_cluster(base: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    info = base / "scheduler.json"
    procs = [
        subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(info)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    while not info.exists():
        time.sleep(0.1)
    address = json.loads(info.read_text())["address"]
    for i in range(workers):
        scratch = base / f"worker{i}"
        scratch.mkdir()
        procs.append(
            subprocess.Popen(
                [str(DASK), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
                + ["--local-directory", str(scratch)],
                cwd=scratch,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    from distributed import Client

    with Client(address) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=20)
    args = parser.parse_args(argv)
    bench_root = Path(__file__).resolve().parent.parent
    mix = bench.class_mix(args.students)
    notebooks = len(mix) * len(NOTEBOOKS)
    with tempfile.TemporaryDirectory(prefix="toeplitz-cluster-bench-") as tmp:
        template = bench.scratch_course(bench_root, Path(tmp) / "template")
        bench.write_class(template, mix)
        courses = {}
        for name in ("local", "cluster"):
            courses[name] = Path(tmp) / name
            subprocess.run(["cp", "-a", str(template), str(courses[name])], check=True)
            bench.pin(courses[name])
        grade = [sys.executable, "-m", "toeplitz_course", "grade", "--quiet"]

        local, problem = bench._timed("grade --jobs 2", grade + ["--jobs", "2"], courses["local"],
                                      "grade.log")  # fmt: skip
        assert problem is None, problem

        address, procs = start_cluster(Path(tmp), workers=2)
        try:
            handles = [psutil.Process(p.pid) for p in procs]
            # Workers are not our children: their CPU is read from /proc before they stop.
            before_cluster = tree_cpu(handles)
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            before_children = usage.ru_utime + usage.ru_stime
            start = time.perf_counter()
            done = subprocess.run(grade + ["--scheduler", address], cwd=courses["cluster"])
            wall = time.perf_counter() - start
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            command_cpu = usage.ru_utime + usage.ru_stime - before_children
            cluster_cpu = tree_cpu(handles) - before_cluster
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        assert done.returncode == 0
        same = bench.gradebook_scores(courses["local"]) == bench.gradebook_scores(
            courses["cluster"]
        )
    cpu = command_cpu + cluster_cpu
    print(f"{len(mix)} students, {notebooks} notebooks, 2 cores")
    print(local.format())
    print(
        f"{'grade --scheduler (2 workers)':<26} {wall:7.1f} s wall  {notebooks / wall:5.2f} "
        f"notebooks/s  {cpu / notebooks:5.2f} s machine time per notebook "
        f"(command {command_cpu:.1f} s, scheduler and workers {cluster_cpu:.1f} s)"
    )
    per_task_wall = (wall - local.wall) / (len(mix) / 2)
    per_task_cpu = (cpu - local.cpu) / len(mix)
    print(
        f"the cluster adds {per_task_cpu * 1000:+.0f} ms of machine time per task (student) and "
        f"{per_task_wall * 1000:+.0f} ms of wall time per task on each worker; "
        f"wall ratio {wall / local.wall:.2f}"
    )
    print("gradebooks agree" if same else "GRADEBOOKS DISAGREE")


if __name__ == "__main__":
    main()
