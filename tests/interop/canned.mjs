// Plain-JS pieces shared by the interop client scripts, independent of the
// SDK (v1 or v2) that imports them.

// A sampling/createMessage handler giving a canned answer, counting each call
// in `calls.sampling`.
export function cannedSampling(calls) {
  return async (req) => {
    calls.sampling += 1;
    return {
      role: "assistant",
      content: { type: "text", text: `canned answer to ${req.params.messages.length} message(s)` },
      model: "interop-model",
      stopReason: "endTurn",
    };
  };
}

// Runs `main()` under an overall timeout: exit 0 when it resolves; on an
// error (or the timeout) writes `<name>: ...` to stderr and exits 1.
export function exitWhenDone(name, timeoutMs, main) {
  const timer = setTimeout(() => {
    process.stderr.write(`${name}: timed out after ${timeoutMs} ms\n`);
    process.exit(1);
  }, timeoutMs);
  main().then(
    () => {
      clearTimeout(timer);
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`${name}: ${err?.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
