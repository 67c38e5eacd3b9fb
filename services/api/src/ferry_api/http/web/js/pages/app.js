// One app: its configuration (admins edit it), its releases with a rollback request on the
// others, and what each of its hosts runs, drift highlighted.
import { html, useState } from "../view.js";
import { api, fieldErrors } from "../api.js";
import { useLoad } from "../loading.js";
import { useLive } from "../live.js";
import { href, navigate } from "../router.js";
import { useSession } from "../session.js";
import {
  Empty, ErrorAlert, Field, Modal, PageHeader, Spinner, Time, invalid, useTitle,
} from "../components.js";
import { OnlineBadge } from "../badges.js";
import { safeUrl, shortHash, shortId } from "../format.js";
import { AppForm } from "../app-form.js";

const RELEASE_HOST = { live: "text-bg-success", syncing: "text-bg-info", failed: "text-bg-danger" };

function Config({ app, onSaved }) {
  const { me } = useSession();
  const [editing, setEditing] = useState(false);
  const row = (label, value) => html`<dt>${label}</dt><dd class="text-break">${value}</dd>`;
  const none = html`<span class="text-secondary">none</span>`;
  const staging = safeUrl(app.staging_url);
  return html`<section class="card shadow-sm mb-4" aria-labelledby="config-title">
    <div class="card-header bg-white d-flex align-items-center">
      <h2 class="h6 mb-0 me-auto" id="config-title">Configuration</h2>
      ${me.role === "admin" && !editing && html`<button class="btn btn-sm btn-outline-primary"
        onClick=${() => setEditing(true)}>Edit</button>`}
    </div>
    <div class="card-body">
      ${editing ? html`<${AppForm} app=${app} onCancel=${() => setEditing(false)}
          onSaved=${(saved) => { setEditing(false); onSaved(saved); }} />`
        : html`<dl class="mb-0 stacked">
          ${row("Source", html`<span class="badge text-bg-light border me-1">${app.source.type}</span>
            <code>${app.source.url}</code>`)}
          ${row("Staging site", staging ? html`<a href=${staging} target="_blank"
            rel="noopener noreferrer">${staging}</a>` : none)}
          ${row("Hosts", app.hosts.length ? app.hosts.join(", ") : none)}
          ${row("Target path", app.target_path ? html`<code>${app.target_path}</code>` : none)}
          ${row("Excludes", app.excludes.length ? html`<code>${app.excludes.join("  ")}</code>` : none)}
          ${row("Releases kept", app.keep_releases)}
          ${row("Changed", html`<${Time} at=${app.updated_at} /> by ${app.updated_by}`)}
        </dl>`}
    </div>
  </section>`;
}

function RollbackDialog({ app, release, onClose }) {
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    if (!reason.trim()) {
      setErrors({ reason: "Say why: the approving lead reads it." });
      return;
    }
    setBusy(true);
    try {
      const ticket = await api.post("/tickets", {
        app, kind: "rollback", version: release.version, reason,
      });
      navigate(["tickets", ticket.id]);
    } catch (error) {
      const byField = fieldErrors(error);
      setErrors(byField);
      setFailure(error.status !== 422 || byField[""] ? error : null);
      setBusy(false);
    }
  };
  return html`<${Modal} title=${`Roll ${app} back to release ${release.version}`}
      onClose=${onClose}>
    <form onSubmit=${submit} noValidate>
      <div class="alert alert-warning py-2" role="note">This files a rollback ticket. A lead
        approves it; publishing it switches every host to release ${release.version} (commit
        <code>${shortHash(release.commit)}</code>).</div>
      <${ErrorAlert} error=${failure} />
      <${Field} id="rollback-reason" label="Reason" error=${errors.reason}>
        <textarea id="rollback-reason" rows="3" class=${`form-control${invalid(errors.reason)}`}
          value=${reason} onInput=${(e) => setReason(e.target.value)}></textarea>
      </${Field}>
      <div class="d-flex justify-content-end gap-2">
        <button type="button" class="btn btn-outline-secondary" onClick=${onClose}>Back</button>
        <button type="submit" class="btn btn-warning" disabled=${busy}
          data-confirm="rollback">${busy ? "Filing…" : "Yes, request the rollback"}</button>
      </div>
    </form>
  </${Modal}>`;
}

