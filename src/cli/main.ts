// Entry point of the `docket` command (bin/docket.js loads this file).
import { isDocketError } from '../core/errors.js';
import { buildProgram } from './program.js';

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (isDocketError(err)) {
    process.stderr.write(`docket: ${err.code}: ${err.message}\n`);
    if (Object.keys(err.details).length > 0) {
      process.stderr.write(`${JSON.stringify(err.details)}\n`);
    }
  } else {
    process.stderr.write(
      `docket: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
  }
  process.exitCode = 1;
}
// Every command has closed what it opened by now (long-running ones return after a graceful
// stop); exit without waiting for idle driver sockets and their timers to expire.
process.exit(process.exitCode);
