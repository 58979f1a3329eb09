"""Local grading against a two-worker Dask cluster on this machine, same class, same scores;
then how fast the instructor's process writes results, into SQLite and into PostgreSQL.

    .venv/bin/python benchmarks/cluster_bench.py [--students 20] [--written 300] [--no-postgres]

One scratch class (the bench's mix of correct, mistaken and blank hand-ins) in two copies: one
graded by ``grade --jobs 2``, the other by ``grade --scheduler`` on a ``dask scheduler`` and two
``dask worker --nthreads 1 --preload toeplitz_course.grader.cluster`` processes started here on
127.0.0.1, so both use the same two cores. Prints wall and machine time of each (machine time of
the cluster run: the grading command, the scheduler and the workers with everything they
started; the workers' start, their warm parents included, is measured apart, as a cluster's
workers outlive a batch), the overhead the cluster adds per task, and checks that the
gradebooks agree.

The writing: two workers grade at most a student a second here, so the rate at which the one
instructor's process can write is measured apart, as the ceiling it puts on any number of
workers: real worker results (one student of each kind, graded on the cluster) written under
``--written`` new student names into a fresh gradebook by ``cluster.write_results``, one student
per transaction and ``cluster.BATCH`` per transaction, into the course's SQLite file and into a
throwaway PostgreSQL server (``tests/test_postgres.py``'s, on a Unix socket, fsync off).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.course.contract import NOTEBOOKS  # noqa: E402
from toeplitz_course.grader import cluster  # noqa: E402
from toeplitz_course.instructor import bench  # noqa: E402

TESTS = Path(__file__).resolve().parent.parent / "tests"
IDLE = 10.0  # seconds the idle cluster is measured

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
                + ["--local-directory", str(scratch)]
                + ["--preload", "toeplitz_course.grader.cluster"],
                cwd=scratch,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    from distributed import Client

    with Client(address) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def sample_results(address: str, course: Path, mix: dict[str, str]) -> list[dict]:
    """Worker results of one student of each kind, graded on the cluster as ``grade`` does."""
    from distributed import Client

    one_each = {kind: student for student, kind in reversed(mix.items())}
    with Client(address, timeout="30s") as client:
        [shared] = client.scatter([cluster.bundle(course, True)], broadcast=True)
        futures = [
            client.submit(cluster.grade_task, s, cluster.hand_in(course, s), shared, pure=False)
            for s in one_each.values()
        ]
        return client.gather(futures)


def write_rate(
    template: Path, results: list[dict], students: int, batch: int, url: str | None = None,
    server: psutil.Process | None = None,
) -> tuple[float, float, float]:  # fmt: skip
    """Students per second ``cluster.write_results`` writes into a fresh copy of ``template``
    (into ``url`` when given), ``batch`` students a transaction; and the writing process's and
    the database server's CPU per student (ms)."""
    from toeplitz_course.grader.assignment import ensure_assignment
    from toeplitz_course.grader.gradebook import engines_shared, prepare

    course = template.parent / f"write-{batch}-{'pg' if url else 'sqlite'}"
    subprocess.run(["cp", "-a", str(template), str(course)], check=True)
    bench.pin(course)
    if url:
        with open(course / "nbgrader_config.py", "a") as f:
            f.write(f"c.CourseDirectory.db_url = {url!r}\n")
    ensure_assignment(course)
    prepare(course)
    items = []
    for i in range(students):
        result = copy.deepcopy(results[i % len(results)])
        result["record"]["student"] = f"w{i:05d}"
        items.append((f"w{i:05d}", result))
    with engines_shared():
        server_before = tree_cpu([server]) if server else 0.0
        cpu, start = time.process_time(), time.perf_counter()
        for i in range(0, len(items), batch):
            cluster.write_results(course, items[i : i + batch])
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        server_cpu = tree_cpu([server]) - server_before if server else 0.0
    return students / wall, cpu / students * 1000, server_cpu / students * 1000


