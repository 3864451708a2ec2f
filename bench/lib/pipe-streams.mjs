// The real-fd stream source for BenchV2Device: the data session is a kernel
// pipe (a FIFO) whose other end is another process (pipe-helpers.c), and the
// session's read()/write() are real read(2)/write(2) calls through koffi, as
// KernelDataSession makes them on a data_fd. One source serves one session in
// one direction; `prepare` starts the helper and opens the FIFO before any
// timing. The FIFO is opened O_RDWR, which never blocks, so the session
// counts the stream's end itself (as a driver knows its stream's length).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { koffiSyscalls, MigrationError, O_RDWR } from '../../dist/index.js';

const SOURCE = fileURLToPath(new URL('pipe-helpers.c', import.meta.url));
let helper = null;

/** Compile pipe-helpers.c once per process (into a temp dir). */
function helperBinary() {
  if (helper) return helper;
  const dir = join(tmpdir(), `vfio-mig-bench-pipe-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  helper = join(dir, 'pipe-helpers');
  if (!existsSync(helper)) execFileSync('cc', ['-O2', '-Wall', '-o', helper, SOURCE], { stdio: ['ignore', 'inherit', 'inherit'] });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return helper;
}

/** A stream source whose one session (`direction` 'save' or 'resume') is a pipe to a helper process. */
export async function preparePipeStreams(direction, streamBytes) {
  const sys = koffiSyscalls();
  const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-fifo-'));
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const fd = sys.open(fifo, O_RDWR);
  const child = spawn(helperBinary(), [direction === 'save' ? 'feed' : 'drain', fifo, String(streamBytes)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let report = '';
  child.stdout.on('data', (d) => (report += d));
  const done = new Promise((resolve, reject) =>
    child.on('close', (code) =>
      code === 0 ? resolve(report.trim().split(' ').map(Number)) : reject(new Error(`pipe helper exit ${code}`)),
    ),
  );
  let open = true;
  const closeFd = () => {
    if (open) sys.close(fd);
    open = false;
  };
  const noSession = () => {
    throw new MigrationError('EIO', `this pipe source serves one ${direction} session`);
  };
  let at = 0;
  return {
    streamBytes,
    saving:
      direction === 'save'
        ? () => ({
            read(buf) {
              const want = Math.min(buf.length, streamBytes - at);
              const n = want === 0 ? 0 : sys.read(fd, want === buf.length ? buf : buf.subarray(0, want));
              at += n;
              return n;
            },
            remaining: () => streamBytes - at,
          })
        : noSession,
    resuming:
      direction === 'resume'
        ? () => ({
            write(buf) {
              const n = sys.write(fd, buf);
              at += n;
              return n;
            },
            async finish() {
              closeFd(); // the helper sees the end of the stream
              const [moved, bad] = await done;
              if (moved !== streamBytes || bad)
                throw new MigrationError('EINVAL', `pipe helper got ${moved} of ${streamBytes} bytes${bad ? ', altered' : ''}`);
            },
          })
        : noSession,
    /** After the run: the helper's report [bytes, bad, pipe capacity]; everything closed and removed. */
    async dispose() {
      closeFd();
      try {
        return await done;
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
