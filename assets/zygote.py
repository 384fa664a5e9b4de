"""runcell's warm fork server for one-shot Python runs.

Started once per profile inside a bubblewrap sandbox (its own user, network, ipc and uts
namespaces; the host's pid namespace so runcell can place each run in a cgroup). It imports the
profile's modules once, then forks one helper process, the spawner, which clones a fresh
process per run while the server relays requests, output and exits (cloning is about a
millisecond of kernel work that would otherwise hold up every run's relaying). Neither ever
runs user code. Each run is created by one clone() that gives it new user, mount, pid, network, ipc and
uts namespaces at once, so it is pid 1 of its own pid namespace from birth. Before any user code
it:

  1. maps its uid into its user namespace, makes its mounts private, mounts a fresh /proc and
     private tmpfs /tmp, /dev/shm and /workspace, and forbids further user namespaces;
  2. waits for its code, which runcell sends only once it has moved the process into the run's
     own cgroup (memory, pids, cpu): the process forks nothing before, so every process the run
     will ever have is born in that cgroup;
  3. sets rlimits, drops every capability, sets no_new_privs, installs runcell's seccomp filter
     for runs (the server's own one still lets it mount), reseeds random generators and runs
     the code.

Everything a run creates dies with its pid namespace; no state is carried to the next run.

Runs are pre-started: a standby run goes through step 1 and waits; a request then costs only
step 3. Each standby serves exactly one run. One process per run (not a fork that then unshares
and forks again) halves the copy-on-write faults and exits a run costs.

Protocol: JSON lines on stdin (requests) and stdout (events); run output is base64 in events.
  -> {"op": "prefork", "id", "tmp_bytes"}   start a standby run
  <- {"ev": "forked", "id", "pid"}          runcell moves pid into the run's cgroup
  <- {"ev": "failed", "id", "message"}      (instead: the run could not be created)
  -> {"op": "assign", "id", "code", "env", "limits": {"cpu_s", "file_bytes", "open_files"}}
  <- {"ev": "out", "id", "stream": "stdout"|"stderr", "data": "<base64>"}
  <- {"ev": "exit", "id", "code"}           code is 128+n when killed by signal n
  <- {"ev": "reaped", "id"}                 the run's process is gone (after its exit event)
  -> {"op": "abort", "id"}                  end a standby without running anything
"""

import base64
import ctypes
import gc
import importlib
import json
import linecache
import os
import resource
import selectors
import signal
import socket
import sys
import traceback

libc = ctypes.CDLL(None, use_errno=True)
# Typed once here: typed calls skip per-call argument guessing in every run.
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.prctl.restype = ctypes.c_int
# clone(2) as a raw syscall, without releasing the GIL (PyDLL): os.fork cannot pass namespace
# flags. The PyOS_*Fork hooks around it do what os.fork does around fork(2).
_raw_syscall = ctypes.PyDLL(None, use_errno=True).syscall
_raw_syscall.restype = ctypes.c_long
_raw_syscall.argtypes = [ctypes.c_long, ctypes.c_ulong] + [ctypes.c_void_p] * 4
SYS_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "ppc64le": 120, "s390x": 120}.get(os.uname().machine)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
CODE_PATH = "/run/runcell/main.py"


def check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def last_capability():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


LAST_CAP = last_capability()


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def load_run_filter():
    """runcell's seccomp filter for runs (see seccomp.ts), read once; None when there is none."""
    path = os.environ.get("RUNCELL_RUN_FILTER")
    if not path:
        return None
    with open(path, "rb") as f:
        data = f.read()
    count = len(data) // ctypes.sizeof(SockFilter)
    program = (SockFilter * count).from_buffer_copy(data)
    return SockFprog(count, ctypes.cast(program, ctypes.POINTER(SockFilter))), program


RUN_FILTER = load_run_filter()
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


def install_run_filter():
    """After no_new_privs: from here on the run can never make the calls the filter denies."""
    if RUN_FILTER is not None:
        check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(RUN_FILTER[0]), 0, 0), "seccomp")


