// The engines field states which Node lines Coffer supports; the AWS SDK's notice about its own future
// requirements would otherwise land in the server log on every archive_command run.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { runCli } = await import('./program.js');

// `coffer list | head -1`: the reader went away; there is nobody left to tell, so end quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

const status = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
process.exitCode = status;
