// The ticket's action buttons (exactly those the API allows the caller) and their dialogs.
import { html, useState } from "../view.js";
import { api, fieldErrors } from "../api.js";
import { ErrorAlert, Field, Modal, invalid } from "../components.js";

// label, button style, fields asked for, dialog text; `danger` dialogs confirm a big step.
const ACTIONS = {
  "pass-tests": {
    label: "Pass tests", style: "success", fields: ["comment"],
    text: () => "You checked the staging site and the release works. A lead approves it next.",
  },
  approve: {
    label: "Approve", style: "success", fields: ["comment"],
    text: (t) => `Approve ${t.app} for publishing. Four eyes: you did not file it.`,
  },
  reject: {
    label: "Reject", style: "danger", fields: ["reason"], required: ["reason"],
    text: () => "The ticket goes back to its author with your reason.",
  },
  return: {
    label: "Return to author", style: "outline-secondary", fields: ["comment"],
    text: () => "Send the ticket back to its author, e.g. when a test failed.",
  },
  resubmit: {
    label: "Resubmit", style: "primary", fields: ["ref", "reason"], prefill: true,
    text: () => "Stage again, with the same or a new source; earlier approvals no longer count.",
  },
  publish: {
    label: "Publish", style: "primary", danger: true, fields: [],
    text: (t) => (t.kind === "rollback"
      ? `Roll ${t.app} back to release ${t.target_version} on every host now.`
      : `Tag the tested tree as the next release of ${t.app} and sync it to every host now.`),
  },
  retry: {
    label: "Retry failed hosts", style: "warning", fields: [],
    text: (t) => `Sync release ${t.version} again on the hosts that failed.`,
  },
  cancel: {
    label: "Cancel ticket", style: "outline-danger", fields: ["reason"], danger: true,
    text: () => "The ticket ends here and cannot be reopened.",
  },
};
const ORDER = ["pass-tests", "approve", "publish", "retry", "resubmit", "return", "reject",
  "cancel"];
const LABELS = { comment: "Comment (optional)", reason: "Reason", ref: "Source ref" };

function ActionDialog({ ticket, action, onClose, onDone }) {
  const spec = ACTIONS[action];
  const isRollback = ticket.kind === "rollback";
  const title = action === "publish" && isRollback ? "Publish the rollback" : spec.label;
  const [form, setForm] = useState(spec.prefill
    ? { ref: ticket.ref || "", reason: ticket.reason || "" } : { comment: "", reason: "" });
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event) => {
    event.preventDefault();
    const missing = (spec.required || []).filter((name) => !form[name]?.trim());
    if (missing.length) {
      setErrors(Object.fromEntries(missing.map((name) => [name, `${LABELS[name]} is needed.`])));
      return;
    }
    setBusy(true);
    setFailure(null);
    const body = Object.fromEntries(spec.fields.map((name) => [name, form[name]]));
    try {
      onDone(await api.post(`/tickets/${encodeURIComponent(ticket.id)}/${action}`, body));
    } catch (error) {
      const byField = fieldErrors(error);
      setErrors(byField);
      setFailure(error.status !== 422 || byField[""] ? error : null);
      setBusy(false);
    }
  };

  const field = (name) => {
    const id = `action-${name}`;
    const control = name === "ref"
      ? html`<input id=${id} class=${`form-control font-monospace${invalid(errors.ref)}`}
          value=${form.ref} onInput=${(e) => setForm({ ...form, ref: e.target.value })}
          spellcheck="false" autocomplete="off" />`
      : html`<textarea id=${id} class=${`form-control${invalid(errors[name])}`} rows="3"
          value=${form[name]} onInput=${(e) => setForm({ ...form, [name]: e.target.value })}>
        </textarea>`;
    return html`<${Field} id=${id} label=${LABELS[name]} error=${errors[name]}>${control}</${Field}>`;
  };

  const style = spec.danger ? (action === "cancel" ? "danger" : "primary") : spec.style
    .replace("outline-", "");
  return html`<${Modal} title=${title} onClose=${onClose}>
    <form onSubmit=${submit} id="action-form" noValidate>
      ${spec.danger && html`<div class="alert ${action === "cancel" ? "alert-danger"
        : "alert-warning"} py-2" role="note">${spec.text(ticket)}</div>`}
      ${!spec.danger && html`<p class="text-secondary">${spec.text(ticket)}</p>`}
      <${ErrorAlert} error=${failure} />
      ${spec.fields.map(field)}
      <div class="d-flex justify-content-end gap-2">
        <button type="button" class="btn btn-outline-secondary" onClick=${onClose}>Back</button>
        <button type="submit" class="btn btn-${style}" disabled=${busy}
          data-confirm=${action}>${busy ? "Working…" : spec.danger ? `Yes, ${title.toLowerCase()}`
            : spec.label}</button>
      </div>
    </form>
  </${Modal}>`;
}

export function TicketActions({ ticket, onChanged }) {
  const [open, setOpen] = useState(null);
  const allowed = ORDER.filter((a) => ticket.allowed_actions.includes(a));
  const unknown = ticket.allowed_actions.filter((a) => !ACTIONS[a]);
  if (!allowed.length && !unknown.length) return null;
  return html`<div class="ticket-actions d-flex flex-wrap gap-2" role="group"
      aria-label="What you can do">
    ${allowed.map((action) => html`<button type="button" data-action=${action}
      class="btn btn-${ACTIONS[action].style}" onClick=${() => setOpen(action)}>
      ${action === "publish" && ticket.kind === "rollback" ? "Publish rollback"
        : ACTIONS[action].label}</button>`)}
    ${unknown.map((action) => html`<span class="badge text-bg-light border">${action}</span>`)}
    ${open && html`<${ActionDialog} ticket=${ticket} action=${open} onClose=${() => setOpen(null)}
      onDone=${(updated) => { setOpen(null); onChanged(updated); }} />`}
  </div>`;
}
