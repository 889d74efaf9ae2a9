"""Where DFT calculations run: worker processes on this machine (``local``) or SLURM jobs (``slurm``).

Both start ``python -m tasks.dft.worker CALC_DIR`` and answer the same question, ``state(job_id)``; the
result is always read from ``CALC_DIR/result.json``, so a campaign that restarts can re-attach to a job it
submitted before and collect its result. Every command is an argument list; nothing goes through a shell.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

from conf.dft import DFTConfig, SlurmSettings
from tasks.dft.worker import command
from tasks.errors import MatloopError

BACKENDS = ("local", "slurm")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class DFTBackendError(MatloopError):
    """The scheduler refused a job or cannot be reached (sbatch/squeue failed)."""


class JobState(NamedTuple):
    state: Literal["pending", "running", "finished", "gone", "unknown"]
    detail: str = ""  # e.g. the scheduler's final state (CANCELLED, TIMEOUT) or an exit code


class Backend(Protocol):
    def submit(self, calc_dir: Path, env: dict[str, str], name: str) -> str: ...
    def state(self, job_id: str) -> JobState: ...
    def cancel(self, job_id: str) -> None: ...
    def find(self, calc_dir: Path) -> str | None:
        """The job already submitted for ``calc_dir`` (its submitter died before recording the id), if any."""
        ...


class LocalBackend:
    """One worker process per calculation; the job id is ``<host>:<pid>``. Workers run in their own session,
    so they outlive a killed campaign process, which re-attaches to them by pid when it resumes.

    With ``prefork`` (default) workers are forked from a server that has already imported the DFT stack
    (:mod:`tasks.dft.prefork`); otherwise each is a fresh ``python -m tasks.dft.worker`` process.
    """

    _procs: dict[str, tuple[subprocess.Popen, float]] = {}
    _forked: dict[str, tuple[Path, float]] = {}
    _lock = threading.Lock()

    def __init__(self, timeout_s: float = 3600.0, prefork: bool = True) -> None:
        self.timeout_s = timeout_s
        self.prefork = prefork

    def find(self, calc_dir: Path) -> str | None:
        """A live worker process of this user working in ``calc_dir`` (its current folder is ``calc_dir`` or below
        it: a forked worker changes into it, a spawned one starts there), as ``<host>:<pid>``."""
        target = Path(calc_dir).resolve()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if proc.stat().st_uid != os.getuid() or b"tasks.dft.worker" not in (proc / "cmdline").read_bytes():
                    continue
                cwd = (proc / "cwd").resolve()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if cwd == target or target in cwd.parents:
                return f"{socket.gethostname()}:{proc.name}"
        return None

    def submit(self, calc_dir: Path, env: dict[str, str], name: str) -> str:
        if self.prefork:
            pid = self._fork(calc_dir, env)
            job = f"{socket.gethostname()}:{pid}"
            with self._lock:
                self._forked[job] = (calc_dir, time.monotonic())
            return job
        with open(calc_dir / "worker.log", "w") as log:
            proc = subprocess.Popen(command(calc_dir), env={**os.environ, **env}, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd=calc_dir)
        job = f"{socket.gethostname()}:{proc.pid}"
        with self._lock:
            self._procs[job] = (proc, time.monotonic())
        return job

    def _fork(self, calc_dir: Path, env: dict[str, str]) -> int:
        from tasks.dft import prefork

        (calc_dir / prefork.EXIT_FILE).unlink(missing_ok=True)  # from an earlier attempt in this folder
        path = prefork.socket_path(env)
        try:
            return prefork.request(path, calc_dir)
        except OSError:
            with self._lock:  # one thread of this process starts the server; a stale socket is replaced
                try:
                    return prefork.request(path, calc_dir)
                except OSError:
                    path.unlink(missing_ok=True)
                    try:
                        prefork.start_server(path, env, PROJECT_ROOT)
                    except OSError as exc:
                        raise DFTBackendError(str(exc)) from exc
            return prefork.request(path, calc_dir)

    def _forked_state(self, job_id: str, calc_dir: Path, started: float) -> JobState:
        from tasks.dft.prefork import EXIT_FILE

        exit_file = calc_dir / EXIT_FILE
        if exit_file.is_file():
            return JobState("finished", f"worker exit code {exit_file.read_text().strip()}")
        if time.monotonic() - started > self.timeout_s:
            self.cancel(job_id)
            return JobState("finished", f"timed out after {self.timeout_s:.0f} s (dft.local_timeout_s)")
        if Path(f"/proc/{job_id.rpartition(':')[2]}").exists():
            return JobState("running")
        time.sleep(1.0)  # the server writes the exit code once it has reaped the child
        return (JobState("finished", f"worker exit code {exit_file.read_text().strip()}") if exit_file.is_file()
                else JobState("gone"))

    def state(self, job_id: str) -> JobState:
        host, _, pid = job_id.rpartition(":")
        if host != socket.gethostname():
            raise DFTBackendError(f"local calculation {job_id} runs on {host}; resume the campaign there")
        with self._lock:
            entry = self._procs.get(job_id)
            forked = self._forked.get(job_id)
        if forked is not None:
            return self._forked_state(job_id, *forked)
        if entry is not None:
            proc, started = entry
            code = proc.poll()
            if code is None and time.monotonic() - started > self.timeout_s:
                self.cancel(job_id)
                proc.wait()
                return JobState("finished", f"timed out after {self.timeout_s:.0f} s (dft.local_timeout_s)")
            return JobState("running") if code is None else JobState("finished", f"worker exit code {code}")
        try:  # a worker started by an earlier campaign process
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return JobState("gone")
        return JobState("running") if b"tasks.dft.worker" in cmdline else JobState("gone")

    def cancel(self, job_id: str) -> None:
        pid = int(job_id.rpartition(":")[2])
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


_SQUEUE_ACTIVE = {"PENDING": "pending", "CONFIGURING": "pending", "REQUEUED": "pending", "RESV_DEL_HOLD": "pending",
                  "REQUEUE_HOLD": "pending", "SUSPENDED": "pending", "RUNNING": "running", "COMPLETING": "running",
                  "STAGE_OUT": "running", "SIGNALING": "running", "RESIZING": "running"}


class SlurmBackend:
    """One SLURM job per calculation (``sbatch``); state from ``squeue``, then ``scontrol show job`` (accounting
    may be absent), and a job neither knows any more is gone."""

    def __init__(self, cfg: SlurmSettings) -> None:
        self.cfg = cfg

    def sbatch_args(self, calc_dir: Path, name: str) -> list[str]:
        c = self.cfg
        args = ["sbatch", "--parsable", f"--job-name={_job_name(name)}", f"--chdir={calc_dir}",
                f"--output={calc_dir / 'slurm-%j.out'}", f"--time={c.walltime}", "--ntasks=1",
                f"--cpus-per-task={c.cores}", f"--mem={c.memory}"]
        args += [f"--partition={c.partition}"] * bool(c.partition) + [f"--account={c.account}"] * bool(c.account)
        return args + list(c.extra_directives) + [str(calc_dir / "job.sh")]

    def job_script(self, calc_dir: Path, env: dict[str, str]) -> str:
        python = self.cfg.python or sys.executable
        lines = ["#!/bin/bash", "set -e"] + [f"module load {shlex.quote(m)}" for m in self.cfg.modules]
        env = {**env, "PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)}
        lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
        lines.append("exec " + shlex.join([python, "-m", "tasks.dft.worker", str(calc_dir)]))
        return "\n".join(lines) + "\n"

    def submit(self, calc_dir: Path, env: dict[str, str], name: str) -> str:
        (calc_dir / "job.sh").write_text(self.job_script(calc_dir, env))
        proc = _run(self.sbatch_args(calc_dir, name))
        if proc.returncode != 0:
            raise DFTBackendError(f"sbatch refused the job for {calc_dir}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout.strip().split(";")[0]

    def find(self, calc_dir: Path) -> str | None:
        """This user's queued or running job whose working directory is ``calc_dir``, else the job that wrote a
        ``slurm-<id>.out`` there (it ran and has left the queue)."""
        proc = _run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%Z"])
        if proc.returncode != 0:
            raise DFTBackendError(f"squeue cannot list the jobs of {getpass.getuser()}: {proc.stderr.strip()}")
        for line in proc.stdout.splitlines():
            job_id, _, work_dir = line.partition("|")
            if work_dir.strip() and Path(work_dir.strip()) == Path(calc_dir):
                return job_id.strip()
        logs = sorted(Path(calc_dir).glob("slurm-*.out"), key=lambda p: p.stat().st_mtime)
        return logs[-1].stem.removeprefix("slurm-") if logs else None

    def state(self, job_id: str) -> JobState:
        proc = _run(["squeue", "-h", "-j", job_id, "-o", "%T"])
        if proc.returncode == 0 and proc.stdout.strip():
            slurm_state = proc.stdout.split()[0]
            return JobState(_SQUEUE_ACTIVE.get(slurm_state, "finished"), slurm_state)  # type: ignore[arg-type]
        if proc.returncode != 0 and "invalid job id" not in proc.stderr.lower():
            return JobState("unknown", proc.stderr.strip())  # the controller may be restarting: ask again later
        show = _run(["scontrol", "show", "job", job_id])
        match = re.search(r"JobState=(\w+)", show.stdout)
        if show.returncode == 0 and match:
            return JobState(_SQUEUE_ACTIVE.get(match.group(1), "finished"), match.group(1))  # type: ignore[arg-type]
        if show.returncode != 0 and "invalid job id" not in show.stderr.lower():
            return JobState("unknown", show.stderr.strip())
        return JobState("gone")

    def cancel(self, job_id: str) -> None:
        _run(["scancel", job_id])


def backend_for(name: str, cfg: DFTConfig) -> Backend:
    if name == "local":
        return LocalBackend(cfg.local_timeout_s, cfg.local_prefork)
    if name == "slurm":
        return SlurmBackend(cfg.slurm)
    raise DFTBackendError(f"unknown DFT backend {name!r}; allowed: {', '.join(BACKENDS)}")


def _job_name(label: str) -> str:
    return "matloop-" + re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:40]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise DFTBackendError(f"{args[0]} not found: is SLURM installed on this host? ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(args, 1, "", f"{args[0]} timed out: {exc}")
