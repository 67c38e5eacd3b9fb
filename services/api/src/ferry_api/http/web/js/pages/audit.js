// The audit log: every event in global order, filtered here by stream, type, actor and time,
// and the verdict of the hash-chain check.
import { html, useMemo, useState } from "../view.js";
import { api } from "../api.js";
import { useLoad } from "../loading.js";
import { Empty, ErrorAlert, PageHeader, Spinner, useTitle } from "../components.js";
import { actorOf, describe } from "../event-texts.js";
import { fullTime } from "../format.js";

const PAGE = 1000;
const MAX_EVENTS = 50000;
const SHOWN = 200;

async function readLog() {
  const events = [];
  let after = 0;
  while (events.length < MAX_EVENTS) {
    const page = await api.get("/events", { after, limit: PAGE });
    events.push(...page.events);
    if (page.next === null) return { events, complete: true };
    after = page.next;
  }
  return { events, complete: false };
}

function ChainVerdict() {
  const check = useLoad(() => api.get("/events/verify"), []);
  if (check.error) return html`<${ErrorAlert} error=${check.error} onRetry=${check.reload} />`;
  if (!check.data) return html`<div class="alert alert-light border">Checking the hash chain…</div>`;
  const c = check.data;
  return html`<div class="alert ${c.ok ? "alert-success" : "alert-danger"} d-flex gap-3
      align-items-center" role="status" data-testid="chain" data-ok=${c.ok}>
    <div class="flex-grow-1">
      <strong>${c.ok ? "Hash chain intact." : "Hash chain broken."}</strong>
      <span>${c.ok ? ` Every link of the ${c.events} events checks out.` : ` ${c.summary}`}</span>
      ${!c.ok && html`<div class="small">First bad link: position ${c.position} (event
        <code>${c.event_id}</code>): ${c.problem}</div>`}
    </div>
    <button class="btn btn-sm btn-outline-secondary" onClick=${check.reload}
      disabled=${check.loading}>Verify again</button>
  </div>`;
}

function matches(event, f) {
  if (f.stream && !event.stream.includes(f.stream)) return false;
  if (f.type && event.type !== f.type) return false;
  if (f.actor && actorOf(event.metadata.actor, event.data, event.type) !== f.actor) return false;
  const at = Date.parse(event.recorded_at);
  if (f.from && at < Date.parse(f.from)) return false;
  if (f.to && at > Date.parse(f.to) + 59999) return false;
  return true;
}

function EventRow({ event: e }) {
  const [open, setOpen] = useState(false);
  const [what, said] = describe(e.type, e.data);
  return html`<tr data-position=${e.position}>
    <td class="text-end font-monospace">${e.position}</td>
    <td class="small text-nowrap">${fullTime(e.recorded_at)}</td>
    <td class="small font-monospace text-break">${e.stream}</td>
    <td class="small"><code>${e.type}</code></td>
    <td class="small">${actorOf(e.metadata.actor, e.data, e.type)}</td>
    <td class="small">${what}${said && html`<div class="said">${said}</div>`}
      <button type="button" class="btn btn-link btn-sm p-0 ms-1" aria-expanded=${open}
        onClick=${() => setOpen(!open)}>${open ? "hide data" : "data"}</button>
      ${open && html`<pre class="event-data mt-1 mb-0">${JSON.stringify(
        { data: e.data, metadata: e.metadata, hash: e.hash }, null, 2)}</pre>`}
    </td>
  </tr>`;
}

