// A list of tickets as a table: the dashboard's and the app page's.
import { html } from "./view.js";
import { StateBadge } from "./badges.js";
import { Time } from "./components.js";
import { href } from "./router.js";
import { shortId } from "./format.js";

export function TicketTable({ tickets, note, caption }) {
  return html`<div class="table-responsive">
    <table class="table table-hover align-middle mb-0 ticket-table">
      ${caption && html`<caption class="visually-hidden">${caption}</caption>`}
      <thead class="table-light">
        <tr>
          <th scope="col">Ticket</th>
          <th scope="col">State</th>
          <th scope="col" class="d-none d-sm-table-cell">App</th>
          <th scope="col" class="d-none d-md-table-cell">Author</th>
          <th scope="col" class="w-50">${note ? "What to do" : "Reason"}</th>
          <th scope="col" class="text-nowrap d-none d-sm-table-cell">Updated</th>
        </tr>
      </thead>
      <tbody>
        ${tickets.map((t) => html`<tr key=${t.id} data-ticket=${t.id}>
          <td class="text-nowrap">
            <a class="fw-semibold font-monospace" href=${href(["tickets", t.id])}>
              #${shortId(t.id)}</a>
            ${t.kind === "rollback" && html`<span class="badge text-bg-dark ms-1">rollback</span>`}
            <div class="d-sm-none small text-secondary">${t.app}</div>
          </td>
          <td><${StateBadge} state=${t.state} /></td>
          <td class="d-none d-sm-table-cell"><a href=${href(["apps", t.app])}>${t.app}</a></td>
          <td class="d-none d-md-table-cell">${t.author}</td>
          <td class="reason-cell">
            ${note ? html`<span class="fw-semibold">${note(t)}</span>
              <div class="text-secondary small text-truncate-2">${t.reason}</div>`
              : html`<div class="text-truncate-2">${t.reason}</div>`}
          </td>
          <td class="text-nowrap small d-none d-sm-table-cell"><${Time} at=${t.updated_at} /></td>
        </tr>`)}
      </tbody>
    </table>
  </div>`;
}
