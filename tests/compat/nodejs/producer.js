'use strict';
// Producer driven by tests/tests/compat_nodejs.rs through ali-ons (pure JS).
//
// Sends --count messages in each of --modes (sync: round robin; orderly: one
// sharding key, so one queue), cycling tags TagA/TagB/TagC and the user property
// color red/green/blue, with keys and the user properties compat_prop and idx.
// Prints one JSON line per send ({"event":"sent",...}), then {"event":"done"};
// failures print {"event":"error",...}. The test judges by these lines.

const crypto = require('crypto');
const { Producer, Message } = require('ali-ons');
const { httpclient, emit, parseArgs, exit } = require('./common');

const TAGS = [ 'TagA', 'TagB', 'TagC' ];
const COLORS = [ 'red', 'green', 'blue' ];

// ali-ons maps a sharding key to queue md5(key) % queues but skips the mapping
// when that is queue 0 (`if (queueId && ...)`): pick a key that maps elsewhere.
function shardingKey(queues) {
  for (let i = 0; ; i++) {
    const key = `order-${i}`;
    if (crypto.createHash('md5').update(key).digest().readUInt32BE() % queues !== 0) return key;
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const count = Number(args.count || 6);
  const modes = String(args.modes || 'sync,orderly').split(',');
  const producer = new Producer({
    nameSrv: args.namesrv,
    httpclient,
    producerGroup: args.group,
    // RocketMQ ACL: ali-ons signs every request when both are set.
    accessKey: args['access-key'],
    secretKey: args['secret-key'],
  });
  producer.on('error', err => emit({ event: 'client_error', error: String(err && err.message || err) }));
  await producer.ready();
  emit({ event: 'started', pid: process.pid });
  const t0 = Date.now();
  const key = shardingKey(Number(args.queues || 4));
  for (const mode of modes) {
    for (let i = 0; i < count; i++) {
      const body = `${args.run}-${mode}-${i}`;
      const tag = TAGS[i % TAGS.length];
      const keys = `key-${mode}-${i}`;
      const msg = new Message(args.topic, tag, body);
      msg.keys = [ keys ];
      msg.properties.compat_prop = `prop-${body}`;
      msg.properties.color = COLORS[i % COLORS.length];
      msg.properties.idx = String(i);
      if (mode === 'orderly') msg.shardingKey = key;
      try {
        const r = await producer.send(msg);
        emit({
          event: 'sent', mode, index: i, body, tag, keys, prop: `prop-${body}`, color: COLORS[i % COLORS.length],
          status: r.sendStatus, msg_id: r.msgId, queue_id: Number(r.messageQueue.queueId), offset: r.queueOffset,
          sharding_key: mode === 'orderly' ? key : null,
        });
      } catch (err) {
        emit({ event: 'error', mode, index: i, body, error: String(err && err.stack || err) });
      }
    }
  }
  emit({ event: 'done', seconds: (Date.now() - t0) / 1000 });
  try {
    await Promise.race([ producer.close(), new Promise(r => setTimeout(r, 5000)) ]);
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
