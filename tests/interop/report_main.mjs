// The entry point of an interop script that prints one JSON report: runs
// `run(argv)` under an overall timeout, prints its result as ONE JSON line
// on stdout and exits 0; on any error (or the timeout) writes it to stderr
// and exits 1. `run` returning null means bad arguments: `usage` is printed.

export function main(name, usage, timeoutMs, run) {
  const timer = setTimeout(() => {
    process.stderr.write(`${name}: timed out after ${timeoutMs} ms\n`);
    process.exit(1);
  }, timeoutMs);
  run(process.argv.slice(2)).then(
    (report) => {
      clearTimeout(timer);
      if (report === null) {
        process.stderr.write(`${usage}\n`);
        process.exit(1);
      }
      process.stdout.write(`${JSON.stringify(report)}\n`);
      process.exit(0);
    },
    (err) => {
      clearTimeout(timer);
      process.stderr.write(`${name}: ${err?.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
