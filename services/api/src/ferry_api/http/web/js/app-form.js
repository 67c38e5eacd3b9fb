// An app's configuration as a form: creating one (admin) and changing one (admin).
import { html, useState } from "./view.js";
import { api, fieldErrors } from "./api.js";
import { ErrorAlert, Field, invalid } from "./components.js";

const lines = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);

function formOf(app) {
  return {
    name: app?.name || "",
    source_type: app?.source.type || "git",
    source_url: app?.source.url || "",
    staging_url: app?.staging_url || "",
    hosts: (app?.hosts || []).join("\n"),
    target_path: app?.target_path || "",
    excludes: (app?.excludes || []).join("\n"),
    keep_releases: String(app?.keep_releases ?? 5),
  };
}

function bodyOf(form) {
  return {
    source: { type: form.source_type, url: form.source_url.trim() },
    staging_url: form.staging_url.trim(),
    hosts: lines(form.hosts),
    target_path: form.target_path.trim(),
    excludes: lines(form.excludes),
    keep_releases: Number.parseInt(form.keep_releases, 10) || 0,
  };
}

/** Only what changed, as PATCH /apps/{app} wants it. */
function changesOf(before, after) {
  const changed = {};
  for (const [name, value] of Object.entries(after)) {
    if (JSON.stringify(value) !== JSON.stringify(before[name])) changed[name] = value;
  }
  return changed;
}

export function AppForm({ app, onSaved, onCancel }) {
  const creating = !app;
  const [form, setForm] = useState(() => formOf(app));
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (event) => setForm({ ...form, [name]: event.target.value });

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setFailure(null);
    try {
      const body = bodyOf(form);
      const saved = creating
        ? await api.post("/apps", { name: form.name.trim(), ...body })
        : await api.patch(`/apps/${encodeURIComponent(app.name)}`,
          changesOf(bodyOf(formOf(app)), body));
      onSaved(saved);
    } catch (error) {
      const byField = fieldErrors(error);
      if (byField.source) byField.source_url = byField.source;
      setErrors(byField);
      setFailure(error.status !== 422 || byField[""] ? error : null);
      setBusy(false);
    }
  };

  const input = (name, label, help, extra = {}) => html`<${Field} id=${`app-${name}`}
      label=${label} error=${errors[name]} help=${help} class=${extra.col || "col-md-6"}>
    ${extra.area
      ? html`<textarea id=${`app-${name}`} class=${`form-control font-monospace${invalid(errors[name])}`}
          rows="3" value=${form[name]} onInput=${set(name)}></textarea>`
      : html`<input id=${`app-${name}`} class=${`form-control${invalid(errors[name])}`}
          type=${extra.type || "text"} value=${form[name]} onInput=${set(name)}
          min=${extra.min} max=${extra.max} spellcheck="false" />`}
  </${Field}>`;

  return html`<form onSubmit=${submit} noValidate class="app-form">
    <${ErrorAlert} error=${failure} />
    <div class="row">
      ${creating && input("name", "Name", "Lowercase letters, digits and - (used in URLs).")}
      <${Field} id="app-source_type" label="Source type" class="col-md-6">
        <select id="app-source_type" class="form-select" value=${form.source_type}
          onChange=${set("source_type")}>
          <option value="git">git</option><option value="svn">svn</option>
        </select>
      </${Field}>
      ${input("source_url", "Source repository URL", "Where the staging agent checks out from.",
        { col: "col-12" })}
      ${input("staging_url", "Staging site URL", "Where testers look at a staged release.",
        { col: "col-12" })}
      ${input("hosts", "Production hosts", "One per line.", { area: true })}
      ${input("excludes", "Excludes", "rsync patterns, one per line.", { area: true })}
      ${input("target_path", "Target path on the hosts", "An absolute path.")}
      ${input("keep_releases", "Releases kept per host", "1–100.",
        { type: "number", min: 1, max: 100 })}
    </div>
    <div class="d-flex justify-content-end gap-2">
      ${onCancel && html`<button type="button" class="btn btn-outline-secondary"
        onClick=${onCancel}>Cancel</button>`}
      <button type="submit" class="btn btn-primary" disabled=${busy}>
        ${busy ? "Saving…" : creating ? "Create app" : "Save changes"}</button>
    </div>
  </form>`;
}
