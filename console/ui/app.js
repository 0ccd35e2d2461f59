// Tusk console: a single page that reads /api/v1/ and refreshes itself.
// Every name from the API enters the page as a text node (el() appends
// strings with append(), attributes with setAttribute), never as markup.
'use strict';

const REFRESH_MS = 2000;
const PALETTE = ['#2563eb', '#d97706', '#059669', '#9333ea', '#dc2626', '#0891b2', '#65a30d', '#db2777', '#4b5563', '#7c3aed'];

function nodeColour(id) { return id < 0 ? '#9ca3af' : PALETTE[id % PALETTE.length]; }

// el builds an element: attrs are set with setAttribute (class via
// className), children are nodes or strings (appended as text).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function bytes(n) {
  if (n === undefined || n === null || n < 0) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + u[i];
}

function off(n) { return n === undefined || n === null || n < 0 ? '–' : String(n); }

function nodeBadge(id) {
  return el('span', { class: 'node', 'data-node': id },
    el('span', { class: 'swatch' }, ''), id < 0 ? 'none' : 'node ' + id);
}

function colourSwatches(root) {
  for (const s of root.querySelectorAll('.node')) {
    s.querySelector('.swatch').style.background = nodeColour(Number(s.getAttribute('data-node')));
  }
}

function link(hash, text) { return el('a', { href: hash }, text); }

function topicHash(name) { return '#/topics/' + encodeURIComponent(name); }
function partitionHash(name, p) { return topicHash(name) + '/' + p; }
function groupHash(id) { return '#/groups/' + encodeURIComponent(id); }

function table(headers, rows, attrs) {
  return el('table', attrs || {},
    el('thead', {}, el('tr', {}, headers.map(h => typeof h === 'string' ? el('th', {}, h) : el('th', h[1], h[0])))),
    el('tbody', {}, rows));
}

