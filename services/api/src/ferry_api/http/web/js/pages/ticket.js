// One ticket: its state, source and staged tree, what the caller may do, the per-host progress
// of a publish (live), and its timeline.
import { html } from "../view.js";
import { api } from "../api.js";
import { useLoad } from "../loading.js";
import { useLive } from "../live.js";
import { href } from "../router.js";
import { ErrorAlert, PageHeader, Spinner, Time, useTitle } from "../components.js";
import { HostStateBadge, StateBadge } from "../badges.js";
import { bytes, count, safeUrl, seconds, shortHash, shortId } from "../format.js";
import { actorOf, describe, toneOf } from "../event-texts.js";
import { TicketActions } from "./ticket-actions.js";

const Hash = ({ value }) => (value
  ? html`<code class="hash" title=${value}>${shortHash(value)}</code>`
  : html`<span class="text-secondary">—</span>`);

const NEXT = {
  staging_pending: "Waiting for the staging agent.",
  staging: "The staging agent is checking the source out.",
  testing: "Test the release on the staging site; then its author or a lead passes the tests.",
  awaiting_approval: "A lead (not its author) approves or rejects it.",
  approved: "Approved: its author or a lead publishes it.",
  publishing: "Syncing to the hosts; this page updates by itself.",
  publish_failed: "Some hosts failed; retry them once the cause is fixed.",
  returned: "Returned: its author resubmits or cancels it.",
  staging_failed: "Staging failed: its author resubmits or cancels it.",
};

function StagingLink({ url }) {
  const safe = safeUrl(url || "");
  if (!safe) return html`<span class="text-secondary">no staging site configured</span>`;
  return html`<a href=${safe} target="_blank" rel="noopener noreferrer">${safe}</a>`;
}

function Details({ ticket: t }) {
  const row = (label, value) => html`<dt class="col-sm-4 col-lg-3">${label}</dt>
    <dd class="col-sm-8 col-lg-9">${value}</dd>`;
  return html`<section class="card shadow-sm mb-4" aria-labelledby="details-title">
    <div class="card-header bg-white"><h2 class="h6 mb-0" id="details-title">Details</h2></div>
    <div class="card-body">
      <div class="reason mb-3" data-testid="reason">${t.reason}</div>
      <dl class="row mb-0 details">
        ${row("App", html`<a href=${href(["apps", t.app])}>${t.app}</a>`)}
        ${row("Author", t.submitters.length > 1
          ? `${t.author} (also filed by ${t.submitters.filter((s) => s !== t.author).join(", ")})`
          : t.author)}
        ${t.kind === "rollback"
          ? row("Rolls back to", html`release ${t.target_version}`)
          : row("Source", html`<code>${t.ref}</code>${t.source_revision && html` at revision${" "}
            <${Hash} value=${t.source_revision} />`}`)}
        ${t.kind !== "rollback" && row("Staged commit", html`<${Hash} value=${t.staged_commit} />`)}
        ${t.kind !== "rollback" && row("Staged tree", html`<${Hash} value=${t.staged_tree} />`)}
        ${t.kind !== "rollback" && row("Staging site", html`<${StagingLink} url=${t.staging_url} />`)}
        ${t.tested_by && row("Tests passed by", t.tested_by)}
        ${t.approved_by && row("Approved by", t.approved_by)}
        ${t.version && row("Release", html`<strong>${t.version}</strong>${t.digest && html`
          <span class="ms-2"><${Hash} value=${t.digest} /></span>`}`)}
        ${row("Filed", html`<${Time} at=${t.created_at} />`)}
        ${row("Last change", html`<${Time} at=${t.updated_at} />`)}
      </dl>
    </div>
  </section>`;
}