function Releases({ app, releases, current }) {
  const [rollingBack, setRollingBack] = useState(null);
  if (!releases.length) {
    return html`<${Empty} title="No releases yet.">
      <a href=${href(["tickets", "new"], { app })}>File a release ticket</a></${Empty}>`;
  }
  return html`<div class="table-responsive"><table class="table align-middle mb-0 release-table">
    <thead class="table-light"><tr>
      <th scope="col">Release</th><th scope="col">Commit</th><th scope="col">Ticket</th>
      <th scope="col" class="d-none d-md-table-cell">Author / approver</th>
      <th scope="col">Tagged</th><th scope="col">Hosts</th><th scope="col"></th>
    </tr></thead>
    <tbody>${releases.map((r) => html`<tr key=${r.version} data-version=${r.version}
        class=${r.version === current ? "table-primary" : ""}>
      <td class="fw-semibold text-nowrap">${r.version}
        ${r.version === current && html`<span class="badge text-bg-primary ms-1">current</span>`}</td>
      <td><code title=${r.commit}>${shortHash(r.commit)}</code></td>
      <td><a class="font-monospace" href=${href(["tickets", r.ticket_id])}>#${shortId(r.ticket_id)}</a></td>
      <td class="d-none d-md-table-cell small">${r.author || "—"} / ${r.approver || "—"}</td>
      <td class="small text-nowrap"><${Time} at=${r.published_at || r.tagged_at} /></td>
      <td>${Object.entries(r.hosts).map(([host, state]) => html`<span
        class="badge ${RELEASE_HOST[state] || "text-bg-secondary"} me-1" title=${state}>${host}</span>`)}</td>
      <td class="text-end">${r.version !== current && html`<button type="button"
        class="btn btn-sm btn-outline-warning text-nowrap" data-rollback=${r.version}
        onClick=${() => setRollingBack(r)}>Request rollback</button>`}</td>
    </tr>`)}</tbody>
  </table>
  ${rollingBack && html`<${RollbackDialog} app=${app} release=${rollingBack}
    onClose=${() => setRollingBack(null)} />`}
  </div>`;
}

function HostVersions({ rows }) {
  if (!rows.length) return html`<${Empty} title="No hosts run this app yet." />`;
  return html`<div class="table-responsive"><table class="table align-middle mb-0">
    <thead class="table-light"><tr><th scope="col">Host</th><th scope="col">Agent</th>
      <th scope="col">Runs</th><th scope="col">Should run</th></tr></thead>
    <tbody>${rows.map(({ host, entry }) => html`<tr key=${host.host} data-host=${host.host}
        class=${entry.drift ? "table-warning" : ""}>
      <td class="fw-semibold">${host.host}${!entry.configured && html`
        <span class="badge text-bg-light border ms-1">not configured</span>`}</td>
      <td><${OnlineBadge} online=${host.online} /></td>
      <td>${entry.current ?? html`<span class="text-secondary">nothing</span>`}</td>
      <td>${entry.target ?? "—"} ${entry.drift && html`<span class="badge text-bg-warning ms-1"
        data-testid="drift">drift</span>`}</td>
    </tr>`)}</tbody>
  </table></div>`;
}

async function loadApp(name) {
  const path = `/apps/${encodeURIComponent(name)}`;
  const [app, releases, hosts] = await Promise.all([
    api.get(path), api.get(`${path}/releases`, { limit: 100 }), api.get("/hosts"),
  ]);
  const rows = hosts.flatMap((host) => host.apps.filter((e) => e.app === name)
    .map((entry) => ({ host, entry })));
  const target = rows.map(({ entry }) => entry.target).find((v) => v != null);
  const current = target ?? releases.releases[0]?.version ?? null;
  return { app, releases: releases.releases, rows, current };
}

export function AppPage({ parts }) {
  const name = parts[1];
  useTitle(name);
  const found = useLoad(() => loadApp(name), [name]);
  useLive((e) => e.stream === `app-${name}` || e.data?.app === name, found.reload, 400);
  if (found.error && !found.data) return html`<${ErrorAlert} error=${found.error}
    onRetry=${found.reload} />`;
  if (!found.data) return html`<${Spinner} />`;
  const { app, releases, rows, current } = found.data;
  const drift = rows.filter(({ entry }) => entry.drift).length;
  return html`<div>
    <nav aria-label="breadcrumb"><ol class="breadcrumb small mb-2">
      <li class="breadcrumb-item"><a href=${href("apps")}>Apps</a></li>
      <li class="breadcrumb-item active" aria-current="page">${app.name}</li>
    </ol></nav>
    <${PageHeader} title=${app.name} subtitle=${current
      ? `Release ${current} is current` : "Not released yet"}>
      <a class="btn btn-outline-secondary" href=${href([], { app: app.name })}>Tickets</a>
      <a class="btn btn-primary" href=${href(["tickets", "new"], { app: app.name })}>New ticket</a>
    </${PageHeader}>
    <${ErrorAlert} error=${found.error} onRetry=${found.reload} />
    <div class="row g-4">
      <div class="col-xl-8">
        <section class="card shadow-sm mb-4" aria-labelledby="releases-title">
          <div class="card-header bg-white"><h2 class="h6 mb-0" id="releases-title">Releases</h2></div>
          <${Releases} app=${app.name} releases=${releases} current=${current} />
        </section>
        <section class="card shadow-sm mb-4" aria-labelledby="versions-title">
          <div class="card-header bg-white d-flex align-items-center gap-2">
            <h2 class="h6 mb-0 me-auto" id="versions-title">Hosts</h2>
            ${drift > 0 && html`<span class="badge text-bg-warning">${drift} drifting</span>`}
          </div>
          <${HostVersions} rows=${rows} />
        </section>
      </div>
      <div class="col-xl-4">
        <${Config} app=${app} onSaved=${() => found.reload()} />
      </div>
    </div>
  </div>`;
}
