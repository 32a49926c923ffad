// SPDX-License-Identifier: Apache-2.0
// The nave dashboard: one page, views chosen by the location's hash (#/tunnels,
// #/tunnel/ID, ...), everything from /api/v1 of the same origin. No framework,
// no inline script or style (the CSP forbids them), and every string from the
// server reaches the page as text (textContent, text nodes), never as HTML.
'use strict';

(function () {
	const API = '/api/v1';
	let csrf = null; // the session's CSRF token, sent with every request that changes something
	let timer = null; // a view's refresh while something is pending

	const $ = (id) => document.getElementById(id);

	class ApiError extends Error {
		constructor(status, msg, handled) {
			super(msg);
			this.status = status;
			this.handled = !!handled; // the page went back to the login form already
		}
	}

	// An element with attributes and children; strings and numbers become text nodes.
	function el(tag, attrs, ...kids) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			if (v === undefined || v === null || v === false)
				continue;
			if (k === 'class')
				e.className = v;
			else if (k.startsWith('on'))
				e.addEventListener(k.slice(2), v);
			else
				e.setAttribute(k, v === true ? '' : String(v));
		}
		for (const kid of kids.flat()) {
			if (kid === undefined || kid === null)
				continue;
			e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
		}
		return e;
	}

	function oneLine(s) {
		s = String(s).replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
		return s.length > 300 ? s.slice(0, 297) + '...' : s;
	}

	function showError(msg) {
		const e = $('error');
		e.textContent = oneLine(msg);
		e.hidden = false;
		$('notice').hidden = true;
	}

	function showNotice(msg) {
		const e = $('notice');
		e.textContent = oneLine(msg);
		e.hidden = false;
	}

	function clearMessages() {
		$('error').hidden = true;
		$('notice').hidden = true;
	}

	async function api(method, path, body) {
		const opt = {method, headers: {}, credentials: 'same-origin', cache: 'no-store'};
		if (body !== undefined) {
			opt.headers['Content-Type'] = 'application/json';
			opt.body = JSON.stringify(body);
		}
		if (method !== 'GET' && method !== 'HEAD' && csrf)
			opt.headers['X-CSRF-Token'] = csrf;
		let r;
		try {
			r = await fetch(API + path, opt);
		} catch (e) {
			throw new ApiError(0, 'the server did not answer: ' + e.message);
		}
		const text = await r.text();
		let data = null;
		if (text) {
			try {
				data = JSON.parse(text);
			} catch (e) {
				data = null;
			}
		}
		if (r.status === 401 && path !== '/login' && path !== '/session') {
			loggedOut('your session ended: log in again');
			throw new ApiError(401, 'not logged in', true);
		}
		if (!r.ok) {
			const why = data && typeof data.error === 'string' ? data.error : 'HTTP ' + r.status;
			throw new ApiError(r.status, why);
		}
		return data;
	}

	// --- formatting ---

	function fmtTime(t) {
		if (t === null || t === undefined || t === 0)
			return '—';
		if (typeof t !== 'number')
			return String(t);
		return new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
	}

	function fmtBytes(n) {
		if (n === null || n === undefined)
			return '—';
		if (typeof n !== 'number')
			return String(n);
		const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
		let i = 0;
		while (n >= 1024 && i < u.length - 1) {
			n /= 1024;
			i++;
		}
		return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
	}

	function fmtDuration(s) {
		if (s === null || s === undefined)
			return '—';
		if (typeof s !== 'number')
			return String(s);
		if (s < 1)
			return Math.round(s * 1000) + ' ms';
		if (s < 60)
			return (Math.round(s * 10) / 10) + ' s';
		const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
		      m = Math.floor(s % 3600 / 60);
		return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + m + 'm';
	}

	function fmtValue(v) {
		if (v === null || v === undefined)
			return '—';
		if (typeof v === 'boolean')
			return v ? 'yes' : 'no';
		if (typeof v === 'object')
			return JSON.stringify(v);
		return String(v);
	}

	// --- building blocks ---

	// A table: cols [{title, cell(item) -> node|string, num}], one row per item.
	function table(id, cols, items, empty) {
		if (!items.length)
			return el('p', {id, class: 'muted'}, empty || 'None.');
		return el('table', {id},
			  el('thead', null, el('tr', null, cols.map((c) => el('th', {class: c.num ? 'num' : null}, c.title)))),
			  el('tbody', null, items.map((it) => el('tr', null,
								  cols.map((c) => el('td', {class: c.num ? 'num' : null}, c.cell(it)))))));
	}

	// A key/value table of an object's scalar members (nested objects as JSON text).
	function kvTable(id, rows) {
		return el('table', {id, class: 'kv'},
			  el('tbody', null, rows.map(([k, v]) => el('tr', null, el('th', null, k), el('td', null, v)))));
	}

	function hashLink(view, params) {
		const q = new URLSearchParams();
		for (const [k, v] of Object.entries(params || {}))
			if (v !== undefined && v !== null && v !== '')
				q.set(k, v);
		const s = q.toString();
		return '#/' + view + (s ? '?' + s : '');
	}

	// "page N of M" with links to the pages around it; params: the view's other query members.
	function pager(view, params, list) {
		const pages = Math.max(1, Math.ceil(list.total / list.per_page));
		const p = list.page;
		return el('div', {class: 'pager', id: 'pager'},
			  p > 1 ? el('a', {href: hashLink(view, {...params, page: p - 1}), id: 'page-prev'}, '« previous') : null,
			  el('span', {id: 'page-info'}, `page ${p} of ${pages} (${list.total} in all)`),
			  p < pages ? el('a', {href: hashLink(view, {...params, page: p + 1}), id: 'page-next'}, 'next »') : null);
	}

	function tunnelLink(id) {
		return id ? el('a', {href: '#/tunnel/' + encodeURIComponent(id), class: 'tunnel-link'}, id) : '—';
	}

	function formData(form) {
		const out = {};
		for (const [k, v] of new FormData(form).entries())
			out[k] = typeof v === 'string' ? v.trim() : v;
		return out;
	}

	// A button that runs fn(), showing its error in the error line.
	function action(label, attrs, fn) {
		return el('button', {type: 'button', ...attrs, onclick: async (ev) => {
			ev.target.disabled = true;
			try {
				await fn();
			} catch (e) {
				if (!e.handled)
					showError(e.message);
			} finally {
				ev.target.disabled = false;
			}
		}}, label);
	}

	function onSubmit(form, fn) {
		form.addEventListener('submit', async (ev) => {
			ev.preventDefault();
			const b = form.querySelector('button[type=submit]');
			if (b)
				b.disabled = true;
			try {
				await fn(formData(form));
			} catch (e) {
				if (!e.handled)
					showError(e.message);
			} finally {
				if (b)
					b.disabled = false;
			}
		});
		return form;
	}

	// --- views: each returns the nodes of the main area ---

	async function viewStatus() {
		const s = await api('GET', '/status');
		const r = s.relay || {};
		const rows = [
			['version', s.version],
			['uptime', fmtDuration(s.uptime)],
			['relayd', r.connected ? `connected (pid ${r.pid}, ${r.workers} workers)` : 'not connected'],
			['tunnels', `${s.tunnels.online} online of ${s.tunnels.total}`],
			['ports', `${s.ports.allocated} allocated in ${s.ports.range}`],
			['TLS fingerprint', fmtValue(s.tls_fingerprint)],
		];
		if (r.connected) {
			rows.push(['connections open', fmtValue(r.conns)], ['connections total', fmtValue(r.conns_total)],
				  ['bytes in', fmtBytes(r.bytes_in)], ['bytes out', fmtBytes(r.bytes_out)],
				  ['data links', fmtValue(r.links)], ['kTLS', fmtValue(r.ktls)],
				  ['steering', fmtValue(r.steering)]);
			if (r.records_sent !== undefined)
				rows.push(['records from relayd', `${fmtValue(r.records_sent)} sent, ${fmtValue(r.records_dropped)} dropped`]);
		}
		if (s.records && typeof s.records === 'object') {
			const k = s.records;
			rows.push(['records in controld', `${fmtValue(k.stored)} stored of ${fmtValue(k.received)} received, ` +
				   `${fmtValue(k.refused)} refused, ${fmtValue(k.failed)} failed`]);
		}
		return [el('h1', null, 'Server status'), kvTable('status-table', rows)];
	}

	async function viewTunnels(q) {
		const search = q.get('search') || '';
		const page = q.get('page') || '1';
		const params = {search};
		const query = new URLSearchParams({page});
		if (search)
			query.set('search', search);
		const list = await api('GET', '/tunnels?' + query.toString());
		const form = onSubmit(el('form', {id: 'tunnel-search'},
					 el('label', null, 'Search (id, hostname, group, OS)',
					    el('input', {name: 'search', id: 'search', value: search, maxlength: 200})),
					 el('button', {type: 'submit', class: 'primary'}, 'Search')),
				      async (d) => {
					      location.hash = hashLink('tunnels', {search: d.search});
				      });
		return [el('h1', null, 'Tunnels'), form,
			table('tunnels-table', [
				{title: 'id', cell: (t) => tunnelLink(t.id)},
				{title: 'hostname', cell: (t) => t.hostname},
				{title: 'group', cell: (t) => t.group_id},
				{title: 'state', cell: (t) => el('span', {class: t.state}, t.state)},
				{title: 'last seen', cell: (t) => fmtTime(t.last_seen)},
				{title: 'ports', cell: (t) => (t.ports || []).map((p) => p.port).join(', ')},
				{title: 'domains', cell: (t) => (t.domains || []).map((d) => d.domain).join(', ')},
			], list.items, search ? 'No tunnel matches.' : 'No tunnels yet.'),
			pager('tunnels', params, list)];
	}

	// The tunnel's rules: from the rules route ({rules, ops}) when there is one, else
	// from its ports and domains; each with its traffic (the tunnel's "traffic" member)
	// and the "to" of the last operation that added it.
	function ruleRows(t, rules) {
		const traffic = {}, to = {};
		for (const r of t.traffic || [])
			if (r && typeof r.rule === 'string')
				traffic[r.rule] = r;
		for (const op of (rules && rules.ops) || [])
			if (op && op.action === 'add' && op.rule && typeof op.rule.to === 'string')
				to[op.name] = op.rule.to;
		let rows;
		if (rules && Array.isArray(rules.rules)) {
			rows = rules.rules.map((r) => ({...r}));
		} else {
			rows = [];
			for (const p of t.ports || [])
				rows.push({name: p.rule, kind: 'tcp', port: p.port});
			for (const d of t.domains || [])
				rows.push({name: d.rule, kind: 'http', domain: d.domain});
		}
		return rows.map((r) => ({...(traffic[r.name] || {}), to: to[r.name], ...r}));
	}

	async function viewTunnel(id) {
		const t = await api('GET', '/tunnels/' + encodeURIComponent(id));
		let rules = null;
		try {
			rules = await api('GET', '/tunnels/' + encodeURIComponent(id) + '/rules');
		} catch (e) {
			if (e.status !== 404)
				throw e;
		}
		const rows = ruleRows(t, rules);
		const ops = rules && Array.isArray(rules.ops) ? rules.ops.slice(-10).reverse() : [];
		const pending = ops.some((o) => o.state === 'pending');
		const out = [
			el('h1', null, 'Tunnel ', el('span', {id: 'tunnel-id'}, t.id)),
			kvTable('tunnel-table', [
				['state', el('span', {class: t.state, id: 'tunnel-state'}, t.state)],
				['hostname', fmtValue(t.hostname)], ['group', fmtValue(t.group_id)],
				['OS / arch', `${fmtValue(t.os)} / ${fmtValue(t.arch)}`],
				['client version', fmtValue(t.client_version)],
				['last seen', fmtTime(t.last_seen)], ['created', fmtTime(t.created_at)],
				['token', fmtValue(t.token_id)],
			]),
			el('p', null, el('a', {href: hashLink('connections', {tunnel: t.id}), id: 'tunnel-connections'},
					 'Connection records and bandwidth of this tunnel')),
			el('h2', null, 'Rules'),
			table('rules-table', [
				{title: 'name', cell: (r) => r.name || el('span', {class: 'muted'}, '(admin)')},
				{title: 'kind', cell: (r) => r.kind},
				{title: 'public', cell: (r) => r.port !== undefined && r.port !== null && r.port !== 0 ? String(r.port) : fmtValue(r.domain)},
				{title: 'to', cell: (r) => fmtValue(r.to)},
				{title: 'bytes in', num: true, cell: (r) => fmtBytes(r.bytes_in)},
				{title: 'bytes out', num: true, cell: (r) => fmtBytes(r.bytes_out)},
				{title: 'connections', num: true, cell: (r) => fmtValue(r.conns)},
				{title: '', cell: (r) => r.name ? action('Remove', {class: 'danger rule-remove', 'data-rule': r.name}, async () => {
					if (!confirm(`Remove rule ${r.name} of ${t.id}?`))
						return;
					await api('DELETE', `/tunnels/${encodeURIComponent(t.id)}/rules/${encodeURIComponent(r.name)}`);
					await render(true);
					showNotice(`rule ${r.name}: removal sent`);
				}) : null},
			], rows, 'No rules.'),
		];
		if (ops.length) {
			out.push(el('h2', null, 'Rule changes'),
				 el('p', {class: 'muted'}, pending
					? 'Pending changes are sent to the client when it is online; this page refreshes until they are done.'
					: 'The latest changes sent to the client.'),
				 table('ops-table', [
					 {title: 'queued', cell: (o) => fmtTime(o.created_at)},
					 {title: 'change', cell: (o) => `${fmtValue(o.action)} ${fmtValue(o.kind)}`},
					 {title: 'rule', cell: (o) => fmtValue(o.name)},
					 {title: 'state', cell: (o) => el('span', {class: o.state === 'pending' ? 'pending' : null}, fmtValue(o.state))},
					 {title: 'reason', cell: (o) => fmtValue(o.reason)},
				 ], ops));
			if (pending)
				refreshIn(rules.online ? 1500 : 5000);
		}
		const kind = el('select', {name: 'kind', id: 'rule-kind'},
				el('option', {value: 'tcp'}, 'TCP'), el('option', {value: 'http'}, 'HTTP'));
		const port = el('label', {id: 'rule-port-label'}, 'public port (empty: any free)',
				el('input', {name: 'port', id: 'rule-port', inputmode: 'numeric', maxlength: 5}));
		const domain = el('label', {id: 'rule-domain-label', hidden: true}, 'domain',
				  el('input', {name: 'domain', id: 'rule-domain', maxlength: 253}));
		kind.addEventListener('change', () => {
			port.hidden = kind.value !== 'tcp';
			domain.hidden = kind.value !== 'http';
		});
		const form = onSubmit(el('form', {id: 'rule-add'},
					 el('label', null, 'kind', kind),
					 el('label', null, 'name', el('input', {name: 'name', id: 'rule-name', required: true, maxlength: 63})),
					 el('label', null, 'to (host:port on the device)',
					    el('input', {name: 'to', id: 'rule-to', required: true, maxlength: 300})),
					 port, domain,
					 el('button', {type: 'submit', class: 'primary', id: 'rule-submit'}, 'Add rule')),
				      async (d) => {
					      const body = {kind: d.kind, name: d.name, to: d.to};
					      if (d.kind === 'tcp' && d.port) {
						      if (!/^[0-9]{1,5}$/.test(d.port))
							      throw new ApiError(400, 'the port is a number');
						      body.port = Number(d.port);
					      }
					      if (d.kind === 'http')
						      body.domain = d.domain;
					      await api('POST', `/tunnels/${encodeURIComponent(t.id)}/rules`, body);
					      await render(true);
					      showNotice(`rule ${d.name}: sent`);
				      });
		out.push(el('h2', null, 'Add a rule'), form);
		return out;
	}

	async function viewPorts(q) {
		const page = q.get('page') || '1';
		const list = await api('GET', '/ports?' + new URLSearchParams({page}).toString());
		return [el('h1', null, 'Ports'),
			table('ports-table', [
				{title: 'port', num: true, cell: (p) => String(p.port)},
				{title: 'tunnel', cell: (p) => tunnelLink(p.tunnel_id)},
				{title: 'rule', cell: (p) => p.rule || el('span', {class: 'muted'}, '(admin)')},
				{title: 'allocated', cell: (p) => fmtTime(p.created_at)},
				{title: 'packets (XDP)', num: true, cell: (p) => fmtValue(p.packets)},
				{title: 'bytes (XDP)', num: true, cell: (p) => fmtBytes(p.bytes)},
			], list.items, 'No ports allocated.'),
			pager('ports', {}, list)];
	}

	async function viewDomains(q) {
		const page = q.get('page') || '1';
		const list = await api('GET', '/domains?' + new URLSearchParams({page}).toString());
		return [el('h1', null, 'Domains'),
			table('domains-table', [
				{title: 'domain', cell: (d) => d.domain},
				{title: 'tunnel', cell: (d) => tunnelLink(d.tunnel_id)},
				{title: 'rule', cell: (d) => d.rule},
				{title: 'claimed', cell: (d) => fmtTime(d.created_at)},
			], list.items, 'No domains claimed.'),
			pager('domains', {}, list)];
	}

	const SVGNS = 'http://www.w3.org/2000/svg';

	function svg(tag, attrs, ...kids) {
		const e = document.createElementNS(SVGNS, tag);
		for (const [k, v] of Object.entries(attrs || {}))
			e.setAttribute(k, String(v));
		for (const kid of kids)
			e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
		return e;
	}

	// Bytes in and out per bucket as paired bars, with the scale and the time span.
	function bandwidthGraph(bw) {
		const W = 760, H = 220, L = 70, B = 30, T = 12, R = 10;
		const buckets = Array.isArray(bw.buckets) ? bw.buckets : [];
		const max = Math.max(1, ...buckets.map((b) => Math.max(b.bytes_in || 0, b.bytes_out || 0)));
		const g = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'graph', id: 'bandwidth',
				      role: 'img', 'data-buckets': buckets.length, 'data-max': max});
		g.append(svg('title', null, 'bytes in and out per ' + fmtDuration(bw.step)));
		g.append(svg('line', {x1: L, y1: T, x2: L, y2: H - B, class: 'axis'}),
			 svg('line', {x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis'}),
			 svg('text', {x: L - 6, y: T + 10, 'text-anchor': 'end'}, fmtBytes(max)),
			 svg('text', {x: L - 6, y: H - B, 'text-anchor': 'end'}, '0'));
		const n = Math.max(1, buckets.length);
		const slot = (W - L - R) / n;
		const bar = Math.max(1, slot / 2 - 1);
		buckets.forEach((b, i) => {
			const x = L + i * slot;
			for (const [k, cls, dx] of [['bytes_in', 'in', 0], ['bytes_out', 'out', bar]]) {
				const v = b[k] || 0;
				const h = v ? Math.max(1, (H - B - T) * v / max) : 0;
				g.append(svg('rect', {x: (x + dx).toFixed(1), y: (H - B - h).toFixed(1), width: bar.toFixed(1),
						      height: h.toFixed(1), class: 'bar ' + cls, 'data-bytes': v},
					     svg('title', null, `${fmtTime(b.t)}: ${fmtBytes(v)} ${cls}, ${b.conns || 0} connections`)));
			}
		});
		if (buckets.length) {
			g.append(svg('text', {x: L, y: H - 10}, fmtTime(buckets[0].t)),
				 svg('text', {x: W - R, y: H - 10, 'text-anchor': 'end'}, fmtTime(buckets[buckets.length - 1].t)));
		}
		return g;
	}

	const SPANS = {'1h': [3600, 60], '24h': [86400, 3600], '7d': [7 * 86400, 6 * 3600]};

	async function viewConnections(q) {
		const tunnel = q.get('tunnel') || '';
		const rule = q.get('rule') || '';
		const span = SPANS[q.get('span')] ? q.get('span') : '1h';
		const [secs, step] = SPANS[span];
		const since = Math.floor(Date.now() / 1000) - secs;
		const query = new URLSearchParams({since, limit: 100});
		if (tunnel)
			query.set('tunnel', tunnel);
		if (rule)
			query.set('rule', rule);
		const form = onSubmit(el('form', {id: 'connections-filter'},
					 el('label', null, 'tunnel', el('input', {name: 'tunnel', id: 'filter-tunnel', value: tunnel, maxlength: 64})),
					 el('label', null, 'rule', el('input', {name: 'rule', id: 'filter-rule', value: rule, maxlength: 63})),
					 el('label', null, 'last',
					    el('select', {name: 'span', id: 'filter-span'}, Object.keys(SPANS).map((s) =>
						    el('option', {value: s, selected: s === span}, s)))),
					 el('button', {type: 'submit', class: 'primary'}, 'Show')),
				      async (d) => {
					      location.hash = hashLink('connections', d);
				      });
		const out = [el('h1', null, 'Connections'), form];
		if (tunnel) {
			const bq = new URLSearchParams({tunnel, since, step});
			if (rule)
				bq.set('rule', rule);
			const bw = await api('GET', '/connections/bandwidth?' + bq.toString());
			out.push(el('h2', null, 'Bandwidth'),
				 el('p', {class: 'muted'}, el('span', {class: 'legend-in'}, '■ in'), ' (from the public side) ',
				    el('span', {class: 'legend-out'}, '■ out'), ` (to the public side), per ${fmtDuration(step)}`),
				 bandwidthGraph(bw));
		} else {
			out.push(el('p', {class: 'muted'}, 'Name a tunnel to see its bandwidth graph.'));
		}
		const list = await api('GET', '/connections?' + query.toString());
		const items = list.items || [];
		out.push(el('h2', null, 'Records'),
			 table('connections-table', [
				 {title: 'start', cell: (r) => fmtTime(r.start)},
				 {title: 'tunnel', cell: (r) => tunnelLink(r.tunnel_id)},
				 {title: 'rule', cell: (r) => fmtValue(r.rule)},
				 {title: 'public', cell: (r) => fmtValue(r.domain || r.port)},
				 {title: 'source', cell: (r) => typeof r.src === 'string' && r.src.includes(':') ? `[${r.src}]:${r.src_port}` : `${fmtValue(r.src)}:${fmtValue(r.src_port)}`},
				 {title: 'duration', num: true, cell: (r) => fmtDuration(typeof r.duration_ms === 'number' ? r.duration_ms / 1000 : null)},
				 {title: 'bytes in', num: true, cell: (r) => fmtBytes(r.bytes_in)},
				 {title: 'bytes out', num: true, cell: (r) => fmtBytes(r.bytes_out)},
				 {title: 'reason', cell: (r) => fmtValue(r.reason)},
			 ], items, 'No connection records in this span.'));
		return out;
	}

	// A token's restrictions (allow_from, allow_ids, kinds, domains, ports) in one line.
	function restrictions(t) {
		const parts = [];
		for (const [k, label] of [['allow_from', 'from'], ['allow_ids', 'ids'], ['kinds', 'kinds'],
					  ['domains', 'domains'], ['ports', 'ports']]) {
			const v = t[k];
			if (v === null || v === undefined || (Array.isArray(v) && !v.length))
				continue;
			parts.push(`${label} ${Array.isArray(v) ? v.join(', ') : fmtValue(v)}`);
		}
		return parts.length ? parts.join('; ') : el('span', {class: 'muted'}, 'none');
	}

	async function viewTokens(q) {
		const page = q.get('page') || '1';
		const list = await api('GET', '/tokens?' + new URLSearchParams({page}).toString());
		const made = el('div', {id: 'token-made'});
		const form = onSubmit(el('form', {id: 'token-create'},
					 el('label', null, 'tunnel group (optional)', el('input', {name: 'id', id: 'token-id', maxlength: 63})),
					 el('label', null, 'description', el('input', {name: 'description', id: 'token-description', maxlength: 255})),
					 el('button', {type: 'submit', class: 'primary', id: 'token-submit'}, 'Create token')),
				      async (d) => {
					      const body = {};
					      if (d.id)
						      body.id = d.id;
					      if (d.description)
						      body.description = d.description;
					      const t = await api('POST', '/tokens', body);
					      await render(true);
					      // after the re-render: shown this once, never stored by the page
					      $('token-made').replaceChildren(el('div', {class: 'secret'},
						      el('p', null, `Token ${t.id} made. It is shown only now: copy it.`),
						      el('code', {id: 'new-token'}, t.token)));
				      });
		return [el('h1', null, 'Tokens'), form, made,
			table('tokens-table', [
				{title: 'id', cell: (t) => t.id},
				{title: 'tunnel', cell: (t) => tunnelLink(t.tunnel_id)},
				{title: 'description', cell: (t) => t.description},
				{title: 'created', cell: (t) => fmtTime(t.created_at)},
				{title: 'last used', cell: (t) => fmtTime(t.last_used)},
				{title: 'restrictions', cell: restrictions},
				{title: 'state', cell: (t) => el('span', {class: t.revoked ? 'revoked' : null}, t.revoked ? 'revoked' : 'active')},
				{title: '', cell: (t) => t.revoked ? null : action('Revoke', {class: 'danger token-revoke', 'data-token': t.id}, async () => {
					if (!confirm(`Revoke token ${t.id}? Its tunnel is disconnected and its ports and domains released.`))
						return;
					await api('POST', `/tokens/${encodeURIComponent(t.id)}/revoke`);
					await render(true);
					showNotice(`token ${t.id} revoked`);
				})},
			], list.items, 'No tokens.'),
			pager('tokens', {}, list)];
	}

	async function viewUsers(q) {
		const page = q.get('page') || '1';
		const list = await api('GET', '/users?' + new URLSearchParams({page}).toString());
		const items = list.items || [];
		return [el('h1', null, 'Users'),
			el('p', {class: 'muted'}, 'Users are made and changed with navectl users on the server.'),
			table('users-table', [
				{title: 'user', cell: (u) => u.name || u.user},
				{title: 'two-factor', cell: (u) => fmtValue(u.two_factor !== undefined ? u.two_factor : u.totp)},
				{title: 'created', cell: (u) => fmtTime(u.created_at)},
				{title: 'last login', cell: (u) => fmtTime(u.last_login)},
				{title: 'locked until', cell: (u) => fmtTime(u.locked_until)},
			], items, 'No users.'),
			list.total !== undefined ? pager('users', {}, list) : null];
	}

	// --- routing ---

	function parseHash() {
		const h = location.hash.replace(/^#\/?/, '');
		const qi = h.indexOf('?');
		const path = qi < 0 ? h : h.slice(0, qi);
		const q = new URLSearchParams(qi < 0 ? '' : h.slice(qi + 1));
		const parts = path.split('/').map((s) => {
			try {
				return decodeURIComponent(s);
			} catch (e) {
				return s;
			}
		});
		return {view: parts[0] || 'status', arg: parts[1] || '', q};
	}

	const VIEWS = {
		status: () => viewStatus(),
		tunnels: (r) => viewTunnels(r.q),
		tunnel: (r) => viewTunnel(r.arg),
		ports: (r) => viewPorts(r.q),
		domains: (r) => viewDomains(r.q),
		connections: (r) => viewConnections(r.q),
		tokens: (r) => viewTokens(r.q),
		users: (r) => viewUsers(r.q),
	};

	// The view again after ms, unless the user is filling in one of its forms (then later).
	function refreshIn(ms) {
		clearTimeout(timer);
		timer = setTimeout(() => {
			const busy = [...document.querySelectorAll('#view input')].some((i) => i.value !== '' || i === document.activeElement);
			if (busy)
				refreshIn(ms);
			else
				render(true);
		}, ms);
	}

	let seq = 0;

	async function render(keepMessages) {
		clearTimeout(timer);
		timer = null;
		if (!csrf)
			return;
		const r = parseHash();
		const fn = VIEWS[r.view];
		const mine = ++seq;
		const view = $('view');
		for (const a of document.querySelectorAll('#nav a'))
			a.classList.toggle('current', a.id === 'nav-' + (r.view === 'tunnel' ? 'tunnels' : r.view));
		if (!keepMessages)
			clearMessages();
		if (!fn) {
			view.replaceChildren(el('h1', null, 'Not found'), el('p', null, 'No such page.'));
			return;
		}
		try {
			const nodes = await fn(r);
			if (mine !== seq)
				return; // a newer render started meanwhile
			view.replaceChildren(...nodes);
			view.setAttribute('data-view', r.view);
			view.setAttribute('data-seq', mine);
		} catch (e) {
			if (mine === seq && !e.handled) {
				showError(e.message);
				view.setAttribute('data-view', 'error');
				view.setAttribute('data-seq', mine);
			}
		}
	}

	function loggedIn(s) {
		csrf = s.csrf;
		$('login').hidden = true;
		$('nav').hidden = false;
		$('logout').hidden = false;
		$('whoami').hidden = false;
		$('whoami').textContent = s.user;
	}

	function loggedOut(msg) {
		csrf = null;
		clearTimeout(timer);
		$('nav').hidden = true;
		$('logout').hidden = true;
		$('whoami').hidden = true;
		$('whoami').textContent = '';
		$('view').replaceChildren();
		$('view').removeAttribute('data-view');
		$('login').hidden = false;
		$('login-form').reset();
		if (msg)
			showError(msg);
		$('login-user').focus();
	}

	async function start() {
		onSubmit($('login-form'), async (d) => {
			clearMessages();
			const s = await api('POST', '/login', {user: d.user, password: d.password, totp: d.totp});
			$('login-form').reset();
			loggedIn(s);
			if (!location.hash || location.hash === '#/login')
				location.hash = '#/status';
			else
				await render(true);
		});
		$('logout').addEventListener('click', async () => {
			try {
				await api('POST', '/logout');
			} catch (e) {
				if (e.status !== 401) {
					showError(e.message);
					return;
				}
			}
			loggedOut();
			showNotice('logged out');
		});
		window.addEventListener('hashchange', () => render());
		try {
			loggedIn(await api('GET', '/session'));
			await render();
		} catch (e) {
			loggedOut(e.status === 401 ? null : e.message);
		}
	}

	document.addEventListener('DOMContentLoaded', start);
})();