def postgres_server(base: Path):
    """tests/test_postgres.py's throwaway server, or None (and why) without the binaries."""
    sys.path.insert(0, str(TESTS))
    try:
        import psycopg  # noqa: F401
        from test_postgres import Server, server_binaries
    except ImportError as exc:
        return None, str(exc)
    bindir = server_binaries()
    if bindir is None:
        return None, "no PostgreSQL server binaries"
    server = Server(bindir)
    server.start()
    return server, ""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--written", type=int, default=300)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    bench_root = Path(__file__).resolve().parent.parent
    mix = bench.class_mix(args.students)
    notebooks = len(mix) * len(NOTEBOOKS)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
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
            started = tree_cpu(handles)  # their start: imports, warm parents
            # What the scheduler and workers cost doing nothing (event loops, heartbeats,
            # monitors), per second: a cost of wall time, not of tasks.
            time.sleep(IDLE)
            before_cluster = tree_cpu(handles)
            idle = (before_cluster - started) / IDLE
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            before_children = usage.ru_utime + usage.ru_stime
            start = time.perf_counter()
            done = subprocess.run(grade + ["--scheduler", address], cwd=courses["cluster"])
            wall = time.perf_counter() - start
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            command_cpu = usage.ru_utime + usage.ru_stime - before_children
            cluster_cpu = tree_cpu(handles) - before_cluster
            results = sample_results(address, template, mix)
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
        load_after_grading = os.getloadavg()
        cpu = command_cpu + cluster_cpu
        print(f"{len(mix)} students, {notebooks} notebooks, 2 cores")
        print(local.format())
        print(
            f"{'grade --scheduler (2 workers)':<26} {wall:7.1f} s wall  {notebooks / wall:5.2f} "
            f"notebooks/s  {cpu / notebooks:5.2f} s machine time per notebook "
            f"(command {command_cpu:.1f} s, scheduler and workers {cluster_cpu:.1f} s; "
            f"the workers' start before the batch {started:.1f} s)"
        )
        per_task_wall = (wall - local.wall) / (len(mix) / 2)
        per_task_cpu = (cpu - local.cpu) / len(mix)
        print(
            f"the cluster adds {per_task_cpu * 1000:+.0f} ms of machine time per task (student) "
            f"({(cpu + started - local.cpu) / len(mix) * 1000:+.0f} ms with the workers' "
            f"start counted in this one batch) and {per_task_wall * 1000:+.0f} ms of wall time "
            f"per task on each worker; wall ratio {wall / local.wall:.2f}"
        )
        print(
            f"of which the scheduler and workers idling: {idle * 100:.1f}% of a core together "
            f"(measured over {IDLE:.0f} s before the batch), {idle * wall / len(mix) * 1000:.0f} "
            f"ms per task at this run's {wall:.0f} s"
        )
        print("gradebooks agree" if same else "GRADEBOOKS DISAGREE")
        print(f"load average after grading: {' '.join(f'{x:.2f}' for x in load_after_grading)}")

        n = args.written
        print(f"writing {n} students' results (the instructor's process):")
        rates = {}
        for batch in (1, cluster.BATCH):
            rate, ms, _ = write_rate(template, results, n, batch)
            rates[("SQLite", batch)] = rate
            print(f"  SQLite      {batch:3d} a transaction: {rate:6.1f} students/s "
                  f"({ms:5.1f} ms of its CPU each)")  # fmt: skip
        server, why = (None, "--no-postgres") if args.no_postgres else postgres_server(Path(tmp))
        if server is None:
            print(f"  PostgreSQL  not measured: {why}")
        else:
            try:
                pid = int((server.data / "postmaster.pid").read_text().split()[0])
                postmaster = psutil.Process(pid)
                for batch in (1, cluster.BATCH):
                    rate, ms, server_ms = write_rate(
                        template, results, n, batch, server.url(), postmaster
                    )
                    rates[("PostgreSQL", batch)] = rate
                    print(
                        f"  PostgreSQL  {batch:3d} a transaction: {rate:6.1f} students/s "
                        f"({ms:5.1f} ms of its CPU each, the server {server_ms:5.1f} ms)"
                    )
            finally:
                server.stop()
        worker_s = (local.cpu / len(mix)) + max(per_task_cpu, 0)
        for (db, batch), rate in rates.items():
            if batch == cluster.BATCH:
                print(
                    f"ceiling ({db}): {rate:.0f} students/s, {rate * len(NOTEBOOKS):.0f} "
                    f"notebooks/s, whatever the number of workers; a worker grades a student in "
                    f"{worker_s:.1f} s of machine time, so the writer keeps up with about "
                    f"{rate * worker_s:.0f} single-core workers"
                )
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
