// Node's built-in zstd (node:zlib, 22.15+) against zstd-napi on chunk-sized buffers, as Coffer compresses them:
// one call per 8 KiB page or 64 KiB chunk. Run with Node 22 or later: node benchmarks/zstd-builtin.mjs
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
const require = createRequire(new URL('../packages/engine/package.json', import.meta.url));
const zstd = require('zstd-napi');
// Inputs: 8 KiB pages of a pgbench-like table (text-ish), and 64 KiB FastCDC-sized chunks of mixed text.
function textish(n, seed) { const words = ['alpha','beta','gamma','delta','pgbench','account','balance','filler','   ','0000']; let s=''; let x=seed; while (s.length<n){ x=(x*1103515245+12345)&0x7fffffff; s+=words[x%words.length]+(x%7===0?'\n':' '); } return Buffer.from(s.slice(0,n)); }
const pages = Array.from({length: 4000}, (_, i) => textish(8192, i));
const chunks = Array.from({length: 500}, (_, i) => textish(65536, 1e6+i));
const level = 3;
const cctx = new zstd.Compressor(); cctx.setParameters({ compressionLevel: level });
const dctx = new zstd.Decompressor();
function run(name, inputs, comp, decomp) {
  for (let w=0; w<2; w++) for (const b of inputs.slice(0,50)) decomp(comp(b));
  let t0 = process.hrtime.bigint(); let out = 0; const cs = inputs.map((b) => { const c = comp(b); out += c.length; return c; });
  const tc = Number(process.hrtime.bigint()-t0)/1e6;
  t0 = process.hrtime.bigint(); for (let i=0;i<cs.length;i++) decomp(cs[i], inputs[i].length);
  const td = Number(process.hrtime.bigint()-t0)/1e6;
  const mb = inputs.reduce((n,b)=>n+b.length,0)/1e6;
  console.log(`${name.padEnd(22)} compress ${(mb/(tc/1000)).toFixed(0).padStart(5)} MB/s  decompress ${(mb/(td/1000)).toFixed(0).padStart(5)} MB/s  ratio ${(mb*1e6/out).toFixed(2)}`);
}
const opts = { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } };
for (const [label, inputs] of [['8 KiB pages', pages], ['64 KiB chunks', chunks]]) {
  console.log(`-- ${label}, zstd level ${level}, node ${process.version}`);
  run('zstd-napi', inputs, (b) => cctx.compress(b), (c) => dctx.decompress(c));
  run('node:zlib zstd (sync)', inputs, (b) => zlib.zstdCompressSync(b, opts), (c) => zlib.zstdDecompressSync(c));
}