def drop_capabilities():
    for cap in range(LAST_CAP + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (CapData * 2)()
    check(libc.capset(ctypes.byref(header), data), "capset")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def mount_tmpfs(target, size):
    check(libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777".encode()), f"mount {target}")


def read_request(fd):
    """Reads one JSON line from fd (the run's request pipe)."""
    chunks = []
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            return None
        chunks.append(data)
        if data.endswith(b"\n"):
            return json.loads(b"".join(chunks))


def reseed_generators():
    """Gives this run its own random state: a fork copies the server's.

    The standard random module reseeds itself after a fork; numpy's global generator does not,
    so two runs of the pandas profile would otherwise draw the same numbers.
    """
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def clone_run():
    """A new process in new user, mount, pid, network, ipc and uts namespaces (pid 1 of its own)."""
    if SYS_CLONE is None:
        raise OSError(0, f"no clone syscall number known for {os.uname().machine}")
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | signal.SIGCHLD
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = _raw_syscall(SYS_CLONE, flags, None, None, None, None)
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


def write_file(path, text):
    """Writes a /proc file without building a Python file object (fewer pages touched)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def standby(tmp_bytes, uid, gid, request_read, out_write, err_write, status_write):
    """pid 1 of the run's namespaces: prepare, wait for code (and the cgroup), confine, run it."""
    # Dies with the server. (Had the server died before this, the request pipe reads as closed.)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)  # never the server's command pipe
    os.dup2(out_write, 1)
    os.dup2(err_write, 2)
    os.dup2(request_read, 3)
    os.dup2(status_write, 4)
    os.closerange(5, 1 << 16)
    write_file("/proc/self/setgroups", "deny")
    write_file("/proc/self/uid_map", f"{uid} {uid} 1")
    write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    for target in ("/tmp", "/dev/shm", "/workspace"):
        mount_tmpfs(target, tmp_bytes)
    check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
    # No nested user namespaces: they would give the code capabilities again.
    write_file("/proc/sys/user/max_user_namespaces", "0")
    # What does not depend on the request is done while waiting for it.
    os.chdir("/workspace")
    sys.argv = [CODE_PATH]
    sys.path[0] = "/workspace"
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    for sig in (signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    # The code runs as pid 1 of its namespace, which the kernel spares from default-action
    # signals (SIGXCPU of the CPU rlimit among them); end the run as that action would have.
    for sig in (signal.SIGXCPU, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        signal.signal(sig, lambda number, _frame: os._exit(128 + number))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as the python3 binary does
    request_fd = 3
    request = read_request(request_fd)
    os.close(request_fd)
    if request is None:
        os._exit(0)  # released without a run
    limits = request["limits"]
    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limits["file_bytes"]),) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(limits["open_files"]),) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    drop_capabilities()
    install_run_filter()
    reseed_generators()
    gc.enable()
    env = request["env"]
    # Exactly the requested variables. (Clearing os.environ first would cost a pass through
    # MutableMapping per variable; the server's few are overwritten or deleted here.)
    for key in [key for key in os.environ if key not in env]:
        del os.environ[key]
    os.environ.update(env)
    code = request["code"]
    linecache.cache[CODE_PATH] = (len(code), None, code.splitlines(True), CODE_PATH)
    main = {"__name__": "__main__", "__file__": CODE_PATH, "__builtins__": __builtins__}
    status = 0
    try:
        exec(compile(code, CODE_PATH, "exec"), main)
    except SystemExit as exit_request:
        arg = exit_request.code
        if arg is None:
            status = 0
        elif isinstance(arg, int):
            status = arg & 0xFF
        else:
            print(arg, file=sys.stderr)
            status = 1
    except BaseException:
        # Print as `python3 file.py` would: without this server's own frame.
        kind, value, tb = sys.exc_info()
        traceback.print_exception(kind, value, tb.tb_next if tb is not None else None)
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    # Say how the run ended before exiting: tearing down this process's memory takes longer
    # than the run's last steps, and runcell need not wait for it (the cgroup is reused only
    # once the process is reaped). The code could write here too, but only about itself.
    for fd in (1, 2):
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        os.write(4, str(status).encode())
    except OSError:
        pass
    os._exit(status)


def spawner(channel):
    """The process that clones runs: forked from the server once, it does little else, so that
    cloning (about a millisecond of kernel work per run) never holds up the server's relaying,
    and few of its pages are touched (copied) between clones.

    Messages on `channel` (a SOCK_SEQPACKET pair): from the server "clone SEQ TMP_BYTES" with the
    run's request, stdout, stderr and status descriptors; to it "pid SEQ PID", "failed SEQ
    MESSAGE" and "exit PID CODE".
    """
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the server
    uid, gid = os.getuid(), os.getgid()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ, "channel")
    selector.register(wake_read, selectors.EVENT_READ, "wake")
    children = set()
    while True:
        for key, _ in selector.select():
            if key.data == "wake":
                try:
                    os.read(wake_read, 4096)
                except BlockingIOError:
                    pass
                continue
            message, fds, _, _ = socket.recv_fds(channel, 256, 4)
            if not message:
                os._exit(0)  # the server is gone
            _, seq, tmp_bytes = message.split()
            try:
                pid = clone_run()
            except OSError as error:
                for fd in fds:
                    os.close(fd)
                channel.send(b"failed " + seq + b" " + str(error).encode())
                continue
            if pid == 0:
                try:
                    signal.set_wakeup_fd(-1)
                    standby(int(tmp_bytes), uid, gid, *fds)
                except BaseException as error:
                    try:  # fd 2 is the run's stderr once standby() has set up its descriptors
                        os.write(2, f"runcell: sandbox setup failed: {error}\n".encode())
                    finally:
                        os._exit(125)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            channel.send(b"pid " + seq + b" " + str(pid).encode())
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            channel.send(f"exit {pid} {code}".encode())


