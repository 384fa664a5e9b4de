"""runcell's spawn helper: starts runcell's child processes so that runcell itself never forks.

Forking a process copies its page tables: for a Node.js server that is tens of milliseconds per
child once it holds a gigabyte. This small process is started once, while runcell is still
small, and starts every child with posix_spawn (vfork: no copy at all). A child's stdin, stdout
and stderr are Unix-socket connections to runcell itself, so its output never passes through
here.

Usage: spawn-helper.py SOCKET_PATH TOKEN

Protocol: JSON lines on stdin (requests) and stdout (events).
  -> {"op": "spawn", "id", "argv", "env", "cwd"?, "stdin": bool}
     The helper connects to SOCKET_PATH once per stream (stdin when asked, stdout, stderr),
     writes "TOKEN ID STREAM\\n" on each connection, then starts the child in a new session with
     those connections as its descriptors 0, 1 and 2 (stdin is /dev/null when not asked).
  <- {"ev": "spawned", "id", "pid"}
  <- {"ev": "error", "id", "errno", "message"}   the child could not be started
  <- {"ev": "exit", "id", "code", "signal"}      the child ended (one of code, signal is null)

The helper dies with runcell (parent-death signal, SIGTERM so that it removes runcell's socket
directory first) and when its stdin closes; its children are each runcell's to end (they carry
their own parent-death signal where confinement needs it).
"""

import ctypes
import json
import os
import selectors
import shutil
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
# Every signal back to its default action and unblocked in a child, as Node's own spawn does:
# Python ignores SIGPIPE and SIGXFSZ, which a child would otherwise inherit.
DEFAULT_SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


def main():
    socket_path, token = sys.argv[1], sys.argv[2]
    parent = os.getppid()

    def leave(*_):
        # runcell is gone (or stops us): take its socket directory along, then go.
        shutil.rmtree(os.path.dirname(socket_path), ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, leave)
    # SIGTERM rather than SIGKILL when runcell dies, even by SIGKILL, so the directory goes too.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # runcell died before the parent-death signal was armed
        leave()
    os.chdir("/")
    children = {}  # pid -> id
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, "stdin")
    selector.register(wake_read, selectors.EVENT_READ, "wake")
    out = sys.stdout
    pending = b""

    def emit(event):
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
        out.flush()

    def connect(run_id, stream):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(socket_path)
        conn.sendall(f"{token} {run_id} {stream}\n".encode())
        if stream == "stdin":
            conn.shutdown(socket.SHUT_WR)  # the child only reads from it
        return conn

    def spawn(request):
        run_id = int(request["id"])
        argv = [str(arg) for arg in request["argv"]]
        env = {str(k): str(v) for k, v in request["env"].items()}
        conns = []
        try:
            program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
            if program is None:
                raise FileNotFoundError(2, f"{argv[0]}: not found on PATH")
            stdin = connect(run_id, "stdin") if request.get("stdin") else None
            stdout = connect(run_id, "stdout")
            stderr = connect(run_id, "stderr")
            conns = [c for c in (stdin, stdout, stderr) if c is not None]
            actions = [
                (os.POSIX_SPAWN_DUP2, stdin.fileno(), 0)
                if stdin is not None
                else (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, stdout.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2),
            ]
            cwd = request.get("cwd")
            if cwd:
                os.chdir(cwd)  # single-threaded: the child inherits it, then it is put back
            try:
                pid = os.posix_spawn(program, argv, env, file_actions=actions, setsid=True,
                                     setsigdef=DEFAULT_SIGNALS, setsigmask=())
            finally:
                if cwd:
                    os.chdir("/")
        except OSError as error:
            emit({"ev": "error", "id": run_id, "errno": error.errno, "message": str(error)})
            return
        finally:
            for conn in conns:
                conn.close()
        children[pid] = run_id
        emit({"ev": "spawned", "id": run_id, "pid": pid})

    def reap():
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run_id = children.pop(pid, None)
            if run_id is None:
                continue
            if os.WIFSIGNALED(status):
                emit({"ev": "exit", "id": run_id, "code": None, "signal": os.WTERMSIG(status)})
            else:
                emit({"ev": "exit", "id": run_id, "code": os.WEXITSTATUS(status), "signal": None})

    while True:
        for key, _ in selector.select():
            if key.data == "wake":
                try:
                    os.read(wake_read, 4096)
                except BlockingIOError:
                    pass
            else:
                chunk = os.read(0, 1 << 20)
                if not chunk:
                    leave()  # runcell went away, or is done with us
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        spawn(json.loads(line))
        reap()


if __name__ == "__main__":
    main()
