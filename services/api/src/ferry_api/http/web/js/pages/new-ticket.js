// File a release ticket: an app, what to stage (git ref or svn path@revision), and why.
import { html, useState } from "../view.js";
import { api, fieldErrors } from "../api.js";
import { useLoad } from "../loading.js";
import { href, navigate } from "../router.js";
import {
  Empty, ErrorAlert, Field, PageHeader, Spinner, invalid, useTitle,
} from "../components.js";

const SOURCE_HELP = {
  git: ["Git ref", "main", "A branch, tag or commit of the app's git repository."],
  svn: ["SVN path@revision", "trunk@1234", "A path in the app's svn repository, with an "
    + "optional @revision (default: the latest)."],
};

export function NewTicketPage({ query }) {
  useTitle("New ticket");
  const apps = useLoad(() => api.get("/apps"), []);
  const [form, setForm] = useState({ app: query.get("app") || "", ref: "", reason: "" });
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (event) => setForm({ ...form, [name]: event.target.value });

  if (apps.error) return html`<${ErrorAlert} error=${apps.error} onRetry=${apps.reload} />`;
  if (!apps.data) return html`<${Spinner} />`;
  if (apps.data.length === 0) {
    return html`<${Empty} title="There are no apps to release yet.">
      An admin adds apps on the <a href=${href("apps")}>Apps</a> page.</${Empty}>`;
  }
  // One app only: it is the one.
  const chosen = form.app || (apps.data.length === 1 ? apps.data[0].name : "");
  const app = apps.data.find((a) => a.name === chosen);
  const [refLabel, refExample, refHelp] = SOURCE_HELP[app?.source.type || "git"];

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setFailure(null);
    try {
      const ticket = await api.post("/tickets", {
        app: chosen, kind: "deploy", ref: form.ref.trim(), reason: form.reason,
      });
      navigate(["tickets", ticket.id]);
    } catch (error) {
      const byField = fieldErrors(error);
      setErrors(byField);
      const general = error.status === 422 ? byField[""] : error.message;
      setFailure(general ? { ...error, status: error.status, message: general } : null);
      setBusy(false);
    }
  };

  return html`<div class="narrow-page">
    <${PageHeader} title="New release ticket"
      subtitle="Ferry stages this source for testing; a lead approves it before it is published." />
    <form class="card shadow-sm" onSubmit=${submit} noValidate>
      <div class="card-body">
        <${ErrorAlert} error=${failure} />
        <${Field} id="ticket-app" label="App" error=${errors.app}>
          <select id="ticket-app" class=${`form-select${invalid(errors.app)}`} required
            value=${chosen} onChange=${set("app")} autofocus>
            <option value="" disabled>Choose an app…</option>
            ${apps.data.map((a) => html`<option value=${a.name}>${`${a.name} (${a.source.type})`}
              </option>`)}
          </select>
        </${Field}>
        <${Field} id="ticket-ref" label=${refLabel} error=${errors.ref} help=${refHelp}>
          <input id="ticket-ref" class=${`form-control font-monospace${invalid(errors.ref)}`}
            placeholder=${refExample} value=${form.ref} onInput=${set("ref")}
            autocomplete="off" spellcheck="false" />
        </${Field}>
        <${Field} id="ticket-reason" label="Reason" error=${errors.reason}
          help="What changes and why: testers and the approving lead read this.">
          <textarea id="ticket-reason" class=${`form-control${invalid(errors.reason)}`} rows="4"
            value=${form.reason} onInput=${set("reason")}></textarea>
        </${Field}>
      </div>
      <div class="card-footer bg-white d-flex gap-2 justify-content-end">
        <a class="btn btn-outline-secondary" href="#/">Cancel</a>
        <button class="btn btn-primary" type="submit" disabled=${busy}>
          ${busy ? "Submitting…" : "Submit ticket"}</button>
      </div>
    </form>
  </div>`;
}
