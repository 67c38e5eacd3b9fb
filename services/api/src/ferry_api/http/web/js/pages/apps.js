// Every app: where its code comes from and where it goes; admins add apps here.
import { html, useState } from "../view.js";
import { api } from "../api.js";
import { useLoad } from "../loading.js";
import { href, navigate } from "../router.js";
import { useSession } from "../session.js";
import { Empty, ErrorAlert, Modal, PageHeader, Spinner, Time, useTitle } from "../components.js";
import { AppForm } from "../app-form.js";

export function AppsPage() {
  useTitle("Apps");
  const { me } = useSession();
  const apps = useLoad(() => api.get("/apps"), []);
  const [creating, setCreating] = useState(false);
  return html`<div>
    <${PageHeader} title="Apps" subtitle="What Ferry releases, and to which hosts">
      ${me.role === "admin" && html`<button class="btn btn-primary"
        onClick=${() => setCreating(true)}>New app</button>`}
    </${PageHeader}>
    <${ErrorAlert} error=${apps.error} onRetry=${apps.reload} />
    ${!apps.data && !apps.error && html`<${Spinner} />`}
    ${apps.data?.length === 0 && html`<div class="card shadow-sm"><${Empty}
      title="No apps yet.">${me.role === "admin" ? "Add the first one with “New app”."
        : "An admin adds apps."}</${Empty}></div>`}
    ${apps.data?.length > 0 && html`<div class="card shadow-sm"><div class="table-responsive">
      <table class="table table-hover align-middle mb-0">
        <thead class="table-light"><tr>
          <th scope="col">App</th><th scope="col">Source</th><th scope="col">Hosts</th>
          <th scope="col" class="d-none d-md-table-cell">Changed</th>
        </tr></thead>
        <tbody>${apps.data.map((a) => html`<tr key=${a.name}>
          <td><a class="fw-semibold" href=${href(["apps", a.name])}>${a.name}</a></td>
          <td class="text-break"><span class="badge text-bg-light border me-1">${a.source.type}</span>
            <span class="small font-monospace">${a.source.url}</span></td>
          <td>${a.hosts.length ? a.hosts.join(", ") : html`<span class="text-secondary">none</span>`}</td>
          <td class="d-none d-md-table-cell small"><${Time} at=${a.updated_at} /></td>
        </tr>`)}</tbody>
      </table></div></div>`}
    ${creating && html`<${Modal} title="New app" wide onClose=${() => setCreating(false)}>
      <${AppForm} onCancel=${() => setCreating(false)}
        onSaved=${(app) => navigate(["apps", app.name])} />
    </${Modal}>`}
  </div>`;
}