function kv(pairs) {
  return el('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const r = await fetch('/api/v1/' + path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  let body;
  try { body = await r.json(); } catch (e) { throw new APIError(r.status, 'HTTP ' + r.status + ' from /api/v1/' + path); }
  if (!r.ok) throw new APIError(r.status, (body && body.error) || ('HTTP ' + r.status));
  return body;
}

// ---- pages: each returns the page's root element ----

async function clusterPage() {
  const c = await api('cluster');
  const rows = c.nodes.map(n => el('tr', { 'data-node-id': n.id },
    el('td', {}, nodeBadge(n.id), n.controller ? [' ', el('span', { class: 'badge ctrl' }, 'controller')] : null),
    el('td', {}, n.rack || '–'),
    el('td', {}, el('span', { class: 'badge ' + (n.state === 'alive' ? 'ok' : 'bad') }, n.state)),
    el('td', { class: 'lease' }, n.lease ? el('span', { class: 'badge ' + (n.lease.valid ? 'ok' : 'bad') },
      n.lease.valid ? 'valid, ' + (n.lease.remaining_ms / 1000).toFixed(1) + ' s left' : 'expired') : '–'),
    el('td', { class: 'num' }, n.leads),
    el('td', { class: 'num' }, n.replicas),
    el('td', { class: 'num disk' }, n.error ? '–' : bytes(n.disk_bytes)),
    el('td', {}, n.version || '–'),
    el('td', {}, n.kafka),
    el('td', { class: 'error-cell' }, n.error || '')));
  return el('section', { id: 'page-cluster' },
    el('h1', {}, 'Cluster'),
    kv([['cluster id', c.cluster_id || '–'], ['controller', c.controller < 0 ? 'none elected' : nodeBadge(c.controller)],
      ['served by', nodeBadge(c.served_by)], ['nodes', String(c.nodes.length)]]),
    table(['node', 'rack', 'state', 'lease', ['leads', { class: 'num' }], ['replicas', { class: 'num' }], ['disk', { class: 'num' }],
      'version', 'kafka', ''], rows, { id: 'nodes' }),
    el('p', { class: 'muted' }, 'leads: partitions whose active segment the node leads; replicas: active segments it holds.'));
}

async function topicsPage() {
  const ts = await api('topics');
  const rows = ts.map(t => el('tr', { 'data-topic': t.name },
    el('td', {}, link(topicHash(t.name), t.name), t.internal ? [' ', el('span', { class: 'badge' }, 'internal')] : null),
    el('td', { class: 'num' }, t.partitions),
    el('td', { class: 'num' }, t.replication_factor),
    el('td', { class: 'num' }, t.segments),
    el('td', { class: 'num' }, bytes(t.disk_bytes)),
    el('td', {}, Object.keys(t.configs).sort().map(k => el('div', {}, k + '=' + t.configs[k])))));
  return el('section', { id: 'page-topics' },
    el('h1', {}, 'Topics'),
    ts.length ? table(['topic', ['partitions', { class: 'num' }], ['RF', { class: 'num' }], ['segments', { class: 'num' }],
      ['disk (all replicas)', { class: 'num' }], 'configs'], rows, { id: 'topics' }) : el('p', { class: 'muted' }, 'No topics.'));
}

// rates remembers the last log ends per topic page for records/s.
const rates = { key: '', at: 0, ends: {} };

async function topicPage(name) {
  const t = await api('topics/' + encodeURIComponent(name));
  const now = Date.now();
  const prev = rates.key === name ? rates : null;
  const ends = {};
  const rows = t.partition_list.map(p => {
    ends[p.partition] = p.log_end;
    let rate = '–';
    if (prev && prev.ends[p.partition] >= 0 && p.log_end >= 0 && now > prev.at) {
      rate = ((p.log_end - prev.ends[p.partition]) * 1000 / (now - prev.at)).toFixed(0) + '/s';
    }
    return el('tr', { 'data-partition': p.partition },
      el('td', {}, link(partitionHash(t.name, p.partition), String(p.partition))),
      el('td', {}, nodeBadge(p.leader)),
      el('td', { class: 'num' }, p.epoch),
      el('td', {}, p.state),
      el('td', {}, p.replicas.join(', ')),
      el('td', { class: 'num' }, p.segments),
      el('td', { class: 'num' }, off(p.log_start)),
      el('td', { class: 'num' }, off(p.high_watermark)),
      el('td', { class: 'num' }, off(p.log_end)),
      el('td', { class: 'num' }, rate),
      el('td', { class: 'num' }, bytes(p.bytes)));
  });
  Object.assign(rates, { key: name, at: now, ends });
  const cfg = Object.keys(t.configs).sort();
  return el('section', { id: 'page-topic' },
    el('h1', {}, 'Topic ', el('span', { id: 'topic-name' }, t.name)),
    kv([['id', t.id], ['partitions', String(t.partitions)], ['replication factor', String(t.replication_factor)],
      ['segments', String(t.segments)], ['disk (all replicas)', bytes(t.disk_bytes)]]),
    table(['partition', 'leader', ['epoch', { class: 'num' }], 'state', 'replicas', ['segments', { class: 'num' }],
      ['log start', { class: 'num' }], ['high watermark', { class: 'num' }], ['log end', { class: 'num' }],
      ['produce rate', { class: 'num' }], ['size', { class: 'num' }]], rows, { id: 'partitions' }),
    el('h2', {}, 'Configs (overrides)'),
    cfg.length ? table(['key', 'value'], cfg.map(k => el('tr', {}, el('td', {}, k), el('td', {}, t.configs[k]))), { id: 'configs' })
      : el('p', { class: 'muted' }, 'None: broker defaults apply.'));
}

async function partitionPage(name, p) {
  const v = await api('topics/' + encodeURIComponent(name) + '/partitions/' + encodeURIComponent(p));
  const segs = v.segments;
  // Offsets on one axis: each segment's width is its share of the range
  // (the active one up to the leader's log end).
  const first = segs.length ? segs[0].base : 0;
  const last = segs.length ? Math.max(segs[segs.length - 1].base + 1, segs[segs.length - 1].end) : 1;
  const span = Math.max(1, last - first);
  const bar = el('div', { id: 'timeline' });
  for (const s of segs) {
    const end = s.end >= 0 ? s.end : s.base;
    const title = 'segment ' + s.id + ': offsets ' + s.base + '–' + (s.end >= 0 ? s.end : '…') + ', epoch ' + s.epoch +
      ', leader ' + s.leader + ', replicas [' + s.replicas.join(',') + '], ' + s.state + ', ' + bytes(s.bytes);
    const d = el('div', {
      class: 'seg ' + s.state + (s.leader_changed ? ' changed' : ''), title,
      'data-segment': s.id, 'data-leader': s.leader, 'data-epoch': s.epoch, 'data-state': s.state,
      'data-base': s.base, 'data-end': s.end,
    }, 'e' + s.epoch);
    d.style.flex = Math.max(end - s.base, 0) / span + ' 0 0';
    d.style.background = nodeColour(s.leader);
    bar.append(d);
  }
  const leaders = Object.keys(v.leaders).map(Number).sort((a, b) => a - b);
  const rows = segs.slice().reverse().map(s => el('tr', {
    class: s.leader_changed ? 'leader-change' : '', 'data-segment': s.id, 'data-leader': s.leader,
  },
  el('td', { class: 'num' }, s.id),
  el('td', { class: 'num' }, s.base),
  el('td', { class: 'num' }, s.end >= 0 ? s.end : '–'),
  el('td', { class: 'num' }, s.epoch),
  el('td', {}, nodeBadge(s.leader)),
  el('td', {}, s.replicas.join(', '), s.learners.length ? ' (+ learners ' + s.learners.join(', ') + ')' : ''),
  el('td', {}, s.state),
  el('td', { class: 'num' }, (s.bytes_estimated ? '≈ ' : '') + bytes(s.bytes)),
  el('td', {}, [s.leader_changed ? 'leader moved' : '', s.replicas_shrunk ? 'replica set shrank' : ''].filter(Boolean).join('; '))));
  const replicas = v.replicas.map(r => el('tr', { 'data-node': r.node },
    el('td', {}, nodeBadge(r.node)), el('td', { class: 'num' }, off(r.log_start)), el('td', { class: 'num' }, off(r.high_watermark)),
    el('td', { class: 'num' }, off(r.log_end)), el('td', { class: 'num' }, bytes(r.bytes))));
  return el('section', { id: 'page-partition' },
    el('h1', {}, link(topicHash(v.topic), v.topic), ' / partition ' + v.partition),
    kv([['leader', nodeBadge(v.leader)], ['epoch', String(v.epoch)], ['log start', off(v.log_start)],
      ['high watermark', off(v.high_watermark)], ['log end', off(v.log_end)], ['segments', String(segs.length)]]),
    el('h2', {}, 'Segment chain'),
    el('div', { class: 'legend', id: 'legend' }, leaders.map(id => el('span', { 'data-node': id },
      nodeBadge(id), ': ' + v.leaders[id] + ' segment' + (v.leaders[id] === 1 ? '' : 's')))),
    bar,
    el('div', { class: 'axis' }, el('span', {}, 'offset ' + first), el('span', {}, 'offset ' + last)),
    table([['segment', { class: 'num' }], ['base', { class: 'num' }], ['end', { class: 'num' }], ['epoch', { class: 'num' }],
      'leader', 'replicas', 'state', ['size', { class: 'num' }], ''], rows, { id: 'segments' }),
    el('h2', {}, 'Replicas (local logs)'),
    replicas.length ? table(['node', ['log start', { class: 'num' }], ['high watermark', { class: 'num' }], ['log end', { class: 'num' }],
      ['size', { class: 'num' }]], replicas, { id: 'replicas' }) : el('p', { class: 'muted' }, 'No node answered.'));
}

async function groupsPage() {
  const gs = await api('groups');
  const rows = gs.map(g => el('tr', { 'data-group': g.group },
    el('td', {}, link(groupHash(g.group), g.group)), el('td', { class: 'type' }, g.type || '–'),
    el('td', {}, g.state), el('td', {}, g.protocol_type || '–'), el('td', {}, nodeBadge(g.coordinator))));
  return el('section', { id: 'page-groups' },
    el('h1', {}, 'Groups'),
    gs.length ? table(['group', 'type', 'state', 'protocol type', 'coordinator'], rows, { id: 'groups' }) : el('p', { class: 'muted' }, 'No groups.'));
}

async function groupPage(id) {
  const g = await api('groups/' + encodeURIComponent(id));
  const parts = as => (as || []).map(a => el('div', {}, a.topic + ': ' + a.partitions.join(', ')));
  const classic = g.type === 'classic';
  const members = g.members.map(m => el('tr', { 'data-member': m.member_id },
    el('td', {}, m.member_id), el('td', {}, m.instance_id || '–'), el('td', {}, m.client_id), el('td', {}, m.host),
    classic ? null : el('td', { class: 'num epoch' }, String(m.member_epoch)),
    el('td', { class: 'assigned' }, parts(m.assignments)),
    classic ? null : el('td', { class: 'target' }, m.target_assignments ? parts(m.target_assignments) : '–')));
  const info = [['type', el('span', { id: 'group-type' }, g.type || '–')], ['state', g.state]];
  if (classic) info.push(['protocol', (g.protocol_type || '–') + (g.protocol ? ' / ' + g.protocol : '')]);
  else info.push(['group epoch', String(g.group_epoch || 0)], ['assignor', g.assignor || '–']);
  const lag = g.lag.map(l => el('tr', { 'data-topic': l.topic, 'data-partition': l.partition },
    el('td', {}, link(topicHash(l.topic), l.topic)), el('td', { class: 'num' }, l.partition),
    el('td', { class: 'num committed' }, off(l.committed)), el('td', { class: 'num end' }, off(l.end)),
    el('td', { class: 'num lag' }, l.lag < 0 ? '–' : String(l.lag)),
    el('td', {}, l.member_id || '–'), el('td', {}, l.error || '')));
  return el('section', { id: 'page-group' },
    el('h1', {}, 'Group ', el('span', { id: 'group-name' }, g.group)),
    g.error ? el('p', { class: 'error' }, g.error) : null,
    kv(info.concat([['coordinator', nodeBadge(g.coordinator)], ['total lag', el('span', { id: 'total-lag' }, String(g.total_lag))]])),
    el('h2', {}, 'Members'),
    members.length ? table(classic ? ['member', 'instance', 'client', 'host', 'assignment']
      : ['member', 'instance', 'client', 'host', ['epoch', { class: 'num' }], 'assignment', 'reconciling to'], members, { id: 'members' })
      : el('p', { class: 'muted' }, 'No members.'),
    el('h2', {}, 'Lag per partition'),
    lag.length ? table(['topic', ['partition', { class: 'num' }], [g.type === 'share' ? 'share start' : 'committed', { class: 'num' }], ['end', { class: 'num' }],
      ['lag', { class: 'num' }], 'member', ''], lag, { id: 'lag' }) : el('p', { class: 'muted' }, 'No committed offsets.'));
}

// ---- routing and refresh ----

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(s => s !== '').map(decodeURIComponent);
  switch (parts[0] || 'cluster') {
    case 'cluster': return { nav: 'cluster', load: clusterPage };
    case 'topics':
      if (parts.length >= 3) return { nav: 'topics', load: () => partitionPage(parts[1], parts[2]) };
      if (parts.length === 2) return { nav: 'topics', load: () => topicPage(parts[1]) };
      return { nav: 'topics', load: topicsPage };
    case 'groups':
      if (parts.length >= 2) return { nav: 'groups', load: () => groupPage(parts.slice(1).join('/')) };
      return { nav: 'groups', load: groupsPage };
    default: return { nav: '', load: async () => el('p', { class: 'error' }, 'No such page: ' + location.hash) };
  }
}

let generation = 0;
let timer = null;

async function render() {
  const gen = ++generation;
  clearTimeout(timer);
  const hash = location.hash;
  const r = route();
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.id === 'nav-' + r.nav);
  let page;
  try {
    page = await r.load();
  } catch (e) {
    page = el('p', { class: 'error', id: 'error' }, e.message);
  }
  if (gen !== generation) return; // a newer render started meanwhile
  colourSwatches(page);
  const main = document.getElementById('main');
  main.replaceChildren(page);
  main.setAttribute('data-route', hash); // the route this content is for (tests wait on it)
  document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  if (document.getElementById('live').checked) timer = setTimeout(render, REFRESH_MS);
}

window.addEventListener('hashchange', render);
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('live').addEventListener('change', e => { if (e.target.checked) render(); else clearTimeout(timer); });
  render();
});
