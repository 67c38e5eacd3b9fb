// Events in words, for the ticket timeline and the audit log. Each returns text and, where a
// person wrote something (a reason, a comment), that text apart, shown as a quote.
import { html } from "./view.js";
import { bytes, seconds, shortHash, shortId } from "./format.js";

const code = (text) => html`<code>${text}</code>`;
const release = (version) => html`<strong>release ${version}</strong>`;
const list = (items) => (items || []).join(", ");

const TEXTS = {
  "ticket.submitted": (d) => d.kind === "rollback"
    ? [html`requested a rollback of ${d.app} to ${release(d.version)}`, d.reason]
    : [html`submitted ${d.app} at ${code(d.ref)} for release`, d.reason],
  "ticket.resubmitted": (d) => [html`resubmitted with ${code(d.ref)}`, d.reason],
  "ticket.staging_requested": (d) => [html`asked for ${code(d.ref)} to be staged${" "}
    ${`(attempt ${d.attempt})`}`],
  "staging.started": () => ["staging started"],
  "staging.completed": (d) => [html`staged commit ${code(shortHash(d.commit))}${", "}tree${" "}
    ${code(shortHash(d.tree))} (${d.files} files)`],
  "staging.failed": (d) => [html`staging failed: ${d.reason}`],
  "ticket.returned": (d) => ["returned the ticket to its author", d.comment],
  "ticket.tests_passed": (d) => [html`passed the tests of tree ${code(shortHash(d.tree))}`],
  "ticket.approved": (d) => ["approved the release", d.comment],
  "ticket.rejected": (d) => ["rejected the release", d.reason],
  "ticket.publish_requested": (d) => [html`asked to publish ${release(d.version)}`],
  "release.tag_requested": (d) => [html`asked the publisher to tag ${release(d.version)}`],
  "release.tagged": (d) => [html`tagged ${release(d.version)}: ${d.files} files, ${" "}
    ${bytes(d.bytes)}, digest ${code(shortHash(d.digest))}`],
  "release.tag_failed": (d) => [html`could not tag ${release(d.version)}: ${d.reason}`],
  "host.sync_requested": (d) => [html`asked ${d.host} to sync ${release(d.version)}`],
  "host.sync_completed": (d) => [html`${d.host} runs ${release(d.version)}${" "}
    (${bytes(d.bytes_transferred)} in ${seconds(d.seconds)})`],
  "host.sync_failed": (d) => [html`${d.host} failed to sync ${release(d.version)}: ${d.reason}`],
  "ticket.published": (d) => [html`${release(d.version)} is live on every host`],
  "ticket.publish_failed": (d) => [html`publishing ${release(d.version)} failed on${" "}
    ${list(d.failed_hosts)}`],
  "ticket.retried": (d) => [html`retried the sync on ${list(d.hosts)}`],
  "ticket.cancelled": (d) => ["cancelled the ticket", d.reason],
  "app.created": (d) => [html`created app ${d.name}`],
  "app.updated": (d) => [html`changed ${Object.keys(d.changes || {}).join(", ")} of ${d.name}`],
  "app.webhook_changed": (d) => [html`${d.change} webhook ${code(d.webhook_id)} of ${d.app}${" "}
    (${d.format}: ${list(d.events)})`],
  "app.version_allocated": (d) => [html`allocated ${release(d.version)} of ${d.app}`],
  "app.staging_taken": (d) => [html`staging workspace of ${d.app} now holds tree${" "}
    ${code(shortHash(d.tree))}`],
  "user.created": (d) => [html`created user ${d.username} (${d.role})`],
  "user.role_changed": (d) => [html`made ${d.username} a ${d.role}`],
  "user.password_changed": (d) => [html`changed the password of ${d.username}`],
  "user.disabled": (d) => [html`disabled ${d.username}`],
  "user.enabled": (d) => [html`enabled ${d.username}`],
  "token.created": (d) => [html`created API token “${d.name}” for ${d.username}`],
  "token.revoked": (d) => [html`revoked an API token of ${d.username}`],
  "agent.command_refused": (d) => [html`${d.agent} refused a ${code(d.command_type)} command${" "}
    (${code(shortId(d.command_event_id))}): ${d.reason}`],
  "report.rejected": (d) => [html`rejected a ${code(d.claimed_type)} report${" "}
    ${d.ticket_id ? `for ticket ${d.ticket_id}` : ""}${d.host ? ` of host ${d.host}` : ""}${" "}
    from ${d.sender || "an unknown sender"}: ${d.reason}`],
};

/** [what happened, what a person wrote or undefined] for an event's type and data. */
export function describe(type, data) {
  const text = TEXTS[type];
  if (!text) return [type, undefined];
  try {
    return text(data || {});
  } catch {
    return [type, undefined];
  }
}

export const EVENT_TYPES = Object.keys(TEXTS);

const AGENTS = {
  staging: () => "staging agent",
  release: () => "publisher",
  host: (data) => `rsync agent on ${data?.host}`,
};

/** Who did it: the event's actor, else the `by` its payload names, else the agent that reports
 * events of its kind, else the system. */
export function actorOf(actor, data, type = "") {
  const agent = AGENTS[type.split(".")[0]];
  const reported = agent && !type.endsWith("_requested");
  return actor || data?.by || (reported ? agent(data) : "ferry");
}

const TONES = {
  failed: "danger", rejected: "danger", cancelled: "secondary", tag_failed: "danger",
  publish_failed: "danger", sync_failed: "danger", approved: "success", published: "success",
  sync_completed: "success", tests_passed: "success", completed: "success", returned: "warning",
  command_refused: "danger",
};

export function toneOf(type) {
  const verb = type.split(".").at(-1);
  return TONES[verb] || "primary";
}
