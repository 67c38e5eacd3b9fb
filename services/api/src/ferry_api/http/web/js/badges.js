// State badges: colour and words, so the state reads without relying on colour alone.
import { html } from "./view.js";

export const TICKET_STATES = {
  staging_pending: ["Staging queued", "text-bg-light border"],
  staging: ["Staging", "text-bg-info"],
  staging_failed: ["Staging failed", "text-bg-danger"],
  testing: ["Testing", "text-bg-primary"],
  returned: ["Returned", "text-bg-warning"],
  awaiting_approval: ["Awaiting approval", "text-bg-warning"],
  approved: ["Approved", "badge-approved"],
  publishing: ["Publishing", "text-bg-info"],
  published: ["Published", "text-bg-success"],
  publish_failed: ["Publish failed", "text-bg-danger"],
  cancelled: ["Cancelled", "text-bg-secondary"],
};

export const HOST_STATES = {
  pending: ["Waiting", "text-bg-light border"],
  syncing: ["Syncing", "text-bg-info"],
  completed: ["Live", "text-bg-success"],
  failed: ["Failed", "text-bg-danger"],
};

const ROLES = { admin: "text-bg-dark", lead: "badge-lead", developer: "text-bg-light border" };

export function StateBadge({ state }) {
  const [label, style] = TICKET_STATES[state] || [state, "text-bg-secondary"];
  const busy = state === "staging" || state === "publishing";
  return html`<span class="badge state-badge ${style}" data-state=${state}>
    ${busy && html`<span class="spinner-grow spinner-grow-sm me-1" aria-hidden="true"></span>`}
    ${label}
  </span>`;
}

export function HostStateBadge({ state }) {
  const [label, style] = HOST_STATES[state] || [state, "text-bg-secondary"];
  return html`<span class="badge ${style}">${label}</span>`;
}

export function RoleBadge({ role }) {
  return html`<span class="badge ${ROLES[role] || "text-bg-secondary"}">${role}</span>`;
}

export function OnlineBadge({ online }) {
  return online
    ? html`<span class="badge text-bg-success">Online</span>`
    : html`<span class="badge text-bg-secondary">Offline</span>`;
}