function Filters({ filters, setFilters, types, actors }) {
  const set = (name) => (event) => setFilters({ ...filters, [name]: event.target.value });
  const select = (name, label, options) => html`<div class="col-6 col-md-2">
    <label class="form-label small mb-1" for=${`audit-${name}`}>${label}</label>
    <select id=${`audit-${name}`} class="form-select form-select-sm" value=${filters[name]}
      onChange=${set(name)}>
      <option value="">Any</option>
      ${options.map((o) => html`<option value=${o}>${o}</option>`)}
    </select></div>`;
  return html`<form class="row g-2 align-items-end mb-3" role="search"
      onSubmit=${(e) => e.preventDefault()}>
    <div class="col-6 col-md-2">
      <label class="form-label small mb-1" for="audit-stream">Stream contains</label>
      <input id="audit-stream" class="form-control form-control-sm" value=${filters.stream}
        placeholder="ticket-…" onInput=${set("stream")} /></div>
    ${select("type", "Type", types)}
    ${select("actor", "Actor", actors)}
    <div class="col-6 col-md-2">
      <label class="form-label small mb-1" for="audit-from">From</label>
      <input id="audit-from" type="datetime-local" class="form-control form-control-sm"
        value=${filters.from} onInput=${set("from")} /></div>
    <div class="col-6 col-md-2">
      <label class="form-label small mb-1" for="audit-to">To</label>
      <input id="audit-to" type="datetime-local" class="form-control form-control-sm"
        value=${filters.to} onInput=${set("to")} /></div>
    <div class="col-6 col-md-2 text-end">
      <button type="button" class="btn btn-sm btn-link"
        onClick=${() => setFilters(NO_FILTERS)}>Clear filters</button></div>
  </form>`;
}

const NO_FILTERS = { stream: "", type: "", actor: "", from: "", to: "" };

export function AuditPage({ query }) {
  useTitle("Audit log");
  const log = useLoad(readLog, []);
  const [filters, setFilters] = useState({ ...NO_FILTERS, stream: query.get("stream") || "" });
  const [shown, setShown] = useState(SHOWN);
  const events = log.data?.events || [];
  const types = useMemo(() => [...new Set(events.map((e) => e.type))].sort(), [events]);
  const actors = useMemo(() => [...new Set(events.map(
    (e) => actorOf(e.metadata.actor, e.data, e.type)))].sort(), [events]);
  const found = useMemo(() => events.filter((e) => matches(e, filters)), [events, filters]);
  return html`<div>
    <${PageHeader} title="Audit log" subtitle="Every event, in the order it was stored">
      <button class="btn btn-outline-secondary" onClick=${log.reload}
        disabled=${log.loading}>Reload</button>
    </${PageHeader}>
    <${ChainVerdict} />
    <div class="card shadow-sm">
      <div class="card-body pb-0">
        <${Filters} filters=${filters} setFilters=${(f) => { setFilters(f); setShown(SHOWN); }}
          types=${types} actors=${actors} />
        <${ErrorAlert} error=${log.error} onRetry=${log.reload} />
        ${log.data && html`<p class="small text-secondary" data-testid="audit-count">
          ${found.length} of ${events.length} events${log.data.complete ? ""
            : ` (the first ${MAX_EVENTS} only)`}</p>`}
      </div>
      ${!log.data && !log.error && html`<div class="card-body"><${Spinner}
        label="Reading the log…" /></div>`}
      ${log.data && found.length === 0 && html`<${Empty} title="No event matches." />`}
      ${found.length > 0 && html`<div class="table-responsive">
        <table class="table table-sm align-middle mb-0 audit-table">
          <thead class="table-light"><tr>
            <th scope="col" class="text-end">#</th><th scope="col">Recorded</th>
            <th scope="col">Stream</th><th scope="col">Type</th><th scope="col">Actor</th>
            <th scope="col">What happened</th>
          </tr></thead>
          <tbody>${found.slice(0, shown).map((e) => html`<${EventRow} event=${e}
            key=${e.position} />`)}</tbody>
        </table></div>`}
      ${found.length > shown && html`<div class="card-footer bg-white text-center">
        <button class="btn btn-sm btn-outline-secondary" onClick=${() => setShown(shown + SHOWN)}>
          Show ${Math.min(SHOWN, found.length - shown)} more</button></div>`}
    </div>
  </div>`;
}
