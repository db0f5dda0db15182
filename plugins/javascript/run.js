'use strict';
// kiln's runner for a JavaScript run whose end is checked (the job key
// expect_end; worker/include/kiln/plugin.h, KILN_PLUGIN_ENDS), given to
// node with -e:
//
//   node -e RUN.JS /work/main.js ARGS...    (or /work/main.mjs)
//
// Before any of the program's code runs it takes the agent's token from
// /tmp/.kiln-end/token (and removes it), holding it in this function's
// closure as a Buffer: no global names it, its frames are strict (a
// CallSite gives no function of theirs), and a heap snapshot shows no
// Buffer's bytes. It writes the token to /tmp/.kiln-end/proof only after
// the program came back: a CommonJS program's main module returned (and
// compiled as a plain script: a `return` at its top level, which would
// end it early, means no proof), or an ES module's evaluation settled.
// process.exit(), an uncaught exception or a signal on the way: no proof.
// What could reach the closure from inside the process is refused:
// require('inspector'), 'worker_threads' (a worker's inspector session can
// pause this thread), 'v8' (heap snapshots).
(function kilnRun() {
  const fs = require('fs');
  const vm = require('vm');
  const Module = require('module');
  const { openSync, writeSync, closeSync } = fs;
  const file = process.argv[1];
  let token = null;
  try {
    token = fs.readFileSync('/tmp/.kiln-end/token');
    fs.unlinkSync('/tmp/.kiln-end/token');
  } catch (e) {
    token = null;
  }
  const refused = new Set(['inspector', 'inspector/promises', 'worker_threads', 'v8']);
  const load = Module._load;
  Module._load = function (request) {
    const name = String(request).replace(/^node:/, '');
    if (refused.has(name))
      throw new Error(`kiln: require('${request}') is refused in a run whose end is checked`);
    return load.apply(this, arguments);
  };
  const prove = () => {
    if (token === null)
      return;
    const fd = openSync('/tmp/.kiln-end/proof', 'wx', 0o600);
    writeSync(fd, token);
    closeSync(fd);
    token = null;
  };
  if (file.endsWith('.mjs')) {
    import('file://' + file).then(prove);
    return;
  }
  try {
    new vm.Script(fs.readFileSync(file, 'utf8'), { filename: file });
  } catch (e) {
    token = null; // not a plain script: its end cannot be told
  }
  Module.runMain(file);
  prove();
})();