class Server:
    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.runs = {}  # id -> {"pid", "request", "pending", "fds": {fd: stream}, "exit"}
        self.by_pid = {}
        self.by_seq = {}  # clone requests awaiting the spawner's answer
        self.seq = 0
        self.inbuf = b""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            spawner(theirs)
        theirs.close()
        self.channel = ours
        self.spawner_pid = pid
        self.selector.register(self.channel, selectors.EVENT_READ, ("spawner", None))
        self.selector.register(0, selectors.EVENT_READ, ("stdin", None))

    def emit(self, event):
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def prefork(self, request):
        run_id = request["id"]
        request_read, request_write = os.pipe()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        status_read, status_write = os.pipe()
        self.seq += 1
        seq = str(self.seq)
        socket.send_fds(
            self.channel,
            [f"clone {seq} {int(request['tmp_bytes'])}".encode()],
            [request_read, out_write, err_write, status_write],
        )
        for fd in (request_read, out_write, err_write, status_write):
            os.close(fd)
        os.set_blocking(request_write, False)
        run = {
            "id": run_id,
            "pid": None,
            "request": request_write,
            "pending": b"",
            "fds": {out_read: "stdout", err_read: "stderr"},
            "status": status_read,
            "said": None,  # the exit status the run reported itself
            "exit": None,  # the exit status waitpid reported
        }
        self.runs[run_id] = run
        self.by_seq[seq] = run_id
        for fd in (out_read, err_read, status_read):
            os.set_blocking(fd, False)
        for fd in (out_read, err_read):
            self.selector.register(fd, selectors.EVENT_READ, ("out", run_id))
        self.selector.register(status_read, selectors.EVENT_READ, ("status", run_id))

    def from_spawner(self):
        message = self.channel.recv(4096)
        if not message:
            os._exit(1)  # the spawner died: so do its runs; runcell starts a new server
        kind, first, rest = message.decode().split(" ", 2)
        if kind == "pid":
            run_id = self.by_seq.pop(first, None)
            run = self.runs.get(run_id)
            if run is None:
                return
            run["pid"] = int(rest)
            self.by_pid[int(rest)] = run_id
            self.emit({"ev": "forked", "id": run_id, "pid": int(rest)})
        elif kind == "failed":
            run_id = self.by_seq.pop(first, None)
            run = self.runs.pop(run_id, None)
            if run is None:
                return
            for fd in list(run["fds"]) + [run["status"]]:
                if fd in self.selector.get_map():
                    self.selector.unregister(fd)
                os.close(fd)
            os.close(run["request"])
            self.emit({"ev": "failed", "id": run_id, "message": rest})
        elif kind == "exit":
            self.exited(int(first), int(rest))

    def assign(self, request):
        run = self.runs.get(request["id"])
        if run is None or run["request"] is None:
            return
        run["pending"] = (json.dumps(request, separators=(",", ":")) + "\n").encode()
        self.flush_request(request["id"])

    def flush_request(self, run_id):
        """Writes what the pipe takes now; the rest when it is writable (code can be large)."""
        run = self.runs.get(run_id)
        if run is None or run["request"] is None:
            return
        fd = run["request"]
        try:
            written = os.write(fd, run["pending"])
            run["pending"] = run["pending"][written:]
        except BlockingIOError:
            pass
        except OSError:
            run["pending"] = b""
        registered = fd in self.selector.get_map()
        if run["pending"] and not registered:
            self.selector.register(fd, selectors.EVENT_WRITE, ("request", run_id))
        elif not run["pending"]:
            if registered:
                self.selector.unregister(fd)
            os.close(fd)
            run["request"] = None

    def read_output(self, fd, run_id):
        run = self.runs.get(run_id)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data and run is not None:
            stream = run["fds"][fd]
            self.emit({"ev": "out", "id": run_id, "stream": stream, "data": base64.b64encode(data).decode()})
            return
        self.selector.unregister(fd)
        os.close(fd)
        if run is not None:
            del run["fds"][fd]
            self.maybe_finish(run_id)

    def read_status(self, fd, run_id):
        try:
            data = os.read(fd, 16)
        except BlockingIOError:
            return
        run = self.runs.get(run_id)
        self.close_status(run, fd)
        if run is not None and data.isdigit():
            run["said"] = int(data) & 0xFF
            self.maybe_finish(run_id)

    def close_status(self, run, fd):
        if fd in self.selector.get_map():
            self.selector.unregister(fd)
        os.close(fd)
        if run is not None:
            run["status"] = None

    def exited(self, pid, code):
        run_id = self.by_pid.pop(pid, None)
        if run_id is None:
            return
        if run_id in self.runs:
            self.runs[run_id]["exit"] = code
            self.maybe_finish(run_id)
        # Its process is gone: its cgroup may be reused.
        self.emit({"ev": "reaped", "id": run_id})

    def maybe_finish(self, run_id):
        run = self.runs[run_id]
        # Done when both pipes are drained (no output is lost) and the exit status is known:
        # from waitpid, or from the run itself, which says it just before exiting.
        code = run["exit"] if run["exit"] is not None else run["said"]
        if code is None or run["fds"]:
            return
        if run["request"] is not None:
            if run["request"] in self.selector.get_map():
                self.selector.unregister(run["request"])
            os.close(run["request"])
        if run["status"] is not None:
            self.close_status(run, run["status"])
        del self.runs[run_id]
        self.emit({"ev": "exit", "id": run_id, "code": code})

    def handle(self, line):
        request = json.loads(line)
        op = request.get("op")
        if op == "prefork":
            self.prefork(request)
        elif op == "assign":
            self.assign(request)
        elif op == "abort":
            run = self.runs.get(request["id"])
            if run is not None and run["request"] is not None:
                # Closing the request pipe releases a standby that is already waiting for code.
                run["pending"] = b""
                self.flush_request(request["id"])

    def serve(self):
        self.emit({"ev": "ready", "pid": os.getpid()})
        while True:
            for key, _ in self.selector.select():
                # An earlier event of this batch may have closed (and even reused) this fd.
                if self.selector.get_map().get(key.fd) is not key:
                    continue
                kind, run_id = key.data
                if kind == "stdin":
                    chunk = os.read(0, 1 << 20)
                    if not chunk:
                        return  # runcell went away: stop; runs die with their parent
                    self.inbuf += chunk
                    while b"\n" in self.inbuf:
                        line, self.inbuf = self.inbuf.split(b"\n", 1)
                        if line.strip():
                            self.handle(line)
                elif kind == "spawner":
                    self.from_spawner()
                elif kind == "request":
                    self.flush_request(run_id)
                elif kind == "status":
                    self.read_status(key.fd, run_id)
                else:
                    self.read_output(key.fd, run_id)


def main():
    for name in sys.argv[1:]:
        importlib.import_module(name)
    # Keep the collector away from everything imported so far: a run whose collector walked
    # those objects would copy every page it touched (copy-on-write), for nothing.
    gc.collect()
    gc.freeze()
    # Nor does it collect while serving (its loop makes no reference cycles): a collection
    # walks every young object and dirties pages the runs share. Each run turns it back on.
    gc.disable()
    Server().serve()


if __name__ == "__main__":
    main()
