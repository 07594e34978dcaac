// The driver of a live node session (shipped inside delta-sessions with
// include_str!, run as `node -e DRIVER`).
//
// fd 3 is one end of a socketpair made by the session's holder: one frame per
// exec arrives on it (a little-endian u32 length and a JSON body
// {"id": N, "nonce": "…", "code": "…"}) and one frame goes back
// ({"id": N, "nonce": "…", "exit_code": C, "cwd": "/now"}). Node cannot
// receive descriptors nor dup2, so unlike the Python driver the exec's pipes
// never reach this process: fds 1 and 2 are pipes the holder made when it
// started node, and the worker of the running exec copies from them. Node
// writes to a pipe at once while it has room and queues the rest, so the
// reply waits until process.stdout and process.stderr have nothing queued:
// then everything the code printed is in those pipes. Printed text never
// reaches fd 3, so it cannot fake a result.
//
// The code runs with vm.Script#runInThisContext({breakOnSigint: true}): the
// SIGINT the worker sends on timeout throws inside the running code instead
// of killing node. Outside the code a no-op SIGINT listener keeps node alive.
(function dsDriver() {
  'use strict';
  const net = require('net');
  const util = require('util');
  const vm = require('vm');

  const CHANNEL_FD = 3;
  const realExit = process.exit.bind(process);

  // process.exit(n) in user code ends the exec with status n; the session
  // (and its state) stays. Thrown so that the rest of the code does not run.
  class ExitRequest {
    constructor(code) {
      this.code = code;
    }
  }
  let exitCode = null;
  process.exit = function exit(code) {
    const n = code === undefined ? process.exitCode : code;
    const status = Number.isInteger(Number(n)) ? Number(n) & 0xff : 0;
    exitCode = status;
    throw new ExitRequest(status);
  };

  process.on('SIGINT', () => {});

  // The streams as node made them (code may replace process.stdout).
  const stdout = process.stdout;
  const stderr = process.stderr;

  // Calls `done` once both streams have handed all their data to the pipes
  // (the worker empties them meanwhile). A destroyed stream has nothing left
  // to hand over.
  function whenFlushed(done) {
    const queued = (s) => !s.destroyed && s.writableLength > 0;
    if (!queued(stdout) && !queued(stderr)) {
      done();
      return;
    }
    setTimeout(() => whenFlushed(done), 1);
  }

  function show(err) {
    try {
      if (err instanceof ExitRequest) return;
      let text;
      if (err instanceof Error && typeof err.stack === 'string') {
        // Frames of this driver and of node's vm module are not the user's.
        text = err.stack
          .split('\n')
          .filter((l) => !/^\s+at .*(\[eval\]|\(?node:)/.test(l))
          .join('\n');
      } else {
        text = 'Uncaught ' + util.inspect(err);
      }
      stderr.write(text + '\n');
    } catch (_) {
      // Output that cannot be written is lost, the session is not.
    }
  }

  // Errors thrown later (timers, promises) must not kill the session.
  let asyncFailed = false;
  process.on('uncaughtException', (err) => {
    if (!(err instanceof ExitRequest)) {
      asyncFailed = true;
      show(err);
    }
  });
  process.on('unhandledRejection', (err) => {
    asyncFailed = true;
    show(err);
  });

  function run(code) {
    let script;
    try {
      script = new vm.Script(code, { filename: '<stdin>' });
    } catch (err) {
      show(err);
      return 1;
    }
    try {
      const value = script.runInThisContext({ breakOnSigint: true, displayErrors: true });
      if (value !== undefined) {
        stdout.write(util.inspect(value) + '\n');
      }
      return 0;
    } catch (err) {
      if (err instanceof ExitRequest) return err.code;
      show(err);
      return 1;
    }
  }

  const channel = new net.Socket({ fd: CHANNEL_FD, readable: true, writable: true });
  let pending = Buffer.alloc(0);
  let busy = false;

  function reply(request, status) {
    let cwd = null;
    try {
      cwd = process.cwd();
    } catch (_) {
      // Deleted under us: the caller falls back to the saved one.
    }
    const body = Buffer.from(
      JSON.stringify({ id: request.id, nonce: request.nonce, exit_code: status, cwd })
    );
    const header = Buffer.alloc(4);
    header.writeUInt32LE(body.length, 0);
    channel.write(Buffer.concat([header, body]));
  }

  function next() {
    if (busy || pending.length < 4) return;
    const len = pending.readUInt32LE(0);
    if (pending.length < 4 + len) return;
    const body = pending.subarray(4, 4 + len);
    pending = pending.subarray(4 + len);
    let request;
    try {
      request = JSON.parse(body.toString('utf8'));
    } catch (_) {
      setImmediate(next);
      return;
    }
    busy = true;
    exitCode = null;
    asyncFailed = false;
    let status = run(typeof request.code === 'string' ? request.code : '');
    // Let promise callbacks and process.nextTick of this exec run (and print)
    // before the reply; a process.exit() among them still counts.
    setImmediate(() =>
      whenFlushed(() => {
        if (exitCode !== null) status = exitCode;
        else if (asyncFailed && status === 0) status = 1;
        reply(request, status);
        busy = false;
        next();
      })
    );
  }

  channel.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    next();
  });
  // The holder is gone: the session ends.
  channel.on('end', () => realExit(0));
  channel.on('error', () => realExit(0));
})();
