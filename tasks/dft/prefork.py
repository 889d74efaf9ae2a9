"""A pre-forking DFT worker for the local backend: one server process per DFT environment imports
pymatgen / atomate2 / jobflow / custodian once (about 4 s) and forks a fresh child per calculation, so each
calculation pays a fork instead of those imports.

The server is ``python -m tasks.dft.worker --serve SOCKET`` (started with the DFT environment, so pymatgen's
CP2K data folder is set before its first import) and listens on a Unix socket: a client sends a calculation
folder and receives the child's pid. Children start their own session (they outlive the campaign process,
exactly like stand-alone workers; their command line still names ``tasks.dft.worker``, which is how a
resumed campaign recognises them), write ``worker.log``, and the server records each exit code in the
folder's ``worker.exit``. The server exits after ``idle_s`` seconds without a request and a running child.
The socket lives in a folder only its user can enter (:func:`private_dir`) and the server refuses a peer of
another user (SO_PEERCRED), because a request names a ``calc.json`` whose command the child runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXIT_FILE = "worker.exit"


def private_dir() -> Path:
    """``<tmp>/matloop-dft-<uid>``: mode 0700, owned by this user, not a link (created if missing). Anyone who can
    reach the socket can make the server run a calculation folder's ``calc.json`` (its command included), so
    only its owner may reach it."""
    path = Path(tempfile.gettempdir()) / f"matloop-dft-{os.getuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) != 0o700:
        raise PermissionError(f"{path} must be a folder of user {os.getuid()} with mode 0700 (found mode "
                              f"{stat.S_IMODE(st.st_mode):o}, owner {st.st_uid}); remove it and retry")
    return path


def socket_path(env: dict[str, str]) -> Path:
    """Socket of the server for this DFT environment (one per user, environment and interpreter), in
    :func:`private_dir`."""
    key = hashlib.sha256(json.dumps([sorted(env.items()), sys.executable], sort_keys=True).encode()).hexdigest()
    return private_dir() / f"{key[:12]}.sock"


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (SO_PEERCRED: pid, uid, gid)."""
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


def request(path: Path, calc_dir: Path, timeout_s: float = 10.0) -> int:
    """Ask the server at ``path`` to start ``calc_dir``; the child's pid. OSError when no server answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(str(path))
        conn.sendall(str(calc_dir).encode() + b"\n")
        reply = conn.makefile("rb").readline().decode().strip()
    if not reply.isdigit():
        raise OSError(f"DFT worker server at {path} answered {reply!r}")
    return int(reply)


def start_server(path: Path, env: dict[str, str], cwd: Path, wait_s: float = 120.0) -> None:
    """Start a server (its own session) and wait until it accepts requests."""
    log = open(path.with_suffix(".log"), "ab")
    subprocess.Popen([sys.executable, "-m", "tasks.dft.worker", "--serve", str(path)], env={**os.environ, **env},
                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                     cwd=cwd)
    log.close()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(path))
                probe.sendall(b"\n")  # an empty request: "are you there"
            return
        except OSError:
            time.sleep(0.1)
    raise OSError(f"the DFT worker server did not come up at {path} within {wait_s:.0f} s")


def _child(calc_dir: Path) -> None:
    """In the forked child: new session, output to worker.log, run the calculation, exit without cleanup."""
    code = 1
    try:
        os.setsid()
        fd = os.open(calc_dir / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(calc_dir)
        from tasks.dft.folder_run import run_folder

        code = run_folder(calc_dir)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(path: Path, idle_s: float = 600.0) -> int:
    """Accept requests on ``path`` until idle; fork one child per calculation folder."""
    import atomate2.cp2k.jobs.core  # noqa: F401  (the imports every child would otherwise repeat)
    import custodian  # noqa: F401
    import jobflow  # noqa: F401

    import tasks.dft.run  # noqa: F401

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)  # the socket file: owner read/write only (its folder is 0700 as well)
    try:
        server.bind(str(path))
    except OSError:  # another server won the race for this socket
        return 0
    finally:
        os.umask(umask)
    server.listen(16)
    server.settimeout(0.5)
    children: dict[int, Path] = {}
    last = time.monotonic()
    try:
        while children or time.monotonic() - last < idle_s:
            _reap(children)
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                line = conn.makefile("rb").readline().decode().strip()
                if peer_uid(conn) != os.getuid():  # only the server's own user may start calculations
                    conn.sendall(b"refused: not the server's user\n")
                    continue
                if not line:
                    continue
                calc_dir = Path(line)
                pid = os.fork()
                if pid == 0:
                    server.close()
                    conn.close()
                    _child(calc_dir)
                children[pid] = calc_dir
                conn.sendall(f"{pid}\n".encode())
            last = time.monotonic()
    finally:
        server.close()
        path.unlink(missing_ok=True)
    return 0


def _reap(children: dict[int, Path]) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            (children.pop(pid) / EXIT_FILE).write_text(str(code))
