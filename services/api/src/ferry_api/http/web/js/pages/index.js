// Which page a hash shows.
import { html } from "../view.js";
import { Empty } from "../components.js";
import { DashboardPage } from "./dashboard.js";
import { NewTicketPage } from "./new-ticket.js";
import { TicketPage } from "./ticket.js";
import { AppsPage } from "./apps.js";
import { AppPage } from "./app.js";
import { HostsPage } from "./hosts.js";
import { AuditPage } from "./audit.js";
import { UsersPage } from "./users.js";
import { TokensPage } from "./tokens.js";

function NotFoundPage() {
  return html`<${Empty} title="There is no such page.">
    <a href="#/">Back to the tickets</a>
  </${Empty}>`;
}

export function pageFor(parts) {
  const [first, second, ...rest] = parts;
  if (rest.length) return NotFoundPage;
  if (!first) return DashboardPage;
  if (first === "tickets" && second === "new") return NewTicketPage;
  if (first === "tickets" && second) return TicketPage;
  if (first === "tickets") return DashboardPage;
  if (first === "apps") return second ? AppPage : AppsPage;
  if (first === "hosts" && !second) return HostsPage;
  if (first === "audit" && !second) return AuditPage;
  if (first === "admin" && second === "users") return UsersPage;
  if (first === "tokens" && !second) return TokensPage;
  return NotFoundPage;
}
