// server.mjs - start a live `qforge serve` for the node tests.
//
// The binary comes from QFORGE_EXE (the test runner sets it); the model from
// QF_TEST_MODEL, or one is synthesized (random weights) into a temp folder.
// The server listens on a free loopback port (--port 0; the port is read
// from the line it prints). stop() sends SIGTERM and waits for the exit.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function synthModel(dir, name = 'tiny') {
  const exe = process.env.QFORGE_EXE;
  const out = join(dir, `${name}.gguf`);
  const r = spawnSync(exe, ['model', 'synth', '--arch', 'llama', '--n-embd', '64', '--n-layer', '2',
    '--n-head', '4', '--n-head-kv', '2', '--n-ff', '128', '--type', 'q8_0', '-o', out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`model synth failed: ${r.stderr}`);
  return out;
}

export async function startServer(extra = []) {
  const exe = process.env.QFORGE_EXE;
  if (!exe) throw new Error('QFORGE_EXE is not set');
  const dir = mkdtempSync(join(tmpdir(), 'qforge-serve-'));
  const model = process.env.QF_TEST_MODEL || synthModel(dir);
  const proc = spawn(exe, ['serve', '-m', model, '--host', '127.0.0.1', '--port', '0', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/serving on http:\/\/[^\s]*:(\d+)\//);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}): ${stderr}`)); });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url, port, proc, model: 'tiny',
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode === null) {
        const done = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await done;
      }
      rmSync(dir, { recursive: true, force: true });
      return proc.exitCode;
    },
  };
}

// Prometheus text -> { 'name{labels}': value }
export async function metrics(url, headers = {}) {
  const r = await fetch(`${url}/metrics`, { headers });
  const m = {};
  for (const line of (await r.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return m;
}
