// The engines field states which Node lines Coffer supports; the AWS SDK's notice about its own future
// requirements would otherwise land in the server log on every archive_command run.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { buildProgram, runCli } = await import('./program.js');
const { runTuned } = await import('./malloc-tuning.js');

// `coffer list | head -1`: the reader went away; there is nobody left to tell, so end quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

const io = { stdout: process.stdout, stderr: process.stderr, env: process.env };
const argv = process.argv.slice(2);
// Global options that take a value (their value is not the command word).
const valued = new Set(buildProgram(io).options.filter((o) => o.required || o.optional).map((o) => o.long ?? ''));
const status = (await runTuned(argv, process.env, valued)) ?? (await runCli(argv, io));
process.exitCode = status;
