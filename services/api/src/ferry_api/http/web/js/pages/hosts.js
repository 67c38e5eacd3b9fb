// Every production host: its agent online or not, the last heartbeat, each app's version.
import { html, useEffect } from "../view.js";
import { api } from "../api.js";
import { useLoad } from "../loading.js";
import { useLive } from "../live.js";
import { href } from "../router.js";
import { Empty, ErrorAlert, PageHeader, Spinner, Time, useTitle } from "../components.js";
import { OnlineBadge } from "../badges.js";

const POLL_MS = 5000; // heartbeats are live state, not events: the stream does not carry them

function AppVersion({ entry }) {
  const tone = entry.drift ? "text-bg-warning" : entry.current == null
    ? "text-bg-light border" : "text-bg-success";
  const title = entry.drift ? `runs ${entry.current ?? "nothing"}, should run ${entry.target}`
    : `runs ${entry.current ?? "nothing"}`;
  return html`<a href=${href(["apps", entry.app])} class="badge ${tone} text-decoration-none me-1
      app-version" title=${title} data-app=${entry.app} data-drift=${entry.drift}
      data-current=${entry.current ?? ""}>
    ${entry.app} ${entry.current ?? "—"}${entry.drift ? ` → ${entry.target}` : ""}
  </a>`;
}

export function HostsPage() {
  useTitle("Hosts");
  const hosts = useLoad(() => api.get("/hosts"), []);
  useLive((e) => e.type?.startsWith("host."), hosts.reload, 300);
  useEffect(() => {
    const timer = setInterval(hosts.reload, POLL_MS);
    return () => clearInterval(timer);
  }, []);
  const online = hosts.data?.filter((h) => h.online).length ?? 0;
  return html`<div>
    <${PageHeader} title="Hosts" subtitle=${hosts.data
      ? `${online} of ${hosts.data.length} agents online` : "Production hosts and their agents"} />
    <${ErrorAlert} error=${hosts.error} onRetry=${hosts.reload} />
    ${!hosts.data && !hosts.error && html`<${Spinner} />`}
    ${hosts.data?.length === 0 && html`<div class="card shadow-sm"><${Empty}
      title="No hosts yet.">Hosts appear when an app lists them or an agent reports in.</${Empty}>
      </div>`}
    ${hosts.data?.length > 0 && html`<div class="card shadow-sm"><div class="table-responsive">
      <table class="table align-middle mb-0 hosts-table">
        <thead class="table-light"><tr>
          <th scope="col">Host</th><th scope="col">Agent</th><th scope="col">Last heartbeat</th>
          <th scope="col">Apps (release live)</th>
        </tr></thead>
        <tbody>${hosts.data.map((h) => html`<tr key=${h.host} data-host=${h.host}
            data-online=${h.online} class=${h.apps.some((a) => a.drift) ? "table-warning" : ""}>
          <td class="fw-semibold">${h.host}</td>
          <td><${OnlineBadge} online=${h.online} />
            ${h.agent_version && html`<div class="small text-secondary">
              ${`${h.agent} ${h.agent_version}`}</div>`}</td>
          <td class="small text-nowrap"><${Time} at=${h.last_seen} /></td>
          <td>${h.apps.length ? h.apps.map((a) => html`<${AppVersion} entry=${a} key=${a.app} />`)
            : html`<span class="text-secondary small">none</span>`}</td>
        </tr>`)}</tbody>
      </table>
    </div></div>`}
  </div>`;
}
