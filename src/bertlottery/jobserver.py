"""A fork server for a workflow's jobs: import torch and transformers once, start each job as a fork.

Every model job of a run is a new `python -m bertlottery <command>` process, and about 4 of the 5
CPU-seconds its start costs are imports (torch, transformers and the BERT module). With this server a
job's process is a thin client instead: it sends its argv, working directory, environment, umask and
standard streams (the descriptors themselves, over a Unix socket) to the server, which forks a child
that already has the imports, runs the command there with the job's streams, and sends back its exit
status. To Snakemake nothing changes: each job is still its own shell command with its own log, outputs
and exit status, and is resumable as before.

* The server runs no torch operation before it forks (no OpenMP pool, no CUDA context to inherit); a
  child sets its threads from the job's environment (cli.main) as a fresh process does.
* A client that goes away (Snakemake cancels the job, Ctrl-C, a kill) makes the server kill its child's
  process group; the server itself exits when the process that started it (Snakemake) is gone.
* A client that cannot reach the server runs the command in its own process, as without a server.

The workflow starts one for a local run with config `job_server: true` (common.smk's onstart;
BERTLOTTERY_JOB_SERVER=0 or =1 overrides the config); cluster jobs run on other machines and start as
before. Snakemake's benchmark file of a job then times the job's client, not the fork that did the work:
the fork's CPU time and peak memory end its log, and the server's log lists each fork's CPU time. So the
study configs leave it off (their benchmark files are their compute record).
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ENV = "BERTLOTTERY_JOB_SERVER"  # the server's socket path, for the jobs; "0" or unset: no server
_HEADER = struct.Struct("!I")   # the length of the request's JSON
_STATUS = struct.Struct("!i")   # the exit status sent back
_FORKED = False                 # True in a job the server forked: it runs its command itself


def server_path() -> str | None:
    """The socket a job should send its command to, or None (no server set, or this is a server's job)."""
    path = os.environ.get(ENV, "")
    return None if _FORKED or path in ("", "0") else path


# -- the client: a job's own process -----------------------------------------------------------------

def forward(path: str, argv: list[str]) -> int | None:
    """Run `argv` (sys.argv form) in the server at `path` with this process's streams, working directory,
    environment and umask; returns its exit status, or None when the server cannot be reached."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    umask = os.umask(0)
    os.umask(umask)
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask}).encode()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()

    def leave(signum, _frame):  # the server sees the socket close and kills the job
        sock.close()
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, leave)
    try:
        socket.send_fds(sock, [_HEADER.pack(len(request))], [0, 1, 2])
        sock.sendall(request)
        reply = _receive(sock, _STATUS.size)
    except OSError:
        reply = b""
    finally:
        sock.close()
    if len(reply) != _STATUS.size:
        print(f"bertlottery: the job server at {path} stopped while running this job", file=sys.stderr)
        return 1
    return _STATUS.unpack(reply)[0]


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


# -- the server ----------------------------------------------------------------------------------------

def listen(path: str) -> socket.socket:
    """The server's socket, bound and listening: clients that connect now wait in its backlog until
    `serve` accepts them (while the server imports, say)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    Path(path).unlink(missing_ok=True)
    listener.bind(path)
    listener.listen(64)
    return listener


def serve(listener: socket.socket, run: Callable[[list[str]], None], *, parent: int | None = None,
          log=sys.stderr) -> None:
    """Accept jobs on `listener` (from `listen`) until SIGTERM, or until this process's parent is no longer
    `parent` (the process that started the server is gone). `run(argv)` is the command line's entry point
    (cli.main); each job runs it in a forked child."""
    path = listener.getsockname()
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    jobs: dict[int, socket.socket] = {}  # child pid -> its client's connection
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print(f"job server {os.getpid()}: listening on {path}", file=log, flush=True)
    try:
        while not stopping and (parent is None or os.getppid() == parent):  # reparented: the parent is gone
            for key, _ in selector.select(timeout=0.2):
                if key.fileobj is listener:
                    _accept(listener, selector, jobs, run, log)
                else:  # a client's socket is readable only when the client has gone
                    _cancel(key.fileobj, selector, jobs, log)
            _reap(selector, jobs, log)
    finally:
        for pid in jobs:
            _kill_group(pid)
        listener.close()
        Path(path).unlink(missing_ok=True)
        print(f"job server {os.getpid()}: stopped", file=log, flush=True)


def _accept(listener, selector, jobs, run, log) -> None:
    conn, _ = listener.accept()
    conn.settimeout(30)
    fds: list[int] = []
    try:
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        if not header:  # a probe (wait_until_listening): connected and closed
            conn.close()
            return
        request = json.loads(_receive(conn, _HEADER.unpack(header)[0]))
        if len(fds) != 3:
            raise ValueError(f"{len(fds)} file descriptors instead of 3")
    except (OSError, ValueError, struct.error) as exc:
        print(f"job server: a malformed request ({exc}); ignored", file=log, flush=True)
        for fd in fds:
            os.close(fd)
        conn.close()
        return
    for stream in (sys.stdout, sys.stderr, log):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        _child(request, fds, run, close=[listener, conn, *jobs.values()])
    for fd in fds:
        os.close(fd)
    jobs[pid] = conn
    selector.register(conn, selectors.EVENT_READ)
    print(f"job {pid}: {json.dumps(request['argv'][1:])}", file=log, flush=True)


def _child(request: dict, fds: list[int], run, close: list[socket.socket]) -> None:
    """In the forked child: become the job (streams, directory, environment, umask, argv) and run it."""
    global _FORKED
    _FORKED = True
    status = 1
    try:
        for sock in close:
            sock.close()
        os.setsid()  # its own process group, killed as a whole if the client goes
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        status = _run(run, sys.argv[1:])
        print(usage_line(), file=sys.stderr)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not return into the server
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def usage_line() -> str:
    """A fork's own account of itself, for its log: Snakemake's benchmark file times the job's client."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return (f"bertlottery: ran as a fork of the job server: {cpu:.1f} CPU-s, "
            f"peak RSS {max(own.ru_maxrss, children.ru_maxrss) / 1024:.0f} MB (Snakemake's benchmark file "
            "times the job's client)")


def _run(run, argv: list[str]) -> int:
    """run(argv) with Python's own exit conventions: SystemExit's code, or 1 after a traceback."""
    try:
        run(argv)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - as the interpreter: the traceback on stderr, status 1
        traceback.print_exc()
        return 1
    return 0


def _cancel(conn, selector, jobs, log) -> None:
    selector.unregister(conn)
    for pid, job_conn in jobs.items():
        if job_conn is conn:
            print(f"job {pid}: its client went away; killed", file=log, flush=True)
            _kill_group(pid)
            conn.close()
            jobs[pid] = None
            return


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(selector, jobs, log) -> None:
    while jobs:
        try:
            pid, wait_status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = jobs.pop(pid, None)
        status = os.waitstatus_to_exitcode(wait_status)
        status = 128 - status if status < 0 else status  # killed by a signal: as a shell reports it
        cpu = usage.ru_utime + usage.ru_stime
        print(f"job {pid}: exit {status}, cpu {cpu:.3f} s", file=log, flush=True)
        if conn is not None:
            selector.unregister(conn)
            try:
                conn.sendall(_STATUS.pack(status))
            except OSError:
                pass
            conn.close()


# -- starting and stopping, for the workflow -------------------------------------------------------------

def start(log_path: str | os.PathLike) -> tuple[subprocess.Popen, str]:
    """A server for this process's jobs, run by the `python` the jobs run (on PATH), its output appended
    to `log_path`; returns the process and its socket's path (a fresh folder under the temp dir: Unix
    socket paths must be short)."""
    path = os.path.join(tempfile.mkdtemp(prefix="bertlottery-jobs-"), "jobs.sock")
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        process = subprocess.Popen([shutil.which("python") or sys.executable, "-m", "bertlottery", "job-server",
                                    "--socket", path, "--parent", str(os.getpid())], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log, start_new_session=True)
    return process, path


def stop(process: subprocess.Popen, path: str) -> None:
    """SIGTERM (the server kills any job still running), wait, and remove the socket's folder."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def wait_until_listening(path: str, timeout: float = 30.0) -> bool:
    """True once a server accepts connections at `path` (tests, and callers that want to wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return True
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    return False
