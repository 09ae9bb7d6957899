'use strict';
// Helpers shared by the ali-ons scripts driven by tests/tests/compat_nodejs.rs.

// ali-ons insists on an `httpclient`, used only to look name servers up at a
// vendor address; with `nameSrv` given it is never called.
const httpclient = {
  async request(url) {
    throw new Error(`httpclient stub: no HTTP lookups in tests (${url})`);
  },
};

function emit(fields) {
  process.stdout.write(JSON.stringify(fields) + '\n');
}

// --key value pairs; repeated keys collect into arrays; --flag without value = true.
function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    const next = argv[i + 1];
    const value = next === undefined || next.startsWith('--') ? true : (i++, next);
    if (key in out) {
      out[key] = [].concat(out[key], value);
    } else {
      out[key] = value;
    }
  }
  return out;
}

function list(v) {
  if (v === undefined) return [];
  return [].concat(v);
}

// Exit once stdout is flushed, whatever the client still has scheduled.
function exit(code) {
  process.stdout.write('', () => process.exit(code));
}

module.exports = { httpclient, emit, parseArgs, list, exit };
