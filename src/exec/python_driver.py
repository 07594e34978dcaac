# The driver of a live Python session (shipped inside delta-sessions with
# include_str!, run as `python3 -u -c DRIVER FD`).
#
# FD is one end of a socketpair made by the session's holder. It is the only
# channel to the outside: one frame per exec arrives on it (a little-endian
# u32 length, a JSON body {"id": N}, and three descriptors: the exec's stdout
# pipe, stderr pipe and a memfd holding the code), and one frame goes back
# ({"id": N, "exit_code": C, "cwd": "/now"}). Nothing the user code prints can
# reach this socket, so printed text cannot fake a result.
#
# While the code runs, fds 0/1/2 are /dev/null and the exec's pipes (dup2,
# so os.system and subprocesses write there too). Afterwards they are /dev/null
# again, so the exec's pipes reach EOF. SIGINT is blocked outside the user
# code, so an interrupt sent on timeout only ever lands in the user code.


def _ds_driver(channel_fd):
    import array
    import ast
    import builtins
    import json
    import os
    import signal
    import socket
    import sys
    import traceback
    import types

    os.set_inheritable(channel_fd, False)
    channel = socket.socket(fileno=channel_fd)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    sigint = {signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigint)

    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    sys.argv = [""]
    namespace = main.__dict__

    def recv_exact(n, fds):
        data = b""
        while len(data) < n:
            chunk, anc, _flags, _addr = channel.recvmsg(
                n - len(data), socket.CMSG_SPACE(8 * 4), socket.MSG_CMSG_CLOEXEC
            )
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    ints = array.array("i")
                    ints.frombytes(payload[: len(payload) - len(payload) % ints.itemsize])
                    fds.extend(ints)
            if not chunk:
                return None
            data += chunk
        return data

    def recv_frame():
        fds = []
        header = recv_exact(4, fds)
        if header is None:
            return None, fds
        body = recv_exact(int.from_bytes(header, "little"), fds)
        return body, fds

    def send_frame(value):
        body = json.dumps(value).encode()
        channel.sendall(len(body).to_bytes(4, "little") + body)

    def exit_status(code):
        # As the interpreter itself does at exit.
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        try:
            print(code, file=sys.stderr)
        except BaseException:
            pass
        return 1

    def show_exception(exc, tb):
        # Frames of this driver (file "<string>") are not the user's business.
        while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
            tb = tb.tb_next
        try:
            traceback.print_exception(type(exc), exc, tb)
        except BaseException:
            pass

    def run(code):
        try:
            tree = compile(code, "<stdin>", "exec", ast.PyCF_ONLY_AST)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                # Like the REPL: a final bare expression shows its value.
                last = compile(ast.Expression(tree.body.pop().value), "<stdin>", "eval")
            body = compile(tree, "<stdin>", "exec")
        except (SyntaxError, ValueError, OverflowError) as e:
            show_exception(e, None)
            return 1
        try:
            try:
                # An interrupt left pending from an earlier exec is stale.
                while signal.sigtimedwait(sigint, 0) is not None:
                    pass
                signal.pthread_sigmask(signal.SIG_UNBLOCK, sigint)
                exec(body, namespace)
                if last is not None:
                    sys.displayhook(eval(last, namespace))
            finally:
                signal.pthread_sigmask(signal.SIG_BLOCK, sigint)
            return 0
        except SystemExit as e:
            return exit_status(e.code)
        except BaseException as e:
            show_exception(e, e.__traceback__)
            return 1

    def reopen_std_streams():
        # The builtin exit() closes sys.stdin (and fd 0) before it raises
        # SystemExit, and code may close sys.stdout; later execs still expect
        # the three streams on fds 0-2.
        if sys.stdin is None or sys.stdin.closed:
            sys.stdin = sys.__stdin__ = open(0, "r", closefd=False)
        if sys.stdout is None or sys.stdout.closed:
            sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, closefd=False)
        if sys.stderr is None or sys.stderr.closed:
            sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)

    def flush():
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass

    while True:
        body, fds = recv_frame()
        if body is None:
            # The holder is gone: the session ends.
            os._exit(0)
        try:
            request = json.loads(body)
            out, err, source = fds[:3]
        except (ValueError, TypeError):
            for fd in fds:
                os.close(fd)
            continue
        for fd in fds[3:]:
            os.close(fd)
        os.lseek(source, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(source, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(source)
        code = b"".join(chunks).decode("utf-8", "replace")

        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        reopen_std_streams()
        os.close(out)
        os.close(err)
        try:
            status = run(code)
        except KeyboardInterrupt as e:
            # An interrupt that landed just outside the user code.
            show_exception(e, None)
            status = 1
        flush()
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        send_frame({"id": request.get("id"), "exit_code": status, "cwd": cwd})


_ds_driver(int(__import__("sys").argv[1]))
