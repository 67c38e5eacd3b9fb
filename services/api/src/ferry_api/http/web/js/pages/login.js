// Log in: username and password for a cookie session (the token never reaches this script).
import { html, useState } from "../view.js";
import { session } from "../api.js";
import { useTitle } from "../components.js";

export function LoginPage({ notice, onLogin }) {
  useTitle("Log in");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = await session.login(username.trim(), password);
      onLogin(answer.user);
    } catch (failure) {
      setError(failure.status === 401 ? "Wrong username or password, or the account is "
        + "disabled." : failure.message);
      setBusy(false);
    }
  };

  return html`<main class="login-page d-flex align-items-center justify-content-center">
    <form class="login-card card shadow-sm" onSubmit=${submit} aria-labelledby="login-title">
      <div class="card-body p-4">
        <div class="text-center mb-4">
          <img class="mb-2" src="favicon.svg" alt="" width="48" height="48" />
          <h1 class="h4 mb-1" id="login-title">Ferry</h1>
          <div class="text-secondary small">Release tickets, approvals and deploys</div>
        </div>
        ${notice && !error && html`<div class="alert alert-info py-2 small" role="status">
          ${notice}</div>`}
        ${error && html`<div class="alert alert-danger py-2 small" role="alert">${error}</div>`}
        <div class="mb-3">
          <label class="form-label" for="login-username">Username</label>
          <input id="login-username" class="form-control" autocomplete="username" required
            autofocus value=${username} onInput=${(e) => setUsername(e.target.value)} />
        </div>
        <div class="mb-4">
          <label class="form-label" for="login-password">Password</label>
          <input id="login-password" class="form-control" type="password" required
            autocomplete="current-password" value=${password}
            onInput=${(e) => setPassword(e.target.value)} />
        </div>
        <button class="btn btn-primary w-100" type="submit" disabled=${busy}>
          ${busy ? "Logging in…" : "Log in"}
        </button>
      </div>
    </form>
  </main>`;
}
