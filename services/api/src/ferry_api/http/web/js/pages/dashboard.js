// The dashboard: tickets that wait for me first, then every ticket, filterable, newest first.
import { html, useState } from "../view.js";
import { api } from "../api.js";
import { useLoad } from "../loading.js";
import { useLive } from "../live.js";
import { href, navigate } from "../router.js";
import { canLead, useSession } from "../session.js";
import { Empty, ErrorAlert, PageHeader, Spinner, useTitle } from "../components.js";
import { TICKET_STATES } from "../badges.js";
import { TicketTable } from "../ticket-table.js";

const PAGE = 25;
const MY_NEXT_STEP = {
  testing: "Test it on the staging site, then pass the tests",
  approved: "Approved: publish it",
  returned: "Returned to you: resubmit or cancel",
  staging_failed: "Staging failed: resubmit or cancel",
  publish_failed: "Some hosts failed: retry",
};
const isTicketEvent = (event) => event.stream?.startsWith("ticket-");

async function ticketsNeeding(me) {
  const mine = await api.get("/tickets", { author: me.username, limit: 200 });
  const todo = mine.tickets.filter((t) => t.state in MY_NEXT_STEP)
    .map((t) => ({ ...t, todo: MY_NEXT_STEP[t.state] }));
  if (canLead(me)) {
    const waiting = await api.get("/tickets", { state: "awaiting_approval", limit: 200 });
    for (const t of waiting.tickets) {
      if (!t.submitters.includes(me.username)) {
        todo.push({ ...t, todo: `Awaits your approval (filed by ${t.author})` });
      }
    }
  }
  return todo.sort((a, b) => b.seq - a.seq);
}

function NeedsMe() {
  const { me } = useSession();
  const found = useLoad(() => ticketsNeeding(me), [me.username]);
  useLive(isTicketEvent, found.reload);
  return html`<section class="card shadow-sm mb-4 needs-me" aria-labelledby="needs-me-title">
    <div class="card-header bg-white d-flex align-items-center gap-2">
      <h2 class="h6 mb-0" id="needs-me-title">Waiting for you</h2>
      ${found.data && html`<span class="badge rounded-pill text-bg-primary">
        ${found.data.length}</span>`}
    </div>
    ${found.error && html`<div class="card-body"><${ErrorAlert} error=${found.error}
      onRetry=${found.reload} /></div>`}
    ${!found.data && !found.error && html`<div class="card-body"><${Spinner} /></div>`}
    ${found.data && found.data.length === 0 && html`<${Empty} title="Nothing waits for you.">
      Tickets you need to test, publish or approve show up here.</${Empty}>`}
    ${found.data?.length > 0 && html`<${TicketTable} tickets=${found.data}
      note=${(t) => t.todo} caption="Tickets waiting for you" />`}
  </section>`;
}

function Filters({ apps, query }) {
  const set = (name, value) => {
    const next = Object.fromEntries(query.entries());
    next[name] = value;
    delete next.page;
    navigate([], next);
  };
  const [author, setAuthor] = useState(query.get("author") || "");
  return html`<form class="row g-2 align-items-end mb-3 filters" role="search"
      onSubmit=${(e) => { e.preventDefault(); set("author", author.trim()); }}>
    <div class="col-6 col-md-3">
      <label class="form-label small mb-1" for="filter-app">App</label>
      <select id="filter-app" class="form-select form-select-sm" value=${query.get("app") || ""}
        onChange=${(e) => set("app", e.target.value)}>
        <option value="">All apps</option>
        ${(apps || []).map((a) => html`<option value=${a.name}>${a.name}</option>`)}
      </select>
    </div>
    <div class="col-6 col-md-3">
      <label class="form-label small mb-1" for="filter-state">State</label>
      <select id="filter-state" class="form-select form-select-sm"
        value=${query.get("state") || ""} onChange=${(e) => set("state", e.target.value)}>
        <option value="">All states</option>
        ${Object.entries(TICKET_STATES).map(([state, [label]]) =>
          html`<option value=${state}>${label}</option>`)}
      </select>
    </div>
    <div class="col-8 col-md-3">
      <label class="form-label small mb-1" for="filter-author">Author</label>
      <input id="filter-author" class="form-control form-control-sm" placeholder="username"
        value=${author} onInput=${(e) => setAuthor(e.target.value)}
        onBlur=${() => author.trim() !== (query.get("author") || "") && set("author", author.trim())} />
    </div>
    <div class="col-4 col-md-3 text-end">
      <a class="btn btn-sm btn-link" href="#/">Clear filters</a>
    </div>
  </form>`;
}

function AllTickets({ query }) {
  const page = Math.max(0, Number.parseInt(query.get("page") || "0", 10) || 0);
  const filters = { app: query.get("app"), state: query.get("state"), author: query.get("author") };
  const key = JSON.stringify({ ...filters, page });
  const apps = useLoad(() => api.get("/apps"), []);
  const found = useLoad(
    () => api.get("/tickets", { ...filters, limit: PAGE, offset: page * PAGE }), [key]);
  useLive(isTicketEvent, found.reload);
  const total = found.data?.total ?? 0;
  const turn = (to) => navigate([], { ...Object.fromEntries(query.entries()), page: to || "" });
  const filtered = Object.values(filters).some(Boolean);
  return html`<section class="card shadow-sm" aria-labelledby="all-title">
    <div class="card-header bg-white"><h2 class="h6 mb-0" id="all-title">All tickets</h2></div>
    <div class="card-body pb-0">
      <${Filters} apps=${apps.data} query=${query} key=${query.get("author") || ""} />
      <${ErrorAlert} error=${found.error} onRetry=${found.reload} />
    </div>
    ${!found.data && !found.error && html`<div class="card-body"><${Spinner} /></div>`}
    ${found.data && total === 0 && html`<${Empty} title=${filtered
      ? "No ticket matches these filters." : "No tickets yet."}>
      ${filtered ? html`<a href="#/">Show all tickets</a>`
        : html`<a href=${href(["tickets", "new"])}>File the first release ticket</a>`}
    </${Empty}>`}
    ${found.data?.tickets.length > 0 && html`<${TicketTable} tickets=${found.data.tickets}
      caption="All tickets" />`}
    ${total > PAGE && html`<div class="card-footer bg-white d-flex align-items-center gap-2">
      <span class="small text-secondary me-auto">
        ${page * PAGE + 1}–${Math.min(total, (page + 1) * PAGE)} of ${total}</span>
      <button class="btn btn-sm btn-outline-secondary" disabled=${page === 0}
        onClick=${() => turn(page - 1)}>Newer</button>
      <button class="btn btn-sm btn-outline-secondary" disabled=${(page + 1) * PAGE >= total}
        onClick=${() => turn(page + 1)}>Older</button>
    </div>`}
  </section>`;
}

export function DashboardPage({ query }) {
  useTitle("Tickets");
  return html`<div>
    <${PageHeader} title="Tickets" subtitle="Release requests, newest first">
      <a class="btn btn-primary" href=${href(["tickets", "new"])}>New ticket</a>
    </${PageHeader}>
    <${NeedsMe} />
    <${AllTickets} query=${query} />
  </div>`;
}
