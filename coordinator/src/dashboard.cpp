// The dashboard page served at / by the HTTP gateway (http.cpp): plain HTML and JavaScript, no
// external assets, reading the gateway's own JSON API every two seconds.
namespace vidfarm::coordinator::detail {

extern const char kDashboardHtml[];  // declared again in http.cpp
const char kDashboardHtml[] = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vidfarm</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f0f0f0} .num{text-align:right} .muted{color:#777}
.bar{display:inline-block;width:120px;height:10px;background:#e6e6e6;vertical-align:middle}
.bar>span{display:block;height:100%;background:#4a8}
.state-done{color:#270} .state-failed{color:#b00} .state-running{color:#05a} .state-paused{color:#a60}
.cards span{display:inline-block;background:#fff;border:1px solid #ddd;padding:6px 12px;margin:0 6px 6px 0}
#err{color:#b00} button{font-size:12px} video{max-width:320px;display:block;margin-top:4px}
</style></head><body>
<h1>vidfarm</h1><div class="muted" id="sub">connecting…</div><div id="err"></div>
<h2>Jobs</h2><div class="cards" id="counts"></div>
<form id="submit">Submit: <input id="prompt" size="40" value="a red circle moving right">
seed <input id="seed" size="4" value="1"> priority <input id="prio" size="4" value="0">
<button>submit</button> <span id="submitted" class="muted"></span></form>
<h2>Queues (READY tasks per stage)</h2><div class="cards" id="queues"></div>
<h2>Workers</h2><table id="workers"><tr><td class="muted">none</td></tr></table>
<h2>Recent jobs</h2><table id="jobs"><tr><td class="muted">none</td></tr></table>
<div id="player"></div>
<script>
const $ = id => document.getElementById(id);
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const bytes = n => n == null ? '?' : n > 1e9 ? (n/1e9).toFixed(2)+' GB' : n > 1e6 ? (n/1e6).toFixed(1)+' MB' : (n/1e3).toFixed(0)+' kB';
async function api(path, opts) {
  const r = await fetch(path, opts); const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.statusText); return j;
}
async function control(job, what) {
  try { await api(`/api/jobs/${job}/${what}`, {method: 'POST'}); refresh(); }
  catch (e) { $('err').textContent = `${what} ${job}: ${e.message}`; }
}
function play(job) {
  $('player').innerHTML = `<h2>${esc(job)}</h2><video controls autoplay loop src="/api/jobs/${job}/video"></video>`;
}
async function refresh() {
  try {
    const [s, l, w] = await Promise.all([api('/api/status'), api('/api/jobs?limit=50'), api('/api/workers')]);
    $('err').textContent = '';
    const d = s.disk || {};
    $('sub').textContent = `preset ${s.preset} · ${s.total_jobs} jobs · ${s.leases} leases · database ${bytes(d.total_bytes)} (${bytes(d.free_bytes)} free) · ${new Date().toLocaleTimeString()}`;
    $('counts').innerHTML = Object.entries(s.jobs).map(([k, v]) => `<span class="state-${k}">${k} <b>${v}</b></span>`).join('');
    $('queues').innerHTML = s.ready.map((n, k) => `<span>stage ${k} <b>${n}</b></span>`).join('');
    const ws = w.workers;
    $('workers').innerHTML = ws.length ? '<tr><th>worker</th><th>stage</th><th>host</th><th>state</th><th>job</th><th class="num">leases</th><th class="num">done</th><th class="num">failed</th><th class="num">heartbeat</th></tr>' +
      ws.map(x => `<tr><td>${esc(x.worker_id)}</td><td>${x.stage}</td><td>${esc(x.host)}</td><td>${esc(x.state)}</td><td>${esc(x.job)}</td><td class="num">${x.leases}/${x.max_leases}</td><td class="num">${x.done}</td><td class="num">${x.failed}</td><td class="num">${x.last_heartbeat_ms_ago} ms ago</td></tr>`).join('')
      : '<tr><td class="muted">no workers</td></tr>';
    const js = l.jobs.slice().sort((a, b) => b.submit_seq - a.submit_seq);
    $('jobs').innerHTML = js.length ? '<tr><th>job</th><th>state</th><th>prompt</th><th>stages</th><th class="num">priority</th><th></th></tr>' +
      js.map(j => {
        const pct = 100 * j.stages_done / Math.max(1, j.num_stages);
        const acts = j.state === 'done' ? `<button onclick="play('${j.id}')">play</button> <a href="/api/jobs/${j.id}/video" download>download</a>`
          : j.state === 'paused' ? `<button onclick="control('${j.id}','resume')">resume</button> <button onclick="control('${j.id}','cancel')">cancel</button>`
          : (j.state === 'failed' || j.state === 'cancelled') ? `<button onclick="control('${j.id}','retry')">retry</button>`
          : `<button onclick="control('${j.id}','pause')">pause</button> <button onclick="control('${j.id}','cancel')">cancel</button>`;
        return `<tr><td>${esc(j.id)}</td><td class="state-${j.state}">${esc(j.state)}${j.error ? ': ' + esc(j.error) : ''}</td><td>${esc(j.prompt)}</td>` +
          `<td><span class="bar"><span style="width:${pct}%"></span></span> ${j.stages_done}/${j.num_stages}</td><td class="num">${j.priority}</td><td>${acts}</td></tr>`;
      }).join('') : '<tr><td class="muted">no jobs yet</td></tr>';
  } catch (e) { $('err').textContent = 'coordinator: ' + e.message; }
}
$('submit').onsubmit = async ev => {
  ev.preventDefault();
  try {
    const r = await api('/api/jobs', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({prompt: $('prompt').value, seed: Number($('seed').value), priority: Number($('prio').value)})});
    $('submitted').textContent = 'queued ' + r.jobs.join(', '); refresh();
  } catch (e) { $('err').textContent = 'submit: ' + e.message; }
};
refresh(); setInterval(refresh, 2000);
</script></body></html>
)HTML";

}  // namespace vidfarm::coordinator::detail
