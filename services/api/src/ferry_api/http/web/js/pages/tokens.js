// API tokens for scripts and CI: create one (shown once), list, revoke. Admins see anyone's.
import { html, useState } from "../view.js";
import { api, fieldErrors } from "../api.js";
import { useLoad } from "../loading.js";
import { useSession } from "../session.js";
import {
  Empty, ErrorAlert, Field, Modal, PageHeader, Spinner, Time, invalid, useTitle,
} from "../components.js";

function NewToken({ token, onDismiss }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    await navigator.clipboard?.writeText(token.token);
    setCopied(true);
  };
  return html`<div class="alert alert-success" role="status" data-testid="new-token">
    <div class="fw-semibold mb-2">Token “${token.name}” created. Copy it now: it is shown only
      this once.</div>
    <div class="input-group">
      <input class="form-control font-monospace" readonly value=${token.token}
        aria-label="The new token" onFocus=${(e) => e.target.select()} />
      <button class="btn btn-outline-success" type="button" onClick=${copy}>
        ${copied ? "Copied" : "Copy"}</button>
    </div>
    <div class="mt-2 small">Send it as <code>Authorization: Bearer …</code>.
      <button type="button" class="btn btn-link btn-sm p-0 ms-2" onClick=${onDismiss}>
        Done, hide it</button></div>
  </div>`;
}

function CreateForm({ onCreated }) {
  const [name, setName] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onCreated(await api.post("/tokens", { name: name.trim() }));
      setName("");
    } catch (failure) {
      setError(failure);
    }
    setBusy(false);
  };
  const problem = fieldErrors(error).name;
  return html`<form class="row g-2 align-items-start mb-3" onSubmit=${submit} noValidate>
    <div class="col-sm-8 col-md-6">
      <label class="visually-hidden" for="token-name">What the token is for</label>
      <input id="token-name" class=${`form-control${invalid(problem)}`} value=${name}
        placeholder="What it is for, e.g. “CI deploys”" onInput=${(e) => setName(e.target.value)} />
      ${problem && html`<div class="invalid-feedback d-block">${problem}</div>`}
    </div>
    <div class="col-sm-4 col-md-3">
      <button class="btn btn-primary w-100" type="submit" disabled=${busy}>Create token</button>
    </div>
    ${error && !problem && html`<div class="col-12"><${ErrorAlert} error=${error} /></div>`}
  </form>`;
}

export function TokensPage({ query }) {
  useTitle("API tokens");
  const { me } = useSession();
  const owner = me.role === "admin" ? query.get("user") || me.username : me.username;
  const tokens = useLoad(() => api.get("/tokens", { user: owner }), [owner]);
  const [created, setCreated] = useState(null);
  const [revoking, setRevoking] = useState(null);
  const [failure, setFailure] = useState(null);
  const revoke = async () => {
    setFailure(null);
    try {
      await api.del(`/tokens/${encodeURIComponent(revoking.id)}`);
    } catch (error) {
      setFailure(error);
    }
    setRevoking(null);
    tokens.reload();
  };
  return html`<div class="narrow-page">
    <${PageHeader} title="API tokens" subtitle=${owner === me.username
      ? "Tokens that act as you, for scripts and CI" : `Tokens of ${owner}`} />
    ${created && html`<${NewToken} token=${created} onDismiss=${() => setCreated(null)} />`}
    ${owner === me.username && html`<${CreateForm} onCreated=${(t) => {
      setCreated(t);
      tokens.reload();
    }} />`}
    <${ErrorAlert} error=${failure || tokens.error} onRetry=${tokens.reload} />
    ${!tokens.data && !tokens.error && html`<${Spinner} />`}
    ${tokens.data?.length === 0 && html`<div class="card shadow-sm"><${Empty}
      title="No API tokens." /></div>`}
    ${tokens.data?.length > 0 && html`<div class="card shadow-sm"><div class="table-responsive">
      <table class="table align-middle mb-0 tokens-table">
        <thead class="table-light"><tr><th scope="col">Name</th><th scope="col">Created</th>
          <th scope="col">Status</th><th scope="col"></th></tr></thead>
        <tbody>${tokens.data.map((t) => html`<tr key=${t.id} data-token=${t.id}>
          <td class="fw-semibold text-break">${t.name}</td>
          <td class="small"><${Time} at=${t.created_at} /></td>
          <td>${t.revoked ? html`<span class="badge text-bg-secondary" title=${`by ${t.revoked_by}`}>
            Revoked</span>` : html`<span class="badge text-bg-success">Active</span>`}</td>
          <td class="text-end">${!t.revoked && html`<button class="btn btn-sm btn-outline-danger"
            onClick=${() => setRevoking(t)}>Revoke</button>`}</td>
        </tr>`)}</tbody>
      </table></div></div>`}
    ${revoking && html`<${Modal} title="Revoke the token" onClose=${() => setRevoking(null)}
      footer=${html`<button class="btn btn-outline-secondary" onClick=${() => setRevoking(null)}>
        Keep it</button><button class="btn btn-danger" onClick=${revoke}>Yes, revoke</button>`}>
      <p class="mb-0">Scripts using “${revoking.name}” stop working at once.</p>
    </${Modal}>`}
  </div>`;
}
