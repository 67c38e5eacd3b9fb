// Users and roles (admins): create accounts, change roles, disable, set passwords.
import { html, useState } from "../view.js";
import { api, fieldErrors } from "../api.js";
import { useLoad } from "../loading.js";
import { href } from "../router.js";
import { useSession } from "../session.js";
import {
  Empty, ErrorAlert, Field, Modal, PageHeader, Spinner, Time, invalid, useTitle,
} from "../components.js";

const ROLES = ["developer", "lead", "admin"];

function useForm(initial, send, onDone) {
  const [form, setForm] = useState(initial);
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setFailure(null);
    try {
      onDone(await send(form));
    } catch (error) {
      const byField = fieldErrors(error);
      setErrors(byField);
      setFailure(error.status !== 422 || byField[""] ? error : null);
      setBusy(false);
    }
  };
  const set = (name) => (event) => setForm({ ...form, [name]: event.target.value });
  return { form, set, errors, failure, busy, submit };
}

function NewUserDialog({ onClose, onDone }) {
  const f = useForm({ username: "", role: "developer", password: "" },
    (form) => api.post("/users", form), onDone);
  return html`<${Modal} title="New user" onClose=${onClose}>
    <form onSubmit=${f.submit} noValidate>
      <${ErrorAlert} error=${f.failure} />
      <${Field} id="user-username" label="Username" error=${f.errors.username}
        help="Lowercase letters, digits and . _ -">
        <input id="user-username" class=${`form-control${invalid(f.errors.username)}`}
          value=${f.form.username} onInput=${f.set("username")} autocomplete="off" />
      </${Field}>
      <${Field} id="user-role" label="Role" error=${f.errors.role}>
        <select id="user-role" class="form-select" value=${f.form.role} onChange=${f.set("role")}>
          ${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}
        </select>
      </${Field}>
      <${Field} id="user-password" label="Password" error=${f.errors.password}
        help="At least 8 characters; they can change it later.">
        <input id="user-password" type="password" autocomplete="new-password"
          class=${`form-control${invalid(f.errors.password)}`} value=${f.form.password}
          onInput=${f.set("password")} />
      </${Field}>
      <div class="d-flex justify-content-end gap-2">
        <button type="button" class="btn btn-outline-secondary" onClick=${onClose}>Cancel</button>
        <button type="submit" class="btn btn-primary" disabled=${f.busy}>Create user</button>
      </div>
    </form>
  </${Modal}>`;
}

// One's own password needs the current one; an admin resets another's without it.
function PasswordDialog({ user, own, onClose, onDone }) {
  const f = useForm({ password: "", current_password: "" }, (form) => api.patch(
    `/users/${encodeURIComponent(user.username)}`,
    own ? form : { password: form.password }), onDone);
  return html`<${Modal} title=${`New password for ${user.username}`} onClose=${onClose}>
    <form onSubmit=${f.submit} noValidate>
      <${ErrorAlert} error=${f.failure} />
      ${own && html`<${Field} id="current-password" label="Current password"
        error=${f.errors.current_password}>
        <input id="current-password" type="password" autocomplete="current-password"
          class=${`form-control${invalid(f.errors.current_password)}`}
          value=${f.form.current_password} onInput=${f.set("current_password")} />
      </${Field}>`}
      <${Field} id="new-password" label="New password" error=${f.errors.password}
        help="Their current sessions end.">
        <input id="new-password" type="password" autocomplete="new-password"
          class=${`form-control${invalid(f.errors.password)}`} value=${f.form.password}
          onInput=${f.set("password")} />
      </${Field}>
      <div class="d-flex justify-content-end gap-2">
        <button type="button" class="btn btn-outline-secondary" onClick=${onClose}>Cancel</button>
        <button type="submit" class="btn btn-primary" disabled=${f.busy}>Set password</button>
      </div>
    </form>
  </${Modal}>`;
}

export function UsersPage() {
  useTitle("Users");
  const { me } = useSession();
  const users = useLoad(() => api.get("/users"), []);
  const [dialog, setDialog] = useState(null);
  const [failure, setFailure] = useState(null);
  if (me.role !== "admin") {
    return html`<${Empty} title="Only admins manage users.">
      Your own API tokens are on <a href=${href("tokens")}>API tokens</a>.</${Empty}>`;
  }
  const change = async (user, patch) => {
    setFailure(null);
    try {
      await api.patch(`/users/${encodeURIComponent(user.username)}`, patch);
    } catch (error) {
      setFailure(error);
    }
    users.reload();
  };
  const done = () => {
    setDialog(null);
    users.reload();
  };
  return html`<div>
    <${PageHeader} title="Users" subtitle="Accounts and their roles">
      <a class="btn btn-outline-secondary" href=${href("tokens")}>API tokens</a>
      <button class="btn btn-primary" onClick=${() => setDialog({ kind: "new" })}>New user</button>
    </${PageHeader}>
    <${ErrorAlert} error=${failure || users.error} onRetry=${users.reload} />
    ${!users.data && !users.error && html`<${Spinner} />`}
    ${users.data && html`<div class="card shadow-sm"><div class="table-responsive">
      <table class="table align-middle mb-0 users-table">
        <thead class="table-light"><tr><th scope="col">User</th><th scope="col">Role</th>
          <th scope="col">Status</th><th scope="col" class="d-none d-md-table-cell">Created</th>
          <th scope="col"></th></tr></thead>
        <tbody>${users.data.map((u) => html`<tr key=${u.username} data-user=${u.username}>
          <td class="fw-semibold">${u.username}${u.username === me.username
            && html` <span class="badge text-bg-light border">you</span>`}</td>
          <td><select class="form-select form-select-sm w-auto" value=${u.role}
              aria-label=${`Role of ${u.username}`} disabled=${u.username === me.username}
              onChange=${(e) => change(u, { role: e.target.value })}>
            ${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}
          </select></td>
          <td>${u.disabled ? html`<span class="badge text-bg-secondary">Disabled</span>`
            : html`<span class="badge text-bg-success">Active</span>`}</td>
          <td class="d-none d-md-table-cell small"><${Time} at=${u.created_at} />
            ${` by ${u.created_by}`}</td>
          <td class="text-end text-nowrap">
            <button class="btn btn-sm btn-outline-secondary me-1"
              onClick=${() => setDialog({ kind: "password", user: u })}>Set password</button>
            ${u.username !== me.username && html`<button class=${`btn btn-sm ${u.disabled
              ? "btn-outline-success" : "btn-outline-danger"}`}
              onClick=${() => change(u, { disabled: !u.disabled })}>
              ${u.disabled ? "Enable" : "Disable"}</button>`}
          </td>
        </tr>`)}</tbody>
      </table></div></div>`}
    ${dialog?.kind === "new" && html`<${NewUserDialog} onClose=${() => setDialog(null)}
      onDone=${done} />`}
    ${dialog?.kind === "password" && html`<${PasswordDialog} user=${dialog.user}
      own=${dialog.user.username === me.username}
      onClose=${() => setDialog(null)} onDone=${done} />`}
  </div>`;
}