function HostProgress({ ticket }) {
  const rows = Object.entries(ticket.hosts);
  if (!rows.length) return null;
  const done = rows.filter(([, h]) => h.state === "completed").length;
  const failed = rows.filter(([, h]) => h.state === "failed").length;
  const percent = Math.round((100 * done) / rows.length);
  return html`<section class="card shadow-sm mb-4" aria-labelledby="hosts-title">
    <div class="card-header bg-white d-flex align-items-center gap-2">
      <h2 class="h6 mb-0 me-auto" id="hosts-title">Hosts</h2>
      <span class="small text-secondary" data-testid="host-summary">
        ${`${done} of ${rows.length} live${failed ? `, ${failed} failed` : ""}`}</span>
    </div>
    <div class="progress rounded-0" role="progressbar" aria-label="Hosts live"
      aria-valuenow=${percent} aria-valuemin="0" aria-valuemax="100" style="height: 4px">
      <div class=${`progress-bar ${failed ? "bg-danger" : "bg-success"}`}
        style=${`width: ${percent}%`}></div>
    </div>
    <div class="table-responsive">
      <table class="table align-middle mb-0 host-table">
        <thead class="table-light"><tr>
          <th scope="col">Host</th><th scope="col">State</th><th scope="col">Release</th>
          <th scope="col" class="text-end d-none d-sm-table-cell">Files</th>
          <th scope="col" class="text-end d-none d-sm-table-cell">Transferred</th>
          <th scope="col" class="text-end d-none d-sm-table-cell">Time</th><th scope="col">Error</th>
        </tr></thead>
        <tbody>
          ${rows.map(([host, h]) => html`<tr key=${host} data-host=${host} data-state=${h.state}
              class=${{ completed: "table-success", failed: "table-danger" }[h.state] || ""}>
            <td class="fw-semibold text-nowrap">${host}</td>
            <td><${HostStateBadge} state=${h.state} />
              ${h.attempt > 1 && html`<span class="small text-secondary ms-1">
                attempt ${h.attempt}</span>`}</td>
            <td>${h.version}</td>
            <td class="text-end d-none d-sm-table-cell">${count(h.files)}</td>
            <td class="text-end d-none d-sm-table-cell">${bytes(h.bytes)}</td>
            <td class="text-end d-none d-sm-table-cell">${seconds(h.seconds)}</td>
            <td class="text-danger small text-break">${h.error || ""}</td>
          </tr>`)}
        </tbody>
      </table>
    </div>
  </section>`;
}

function Timeline({ events }) {
  return html`<section class="card shadow-sm" aria-labelledby="timeline-title">
    <div class="card-header bg-white"><h2 class="h6 mb-0" id="timeline-title">Timeline</h2></div>
    <ol class="timeline list-unstyled mb-0 p-3">
      ${[...events].reverse().map((e) => {
        const [what, said] = describe(e.type, e.data);
        return html`<li class="timeline-item tone-${toneOf(e.type)}" key=${e.position}
            data-type=${e.type}>
          <div class="d-flex gap-2 align-items-baseline">
            <div class="flex-grow-1"><span class="fw-semibold">${actorOf(e.actor, e.data, e.type)}</span>
              ${" "}${what}</div>
            <span class="small text-secondary text-nowrap"><${Time} at=${e.at} /></span>
          </div>
          ${said && html`<blockquote class="said mb-0 mt-1">${said}</blockquote>`}
        </li>`;
      })}
    </ol>
  </section>`;
}

export function TicketPage({ parts }) {
  const id = parts[1];
  const path = `/tickets/${encodeURIComponent(id)}`;
  const ticket = useLoad(() => api.get(path), [id]);
  const timeline = useLoad(() => api.get(`${path}/events`), [id]);
  useLive((event) => event.stream === `ticket-${id}`, () => {
    ticket.reload();
    timeline.reload();
  });
  const t = ticket.data;
  useTitle(t ? `#${shortId(t.id)} ${t.app}` : "Ticket");
  if (ticket.error && !t) return html`<${ErrorAlert} error=${ticket.error} onRetry=${ticket.reload} />`;
  if (!t) return html`<${Spinner} />`;
  const changed = (updated) => {
    ticket.setData(updated);
    timeline.reload();
  };
  return html`<div class="ticket-page" data-ticket=${t.id}>
    <nav aria-label="breadcrumb"><ol class="breadcrumb small mb-2">
      <li class="breadcrumb-item"><a href="#/">Tickets</a></li>
      <li class="breadcrumb-item"><a href=${href(["apps", t.app])}>${t.app}</a></li>
      <li class="breadcrumb-item active" aria-current="page">#${shortId(t.id)}</li>
    </ol></nav>
    <${PageHeader} title=${html`${t.kind === "rollback" ? "Rollback" : "Release"} of ${t.app}
      <span class="font-monospace text-secondary fs-5 ms-1">#${shortId(t.id)}</span>`}
      subtitle=${NEXT[t.state]}>
      <span class="fs-5" data-testid="ticket-state"><${StateBadge} state=${t.state} /></span>
    </${PageHeader}>
    <${ErrorAlert} error=${ticket.error} onRetry=${ticket.reload} />
    ${t.error && html`<div class="alert alert-danger" role="alert">
      <strong>${t.state === "staging_failed" ? "Staging failed" : "Last failure"}:</strong>
      <span class="text-break"> ${t.error}</span></div>`}
    <div class="mb-4"><${TicketActions} ticket=${t} onChanged=${changed} /></div>
    <div class="row g-4">
      <div class="col-lg-7">
        <${Details} ticket=${t} />
        <${HostProgress} ticket=${t} />
      </div>
      <div class="col-lg-5">
        ${timeline.data ? html`<${Timeline} events=${timeline.data.events} />`
          : timeline.error ? html`<${ErrorAlert} error=${timeline.error} onRetry=${timeline.reload} />`
          : html`<${Spinner} />`}
      </div>
    </div>
  </div>`;
}
