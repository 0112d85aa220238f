// jit_hot: a Node.js CPU burner whose time goes to one named function,
// for checking JIT frames named through `node --perf-basic-prof`'s
// /tmp/perf-<pid>.map. V8 compiles the hot loop to machine code within
// milliseconds; the perf map names that code `JS:*jitHotLoop …`.
//
// Usage: node --perf-basic-prof jit_hot.js [SECONDS]   (0 or absent: until killed)
'use strict';

function jitHotLoop(n, seed) {
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
  }
  return x;
}

const seconds = Number(process.argv[2] || 0);
const deadline = seconds > 0 ? Date.now() + seconds * 1000 : Infinity;
let acc = 1;
while (Date.now() < deadline) {
  acc = jitHotLoop(1 << 20, acc);
}
if (acc === 42) console.log(acc);
