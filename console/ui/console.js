// FerroMQ Console: plain JavaScript, no framework, no build step.
//
// One page per `#hash` (cluster, topics, groups, messages). The visible page reloads
// its data from the JSON API every REFRESH_MS and redraws in place; charts keep
// their history in memory for as long as the tab is open. Text from the cluster is
// only ever set as textContent, never parsed as HTML.
'use strict';

(() => {
  const REFRESH_MS = 3000;
  const HISTORY = 100; // points per chart series
  const PALETTE = ['#b7410e', '#2b5797', '#1f7a3a', '#8e44ad', '#c0392b', '#16a085', '#d4a017', '#34495e'];

  const $ = (id) => document.getElementById(id);

  // ---- helpers ----

  /** Calls the API; resolves to the JSON answer, rejects with its `error` text. */
  async function api(method, path, body) {
    const init = { method, headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      // not JSON: reported below by status
    }
    if (!resp.ok) {
      throw new Error(data && data.error ? data.error : `${method} ${path}: HTTP ${resp.status}`);
    }
    return data;
  }

  /** Builds an element: `el('td', {className: 'num'}, 'text', child, ...)`. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const td = (text, className) => el('td', { className: className || '' }, text);
  const num = (v) => (v === null || v === undefined ? '-' : Number(v).toLocaleString('en-US'));
  const rate = (v) => (v === null || v === undefined ? '-' : v.toFixed(1));
  const pct = (v) => (v === null || v === undefined ? '-' : `${(v * 100).toFixed(1)} %`);
  const enc = encodeURIComponent;

  function time(ms) {
    if (!ms || ms <= 0) return '-';
    const d = new Date(ms);
    const p = (n, w = 2) => String(n).padStart(w, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  /** The time of day to the ms (`HH:MM:SS.mmm`), for events a few ms apart. */
  function clock(ms) {
    if (!ms || ms <= 0) return '-';
    const d = new Date(ms);
    const p = (n, w = 2) => String(n).padStart(w, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  /** Parses what a person types as a time: `now`, ms since the epoch, or local `YYYY-MM-DD HH:MM[:SS]`. */
  function parseTime(text) {
    const t = text.trim();
    if (t === 'now') return Date.now();
    if (/^\d+$/.test(t)) return Number(t);
    const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(t);
    if (!m) return null;
    const d = new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    return Number.isNaN(d.getTime()) ? null : d.getTime();
  }

  function fill(tbody, rows, columns, emptyText) {
    tbody.replaceChildren(...rows);
    if (rows.length === 0) {
      tbody.append(el('tr', {}, el('td', { className: 'empty', colSpan: columns }, emptyText)));
    }
  }

  function kvRows(tbody, pairs) {
    tbody.replaceChildren(...pairs.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', { className: 'mono' }, v))));
  }

  function say(node, text, ok) {
    node.textContent = text;
    node.className = `result ${ok ? 'ok' : 'bad'}`;
  }

  function banner(err) {
    const b = $('error');
    if (err) {
      b.textContent = err.message || String(err);
      b.hidden = false;
    } else {
      b.hidden = true;
    }
  }

  /** Runs `work` with `button` disabled, reporting a failure into `out`. */
  async function busy(button, out, work) {
    button.disabled = true;
    try {
      await work();
    } catch (e) {
      say(out, e.message, false);
    } finally {
      button.disabled = false;
    }
  }

  // ---- line chart ----

  /** Time series drawn on a canvas; `add` appends a reading, `draw` redraws all. */
  class Chart {
    constructor(canvas, legend, unit) {
      this.canvas = canvas;
      this.legend = legend;
      this.unit = unit;
      this.series = new Map(); // name -> {color, dashed, points: [[t, v]]}
      this.colorCount = 0;
    }

    add(name, value, t, dashed) {
      if (value === null || value === undefined) return;
      let s = this.series.get(name);
      if (!s) {
        const base = name.replace(/^(put|get) /, '');
        const known = [...this.series.entries()].find(([n]) => n.replace(/^(put|get) /, '') === base);
        const color = known ? known[1].color : PALETTE[this.colorCount++ % PALETTE.length];
        s = { color, dashed: !!dashed, points: [] };
        this.series.set(name, s);
      }
      s.points.push([t, value]);
      if (s.points.length > HISTORY) s.points.shift();
    }

    /** Drops series not in `names` (a broker or group that went away). */
    keep(names) {
      for (const n of [...this.series.keys()]) if (!names.has(n)) this.series.delete(n);
    }

    draw() {
      const c = this.canvas;
      const dpr = window.devicePixelRatio || 1;
      const w = c.clientWidth || c.width;
      const h = c.clientHeight || c.height;
      if (c.width !== Math.round(w * dpr)) c.width = Math.round(w * dpr);
      if (c.height !== Math.round(h * dpr)) c.height = Math.round(h * dpr);
      const g = c.getContext('2d');
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      const pad = { l: 56, r: 12, t: 12, b: 24 };
      const all = [...this.series.values()].flatMap((s) => s.points);
      c.dataset.points = String(all.length);
      g.font = '11px system-ui, sans-serif';
      g.fillStyle = '#67707c';
      if (all.length === 0) {
        g.fillText('waiting for readings…', pad.l, h / 2);
        this.renderLegend();
        return;
      }
      const now = Date.now();
      const t0 = Math.min(...all.map((p) => p[0]), now - 60000);
      const vmax = niceMax(Math.max(...all.map((p) => p[1]), 1));
      const x = (t) => pad.l + ((t - t0) / Math.max(now - t0, 1)) * (w - pad.l - pad.r);
      const y = (v) => h - pad.b - (v / vmax) * (h - pad.t - pad.b);
      // grid and labels
      g.strokeStyle = '#e6e9ed';
      g.lineWidth = 1;
      for (let i = 0; i <= 4; i++) {
        const v = (vmax * i) / 4;
        g.beginPath();
        g.moveTo(pad.l, y(v));
        g.lineTo(w - pad.r, y(v));
        g.stroke();
        g.fillText(shortNum(v), 6, y(v) + 4);
      }
      g.fillText(time(t0).slice(11), pad.l, h - 6);
      g.fillText(time(now).slice(11), w - pad.r - 48, h - 6);
      g.fillText(this.unit, w - pad.r - 120, pad.t + 10);
      // lines
      for (const s of this.series.values()) {
        g.strokeStyle = s.color;
        g.lineWidth = 2;
        g.setLineDash(s.dashed ? [6, 4] : []);
        g.beginPath();
        s.points.forEach(([t, v], i) => (i === 0 ? g.moveTo(x(t), y(v)) : g.lineTo(x(t), y(v))));
        if (s.points.length === 1) g.arc(x(s.points[0][0]), y(s.points[0][1]), 2, 0, 2 * Math.PI);
        g.stroke();
      }
      g.setLineDash([]);
      this.renderLegend();
    }

    renderLegend() {
      this.legend.replaceChildren(
        ...[...this.series.entries()].map(([name, s]) => {
          const sw = el('span', { className: s.dashed ? 'swatch dashed' : 'swatch' });
          sw.style.background = s.color;
          sw.style.borderColor = s.color;
          const last = s.points.length ? s.points[s.points.length - 1][1] : null;
          return el('span', {}, sw, `${name}: ${last === null ? '-' : shortNum(last)}`);
        }),
      );
    }
  }

  function niceMax(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function shortNum(v) {
    if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
    if (v >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
    return String(Number(v.toFixed(v < 10 ? 2 : 1)));
  }

  // ---- pages ----

  const state = {
    clusters: [],
    topic: null, // selected topic
    group: null, // selected group
    client: null, // consumer client whose running info shows
    producerQuery: null, // {group, topic} shown on the producers page
    groupTopics: [],
    firstCluster: true,
    traceMsgId: null, // message whose trace shows on the messages page
  };

  const tpsChart = new Chart($('tps-chart'), $('tps-legend'), 'messages / s');
  const lagChart = new Chart($('lag-chart'), $('lag-legend'), 'messages behind');

  const cluster = {
    async refresh() {
      const data = await api('GET', '/api/cluster');
      $('namesrv').textContent = data.namesrv.length ? `name server ${data.namesrv.join(', ')}` : '';
      state.clusters = [...new Set(data.brokers.map((b) => b.cluster))];
      const now = Date.now();
      const names = new Set();
      const rows = data.brokers.map((b) => {
        tpsChart.add(`put ${b.addr}`, b.putTps, now, false);
        tpsChart.add(`get ${b.addr}`, b.getTps, now, true);
        names.add(`put ${b.addr}`).add(`get ${b.addr}`);
        const role = el('span', { className: `pill ${b.brokerId === 0 ? 'master' : 'slave'}` }, b.role);
        const tr = el(
          'tr',
          { title: b.error || 'show runtime' },
          td(b.cluster), td(b.brokerName), td(b.brokerId, 'num'), td(b.addr, 'mono'), el('td', {}, role),
          b.error ? td(b.error, 'bad') : td(b.version || '-'),
          td(rate(b.putTps), 'num'), td(rate(b.getTps), 'num'),
          td(num(b.putToday), 'num'), td(num(b.getToday), 'num'), td(pct(b.diskRatio), 'num'),
        );
        tr.dataset.addr = b.addr;
        tr.addEventListener('click', () => showRuntime(b.addr));
        return tr;
      });
      tpsChart.keep(names);
      fill($('cluster-rows'), rows, 11, 'no broker registered');
      if (state.firstCluster && rows.length > 0 && data.brokers.length > 0) {
        state.firstCluster = false;
        // When the page first showed brokers (read by tests and by anyone timing the console).
        performance.mark('cluster-rendered');
      }
      tpsChart.draw();
      if (!$('broker-detail').hidden) await showRuntime($('broker-detail-addr').textContent, true);
    },
  };

  async function showRuntime(addr, quiet) {
    try {
      const data = await api('GET', `/api/brokers/${enc(addr)}/runtime`);
      $('broker-detail-addr').textContent = addr;
      kvRows($('broker-runtime').tBodies[0], Object.entries(data.table));
      $('broker-detail').hidden = false;
    } catch (e) {
      if (!quiet) banner(e);
    }
  }

  const topics = {
    async enter() {
      if (state.clusters.length === 0) {
        try {
          const data = await api('GET', '/api/cluster');
          state.clusters = [...new Set(data.brokers.map((b) => b.cluster))];
        } catch (_) {
          // the list below reports the failure
        }
      }
      const sel = $('topic-cluster');
      const chosen = sel.value;
      sel.replaceChildren(el('option', { value: '' }, 'every cluster'), ...state.clusters.map((c) => el('option', { value: c }, c)));
      sel.value = chosen;
    },
    async refresh() {
      const data = await api('GET', '/api/topics');
      const filter = $('topic-filter').value.trim().toLowerCase();
      const all = $('topic-show-system').checked;
      $('topic-names').replaceChildren(...data.topics.filter((t) => t.kind === 'normal').map((t) => el('option', { value: t.name })));
      const rows = data.topics
        .filter((t) => (all || t.kind === 'normal') && t.name.toLowerCase().includes(filter))
        .map((t) => {
          const tr = el('tr', {}, td(t.name, 'mono'), td(t.kind));
          tr.dataset.topic = t.name;
          if (t.name === state.topic) tr.classList.add('selected');
          tr.addEventListener('click', () => selectTopic(t.name));
          return tr;
        });
      fill($('topic-rows'), rows, 2, 'no topic');
      if (state.topic) await loadTopic(state.topic);
    },
  };

  async function selectTopic(name) {
    state.topic = name;
    $('topic-detail-name').textContent = name;
    $('topic-detail').hidden = false;
    $('topic-delete-confirm').hidden = true;
    $('topic-detail-result').textContent = '';
    $('send-result').textContent = '';
    for (const tr of $('topic-rows').rows) tr.classList.toggle('selected', tr.dataset.topic === name);
    try {
      await loadTopic(name);
    } catch (e) {
      say($('topic-detail-result'), e.message, false);
    }
  }

  async function loadTopic(name) {
    const [status, route] = await Promise.all([
      api('GET', `/api/topics/${enc(name)}/status`),
      api('GET', `/api/topics/${enc(name)}/route`),
    ]);
    if (state.topic !== name) return;
    $('topic-total').textContent = `${num(status.total)} messages stored`;
    fill(
      $('topic-status').tBodies[0],
      status.queues.map((q) => el('tr', {}, td(q.brokerName), td(q.queueId, 'num'), td(num(q.minOffset), 'num'),
        td(num(q.maxOffset), 'num'), td(time(q.lastUpdateTimestamp)))),
      5, 'no queue',
    );
    const addrs = new Map(route.brokerDatas.map((b) => [b.brokerName, Object.entries(b.brokerAddrs).map(([id, a]) => `${id}: ${a}`).join(', ')]));
    fill(
      $('topic-route').tBodies[0],
      route.queueDatas.map((q) => el('tr', {}, td(q.brokerName), td(addrs.get(q.brokerName) || '-', 'mono'),
        td(q.readQueueNums, 'num'), td(q.writeQueueNums, 'num'), td(perm(q.perm)))),
      5, 'no route',
    );
  }

  function perm(p) {
    return `${p & 4 ? 'R' : '-'}${p & 2 ? 'W' : '-'}${p & 1 ? 'X' : '-'}`;
  }

  $('topic-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const out = $('topic-form-result');
    busy($('topic-create'), out, async () => {
      const body = { topic: $('topic-name').value.trim(), queues: Number($('topic-queues').value) };
      if ($('topic-cluster').value) body.cluster = $('topic-cluster').value;
      const r = await api('POST', '/api/topics', body);
      say(out, `topic ${r.topic} created or updated with ${r.queues} queues`, true);
      await selectTopic(r.topic).catch(() => {});
      await topics.refresh().catch(() => {});
    });
  });

  $('topic-delete').addEventListener('click', () => {
    $('topic-delete-confirm').hidden = false;
  });
  $('topic-delete-confirm').addEventListener('click', () => {
    const out = $('topic-detail-result');
    busy($('topic-delete-confirm'), out, async () => {
      const r = await api('DELETE', `/api/topics/${enc(state.topic)}`);
      state.topic = null;
      $('topic-detail').hidden = true;
      say($('topic-form-result'), `topic ${r.topic} deleted from ${r.brokers.join(', ')}`, true);
      await topics.refresh();
    });
  });

  $('send-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const out = $('send-result');
    busy($('send-submit'), out, async () => {
      const body = { body: $('send-body').value };
      if ($('send-tags').value.trim()) body.tags = $('send-tags').value.trim();
      if ($('send-keys').value.trim()) body.keys = $('send-keys').value.trim();
      const topic = state.topic;
      const r = await api('POST', `/api/topics/${enc(topic)}/messages`, body);
      const link = el('a', { href: '#messages', id: 'send-msgid', className: 'mono' }, r.msgId);
      link.addEventListener('click', () => {
        $('msgid-topic').value = topic;
        $('msgid-value').value = r.msgId;
        setTimeout(() => showMessage(topic, r.msgId, $('msgid-result')), 0);
      });
      out.replaceChildren(`${r.status}: `, link, ` on ${r.brokerName} queue ${r.queueId} at offset ${r.queueOffset}`);
      out.className = 'result ok';
      await loadTopic(topic).catch(() => {});
    });
  });

  const groups = {
    async refresh() {
      const data = await api('GET', '/api/groups');
      const filter = $('group-filter').value.trim().toLowerCase();
      const all = $('group-show-system').checked;
      const now = Date.now();
      const names = new Set();
      for (const g of data.groups) {
        if (!g.system && g.topics.length > 0) {
          lagChart.add(g.group, g.lag, now, false);
          names.add(g.group);
        }
      }
      lagChart.keep(names);
      const rows = data.groups
        .filter((g) => (all || !g.system) && g.group.toLowerCase().includes(filter))
        .map((g) => {
          const tr = el('tr', {}, td(g.group, 'mono'), td(g.topics.join(', ')), td(num(g.lag), 'num lag'));
          tr.dataset.group = g.group;
          if (g.group === state.group) tr.classList.add('selected');
          tr.addEventListener('click', () => selectGroup(g.group, g.topics));
          return tr;
        });
      fill($('group-rows'), rows, 3, 'no consumer group');
      lagChart.draw();
      if (state.group) await loadGroup(state.group);
      return data.brokerErrors.length ? new Error(data.brokerErrors.map((e) => e.error).join('\n')) : null;
    },
  };

  async function selectGroup(name, topicsOfGroup) {
    if (state.group !== name) {
      state.client = null;
      $('running-info').hidden = true;
    }
    state.group = name;
    state.groupTopics = topicsOfGroup;
    $('group-detail-name').textContent = name;
    $('group-detail').hidden = false;
    $('reset-result').textContent = '';
    if (!$('reset-time').value) $('reset-time').value = time(Date.now() - 3600 * 1000);
    const sel = $('reset-topic');
    sel.replaceChildren(...topicsOfGroup.filter((t) => !t.startsWith('%RETRY%')).map((t) => el('option', { value: t }, t)));
    for (const tr of $('group-rows').rows) tr.classList.toggle('selected', tr.dataset.group === name);
    try {
      await loadGroup(name);
    } catch (e) {
      say($('reset-result'), e.message, false);
    }
  }

  async function loadGroup(name) {
    const p = await api('GET', `/api/groups/${enc(name)}/progress`);
    if (state.group !== name) return;
    $('group-lag-total').textContent = String(p.lag);
    const links = p.clients.map((id) => {
      const a = el('a', { href: '#groups', className: 'client mono' }, id);
      a.dataset.client = id;
      if (id === state.client) a.classList.add('selected');
      a.addEventListener('click', (ev) => {
        ev.preventDefault();
        showRunning(name, id);
      });
      return a;
    });
    const clients = $('group-clients');
    clients.replaceChildren();
    links.forEach((a, i) => clients.append(...(i ? [', ', a] : [a])));
    if (links.length === 0) clients.textContent = 'none';
    fill(
      $('group-progress').tBodies[0],
      p.queues.map((q) => el('tr', {}, td(q.topic, 'mono'), td(q.brokerName), td(q.queueId, 'num'), td(num(q.brokerOffset), 'num'),
        td(num(q.consumerOffset), 'num'), td(num(q.lag), 'num'), td(time(q.lastTimestamp)))),
      7, 'no committed offset',
    );
    if (state.client) await showRunning(name, state.client, true);
  }

  /** The running info of consumer `clientId` of `group`, asked through a broker. */
  async function showRunning(group, clientId, quiet) {
    const out = $('running-result');
    state.client = clientId;
    $('running-client').textContent = clientId;
    $('running-info').hidden = false;
    for (const a of $('group-clients').querySelectorAll('a.client')) a.classList.toggle('selected', a.dataset.client === clientId);
    try {
      const r = await api('GET', `/api/groups/${enc(group)}/clients/${enc(clientId)}`);
      if (state.group !== group || state.client !== clientId) return;
      $('running-addr').textContent = `through ${r.addr}`;
      fill(
        $('running-subscriptions').tBodies[0],
        r.subscriptions.map((s) => el('tr', {}, td(s.topic, 'mono'), td(s.subString, 'mono'), td(s.expressionType))),
        3, 'no subscription',
      );
      fill(
        $('running-queues').tBodies[0],
        r.queues.map((q) => {
          const tr = el('tr', {}, td(q.topic, 'mono'), td(q.brokerName), td(q.queueId, 'num'), td(num(q.commitOffset), 'num'),
            td(num(q.cachedMsgCount), 'num'), td(q.locked === null ? '-' : String(q.locked)),
            td(time(q.lastPullTimestamp)), td(time(q.lastConsumeTimestamp)));
          tr.dataset.queue = `${q.topic}@${q.brokerName}@${q.queueId}`;
          return tr;
        }),
        8, 'no queue held',
      );
      kvRows($('running-properties').tBodies[0], Object.entries(r.properties));
      say(out, '', true);
    } catch (e) {
      if (state.client === clientId) say(out, e.message, false);
      if (!quiet) throw e;
    }
  }

  $('reset-hour').addEventListener('click', () => {
    $('reset-time').value = time(Date.now() - 3600 * 1000);
  });

  $('reset-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const out = $('reset-result');
    busy($('reset-submit'), out, async () => {
      const at = parseTime($('reset-time').value);
      if (at === null) throw new Error('time: write YYYY-MM-DD HH:MM:SS, ms since the epoch, or now');
      const topic = $('reset-topic').value;
      if (!topic) throw new Error('pick a topic of the group');
      const r = await api('POST', `/api/groups/${enc(state.group)}/reset`, { topic, timestamp: at });
      say(out, `reset ${r.offsets.length} queues of ${r.topic} to ${time(r.timestamp)}: ${r.offsets.map((o) => `${o.brokerName}/${o.queueId}→${o.offset}`).join(', ')}`, true);
      await loadGroup(state.group);
    });
  });

  /** The topic list feeds the topic inputs' suggestions. */
  async function suggestTopics() {
    try {
      const data = await api('GET', '/api/topics');
      $('topic-names').replaceChildren(...data.topics.filter((t) => t.kind === 'normal').map((t) => el('option', { value: t.name })));
    } catch (_) {
      // suggestions only
    }
  }

  const messages = {
    async enter() {
      if (!$('range-begin').value) $('range-begin').value = time(Date.now() - 3600 * 1000);
      await suggestTopics();
    },
    // Clients write trace records on their own schedule: the shown message's trace
    // fills in as they arrive.
    async refresh() {
      if (state.traceMsgId) await loadTrace(state.traceMsgId);
    },
  };

  const producers = {
    enter: suggestTopics,
    async refresh() {
      const q = state.producerQuery;
      if (!q) return;
      const out = $('producer-result');
      let r;
      try {
        r = await api('GET', `/api/producers?group=${enc(q.group)}&topic=${enc(q.topic)}`);
      } catch (e) {
        if (state.producerQuery === q) {
          fill($('producer-rows'), [], 5, 'no producer connected');
          say(out, e.message, false);
        }
        return;
      }
      if (state.producerQuery !== q) return;
      const rows = r.connections.map((p) => {
        const tr = el('tr', {}, td(p.clientId, 'mono'), td(p.clientAddr, 'mono'), td(p.language), td(p.version, 'num'), td(p.broker, 'mono'));
        tr.dataset.client = p.clientId;
        return tr;
      });
      fill($('producer-rows'), rows, 5, 'no producer connected');
      say(out, `${r.connections.length} connection(s) of group ${r.group} on the brokers of ${r.topic}`, true);
      return r.brokerErrors.length ? new Error(r.brokerErrors.map((e) => e.error).join('\n')) : null;
    },
  };

  $('producer-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const out = $('producer-result');
    busy($('producer-search'), out, async () => {
      state.producerQuery = { group: $('producer-group').value.trim(), topic: $('producer-topic').value.trim() };
      banner(await producers.refresh());
    });
  });

  const PLUGIN_COLUMNS = 18;
  const PLUGIN_DONE = { reload: 'reloaded', rollback: 'rolled back' };

  /** Asks every broker that lists plugin `name` to `what` it (reload, rollback), then redraws the table. */
  async function changePlugin(button, name, what) {
    const out = $('plugin-result');
    await busy(button, out, async () => {
      const r = await api('POST', `/api/plugins/${enc(name)}/${what}`);
      const where = r.results.map((x) => `${x.brokerName} ${x.addr}: generation ${x.generation}, sha256 ${(x.sha256 || '').slice(0, 12)}`);
      say(out, `${name} ${PLUGIN_DONE[what]} on ${where.join('; ')}`, true);
    });
    if (current !== 'plugins') return;
    try {
      banner(await plugins.refresh());
    } catch (e) {
      banner(e);
    }
  }

  function pluginButton(label, className, name, what) {
    const button = el('button', { type: 'button', className }, label);
    button.addEventListener('click', () => changePlugin(button, name, what));
    return button;
  }

  const plugins = {
    async refresh() {
      const data = await api('GET', '/api/plugins');
      const rows = [];
      const failed = [];
      for (const b of data.brokers) {
        if (b.error) failed.push(b.error);
        for (const p of b.plugins) {
          const sha = p.sha256 || '';
          const actions = el('td', { className: 'actions' }, pluginButton('Reload', 'reload', p.name, 'reload'),
            p.rollbackAvailable ? pluginButton('Rollback', 'rollback', p.name, 'rollback') : null);
          const tr = el(
            'tr', {},
            td(`${b.brokerName} ${b.addr}`, 'mono'), td(p.name, 'mono'), td(p.state), td(p.kind), td(p.runtime),
            td(p.source || '-', 'source'), td(p.version || '-', 'mono'),
            el('td', { className: 'mono', title: sha }, sha ? sha.slice(0, 12) : '-'),
            td(num(p.generation), 'num generation'), td(p.bindings.length ? p.bindings.join(', ') : '-', 'mono'),
            td(p.breaker || '-'), td(num(p.calls), 'num calls'), td(num(p.errors), 'num'), td(num(p.timeouts), 'num'),
            td(num(p.fallbacks), 'num'), el('td', { className: 'num', title: `p50 ${num(p.p50Micros)} µs` }, num(p.p99Micros)),
            p.lastError ? td(p.lastError, 'bad') : td('-'), actions,
          );
          tr.dataset.plugin = p.name;
          tr.dataset.addr = b.addr;
          if (p.lastReloadError) tr.title = `last reload failed: ${p.lastReloadError}`;
          rows.push(tr);
        }
      }
      fill($('plugin-rows'), rows, PLUGIN_COLUMNS, 'no plugin declared');
      return failed.length ? new Error(failed.join('\n')) : null;
    },
  };

  $('search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const out = $('msg-search-result');
    busy($('msg-search'), out, async () => {
      const topic = $('msg-topic').value.trim();
      const key = $('msg-key').value.trim();
      const r = await api('GET', `/api/messages?topic=${enc(topic)}&key=${enc(key)}`);
      listMessages(topic, r.messages, out, 'no message with this key');
      say(out, `${r.messages.length} message(s) with key ${key} in ${topic}`, true);
    });
  });

  /** Fills the result table; a row's click shows the message in `topic`. */
  function listMessages(topic, list, out, emptyText) {
    const rows = list.map((m) => {
      const tr = el('tr', {}, td(m.msgId, 'mono'), td(m.tags || '-'), td(m.keys || '-'), td(m.queueId, 'num'), td(time(m.storeTimestamp)));
      tr.dataset.msgid = m.msgId;
      tr.addEventListener('click', () => showMessage(topic, m.msgId, out).catch(() => {}));
      return tr;
    });
    fill($('msg-results').tBodies[0], rows, 5, emptyText);
  }

  $('range-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const out = $('range-result');
    busy($('range-search'), out, async () => {
      const topic = $('range-topic').value.trim();
      const begin = $('range-begin').value.trim() ? parseTime($('range-begin').value) : 0;
      const end = $('range-end').value.trim() ? parseTime($('range-end').value) : Date.now();
      if (begin === null || end === null) throw new Error('time: write YYYY-MM-DD HH:MM:SS, ms since the epoch, or now');
      const r = await api('GET', `/api/topics/${enc(topic)}/messages?begin=${begin}&end=${end}`);
      listMessages(topic, r.messages, out, 'no message stored in this time range');
      const more = r.truncated ? ' (the first ones; narrow the range for the rest)' : '';
      say(out, `${r.messages.length} message(s) of ${topic} stored from ${time(r.begin)} to ${time(r.end)}${more}`, true);
    });
  });

  $('msg-resend').addEventListener('click', () => {
    const out = $('msg-resend-result');
    busy($('msg-resend'), out, async () => {
      const r = await api('POST', `/api/messages/${enc($('msg-resend').dataset.offsetMsgId)}/resend`);
      out.replaceChildren(`${r.status}: `, el('span', { id: 'resend-msgid', className: 'mono' }, r.msgId),
        ` sent to ${r.topic} on ${r.brokerName} queue ${r.queueId} at offset ${r.queueOffset}`);
      out.className = 'result ok';
    });
  });

  $('msgid-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const out = $('msgid-result');
    busy($('msgid-search'), out, () => showMessage($('msgid-topic').value.trim(), $('msgid-value').value.trim(), out));
  });

  async function showMessage(topic, msgId, out) {
    try {
      const q = topic ? `?topic=${enc(topic)}` : '';
      const m = await api('GET', `/api/messages/${enc(msgId)}${q}`);
      $('msg-detail-id').textContent = m.msgId;
      kvRows($('msg-fields').tBodies[0], [
        ['Topic', m.topic], ['Tags', m.tags || '-'], ['Keys', m.keys || '-'],
        ['Queue', `${m.queueId} at offset ${m.queueOffset}`], ['Offset message id', m.offsetMsgId],
        ['Born', `${time(m.bornTimestamp)} from ${m.bornHost}`], ['Stored', `${time(m.storeTimestamp)} on ${m.storeHost}`],
        ['Size', `${m.bodySize} bytes of body, ${m.storeSize} stored`], ['Reconsumed', String(m.reconsumeTimes)],
      ]);
      $('msg-body').textContent = m.bodyEncoding === 'base64' ? `(base64) ${m.body}` : m.body;
      kvRows($('msg-properties').tBodies[0], Object.entries(m.properties));
      const origin = m.topic.startsWith('%DLQ%') ? m.properties.RETRY_TOPIC : null;
      $('msg-dlq').hidden = !origin;
      $('msg-origin').textContent = origin || '';
      $('msg-resend').dataset.offsetMsgId = m.offsetMsgId;
      $('msg-resend-result').textContent = '';
      $('msg-detail').hidden = false;
      for (const tr of $('msg-results').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.msgid === msgId);
      if (out) say(out, '', true);
      if (state.traceMsgId !== m.msgId) {
        state.traceMsgId = m.msgId;
        $('trace-rows').replaceChildren();
        say($('msg-trace-result'), '', true);
      }
      await loadTrace(m.msgId);
    } catch (e) {
      if (out) say(out, e.message, false);
      throw e;
    }
  }

  const TRACE_TYPES = { Pub: 'Send', EndTransaction: 'End transaction', SubBefore: 'Delivered', SubAfter: 'Consumed' };

  /** One trace record as a row; `data-type` and `data-group` say what it is. */
  function traceRow(r) {
    const details = [
      `from ${r.host}`, r.topic ? `topic ${r.topic}` : null, r.tags ? `tags ${r.tags}` : null, r.keys ? `keys ${r.keys}` : null,
      r.storeHost ? `stored on ${r.storeHost}` : null, r.retryTimes ? `retry ${r.retryTimes}` : null,
      r.transactionId ? `transaction ${r.transactionId}${r.fromCheck ? ' (check-back)' : ''}` : null,
    ].filter((d) => d !== null);
    const tr = el('tr', {},
      el('td', { title: TRACE_TYPES[r.type] || '' }, r.type), td(r.group || '-', 'mono'),
      el('td', { className: 'when', title: time(r.timestamp) }, clock(r.timestamp)),
      td(r.costMs === null ? '-' : `${r.costMs} ms`, 'num when'),
      r.success === false ? td(r.status, 'bad') : td(r.status), td(details.join(' · ') || '-', 'details'));
    tr.dataset.type = r.type;
    if (r.group) tr.dataset.group = r.group;
    return tr;
  }

  /** Shows `msgId`'s trace: its sends and transaction ends, then each consumer group's deliveries. */
  async function loadTrace(msgId) {
    const out = $('msg-trace-result');
    let r;
    try {
      r = await api('GET', `/api/messages/${enc(msgId)}/trace`);
    } catch (e) {
      if (state.traceMsgId === msgId) say(out, `trace: ${e.message}`, false);
      return;
    }
    if (state.traceMsgId !== msgId) return;
    const producing = r.records.filter((t) => t.type === 'Pub' || t.type === 'EndTransaction');
    const byGroup = new Map();
    for (const t of r.records) {
      if (t.type !== 'SubBefore' && t.type !== 'SubAfter') continue;
      const g = t.group || '-';
      if (!byGroup.has(g)) byGroup.set(g, []);
      byGroup.get(g).push(t);
    }
    const rows = producing.map(traceRow);
    for (const g of [...byGroup.keys()].sort()) {
      rows.push(el('tr', { className: 'trace-group' }, el('th', { colSpan: 6 }, `Consumer group ${g}`)));
      rows.push(...byGroup.get(g).map(traceRow));
    }
    fill($('trace-rows'), rows, 6,
      'no trace records found: message trace is off (traceTopicEnable and the clients\' enableMsgTrace), or not written yet');
    say(out, r.records.length ? `${r.records.length} trace record(s)` : '', true);
  }

  // ---- navigation and refresh ----

  const pages = { cluster, topics, groups, messages, producers, plugins };
  let current = null;
  let timer = null;
  let generation = 0;

  async function tick(gen) {
    const page = pages[current];
    if (page.refresh) {
      try {
        // A refresh may answer with a warning (a broker that failed) for the banner.
        const warning = await page.refresh();
        if (gen === generation) banner(warning || null);
      } catch (e) {
        if (gen === generation) banner(e);
      }
    }
    if (gen === generation && page.refresh) timer = setTimeout(() => tick(gen), REFRESH_MS);
  }

  async function route() {
    const name = location.hash.replace('#', '') || 'cluster';
    const next = pages[name] ? name : 'cluster';
    clearTimeout(timer);
    generation += 1;
    current = next;
    for (const key of Object.keys(pages)) {
      $(`page-${key}`).hidden = key !== next;
      $(`nav-${key}`).classList.toggle('active', key === next);
    }
    banner(null);
    if (pages[next].enter) await pages[next].enter();
    await tick(generation);
  }

  window.addEventListener('hashchange', route);
  window.addEventListener('resize', () => {
    tpsChart.draw();
    lagChart.draw();
  });
  route();
})();
