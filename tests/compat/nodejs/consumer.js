'use strict';
// Push consumer driven by tests/tests/compat_nodejs.rs through ali-ons.
//
// Subscribes --topic with --expr (--type TAG or SQL92), CLUSTERING unless
// --broadcast, and prints one JSON line per delivery ({"event":"received",...};
// deliveries failed on purpose with --fail-once BODY print "failed" and throw,
// which makes ali-ons send the message back with CONSUMER_SEND_MSG_BACK).
// Prints {"event":"started"} once subscribed, then {"event":"done"} once --expect
// deliveries succeeded and --linger seconds passed without another (so duplicates
// show), or {"event":"deadline"} after --deadline seconds.

const { Consumer } = require('ali-ons');
const { httpclient, emit, parseArgs, list, exit } = require('./common');

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const expect = Number(args.expect);
  // The last --deadline wins (the test may repeat it).
  const deadline = Number([].concat(args.deadline || 60).pop()) * 1000;
  const linger = Number(args.linger || 1.5) * 1000;
  const failOnce = new Set(list(args['fail-once']));
  const consumer = new Consumer({
    nameSrv: args.namesrv,
    httpclient,
    consumerGroup: args.group,
    // RocketMQ ACL: ali-ons signs every request when both are set.
    accessKey: args['access-key'],
    secretKey: args['secret-key'],
    isBroadcast: args.broadcast === true,
  });
  consumer.on('error', err => {
    const text = String(err && err.message || err);
    emit({ event: text.includes('on purpose') ? 'handler_error' : 'client_error', error: text });
  });
  await consumer.ready();

  let count = 0;
  let last = Date.now();
  const type = args.type || 'TAG';
  const expr = type === 'TAG' ? args.expr : { expressionType: type, subString: args.expr };
  consumer.subscribe(args.topic, expr, async msg => {
    const body = msg.body.toString();
    const failing = failOnce.has(body) && msg.reconsumeTimes === 0;
    emit({
      event: failing ? 'failed' : 'received',
      body,
      msg_id: msg.msgId,
      topic: msg.topic,
      tag: msg.tags || null,
      keys: msg.keys || null,
      prop: msg.properties.compat_prop || null,
      color: msg.properties.color || null,
      queue_id: msg.queueId,
      queue_offset: Number(msg.queueOffset),
      reconsume_times: msg.reconsumeTimes,
    });
    if (failing) throw new Error(`failing the first delivery of ${body} on purpose`);
    count++;
    last = Date.now();
  });
  emit({ event: 'started', pid: process.pid });

  const start = Date.now();
  let outcome = 'deadline';
  for (;;) {
    const now = Date.now();
    if (now - start > deadline) break;
    if (count >= expect && now - last >= linger) {
      outcome = 'done';
      break;
    }
    await new Promise(r => setTimeout(r, 100));
  }
  emit({ event: outcome, received: count, seconds: (Date.now() - start) / 1000 });
  try {
    await Promise.race([ consumer.close(), new Promise(r => setTimeout(r, 5000)) ]);
    emit({ event: 'shutdown' });
  } catch (err) {
    emit({ event: 'shutdown_error', error: String(err) });
  }
  exit(0);
}

main().catch(err => {
  emit({ event: 'error', error: String(err && err.stack || err) });
  exit(1);
});
