// The app shell: who is logged in, the navigation bar, the live feed, and the page for the hash.
import { html, render, useEffect, useState } from "./view.js";
import { session, whenSessionLost } from "./api.js";
import { startLive, stopLive, useLiveStatus } from "./live.js";
import { useRoute, href } from "./router.js";
import { Session } from "./session.js";
import { Spinner } from "./components.js";
import { RoleBadge } from "./badges.js";
import { LoginPage } from "./pages/login.js";
import { pageFor } from "./pages/index.js";

const NAV = [
  ["Tickets", [], (parts) => parts.length === 0 || parts[0] === "tickets"],
  ["Apps", ["apps"]],
  ["Hosts", ["hosts"]],
  ["Audit", ["audit"]],
];

function LiveIndicator() {
  const status = useLiveStatus();
  const [label, tone] = {
    live: ["Live", "success"], connecting: ["Connecting", "warning"],
    offline: ["Offline", "danger"], off: ["Off", "secondary"],
  }[status];
  return html`<span class="live-indicator small" data-live=${status}
    title="Live updates from the event stream">
    <span class="live-dot bg-${tone}" aria-hidden="true"></span>${label}
  </span>`;
}

function NavBar({ me, parts, onLogout }) {
  const [open, setOpen] = useState(false);
  useEffect(() => setOpen(false), [parts.join("/")]);
  const items = [...NAV];
  if (me.role === "admin") items.push(["Users", ["admin", "users"]]);
  return html`<nav class="navbar navbar-expand-md navbar-dark bg-ferry sticky-top"
      aria-label="Main">
    <div class="container-xl">
      <a class="navbar-brand fw-semibold" href="#/">
        <img class="brand-mark" src="favicon.svg" alt="" width="26" height="26" /> Ferry
      </a>
      <button class="navbar-toggler" type="button" aria-controls="main-nav"
        aria-expanded=${open} aria-label="Menu" onClick=${() => setOpen(!open)}>
        <span class="navbar-toggler-icon"></span>
      </button>
      <div class="collapse navbar-collapse ${open ? "show" : ""}" id="main-nav">
        <ul class="navbar-nav me-auto">
          ${items.map(([label, target, active]) => {
            const on = active ? active(parts) : parts[0] === target[0];
            return html`<li class="nav-item">
              <a class="nav-link ${on ? "active" : ""}" aria-current=${on ? "page" : undefined}
                href=${href(target)}>${label}</a></li>`;
          })}
        </ul>
        <div class="d-flex flex-wrap align-items-center gap-3 py-2 py-md-0">
          <${LiveIndicator} />
          <a class="text-light text-decoration-none small" href=${href("tokens")}
             title="Your API tokens" data-testid="whoami">
            <span class="me-1">${me.username}</span><${RoleBadge} role=${me.role} />
          </a>
          <button type="button" class="btn btn-sm btn-outline-light" onClick=${onLogout}>
            Log out
          </button>
        </div>
      </div>
    </div>
  </nav>`;
}

function App() {
  const route = useRoute();
  const [me, setMe] = useState(undefined); // undefined: not known yet; null: logged out
  const [notice, setNotice] = useState("");

  useEffect(() => {
    whenSessionLost(() => {
      setNotice("Your session ended. Please log in again.");
      setMe(null);
    });
    session.me().then(setMe, () => setMe(null));
  }, []);

  useEffect(() => {
    if (me) startLive();
    else stopLive();
  }, [me]);

  const logout = async () => {
    await session.logout().catch(() => {});
    setNotice("You are logged out.");
    setMe(null);
  };

  if (me === undefined) return html`<div class="container-xl"><${Spinner} /></div>`;
  if (me === null) {
    return html`<${LoginPage} notice=${notice} onLogin=${(user) => {
      setNotice("");
      setMe(user);
    }} />`;
  }
  const Page = pageFor(route.parts);
  return html`<${Session.Provider} value=${{ me, logout }}>
    <${NavBar} me=${me} parts=${route.parts} onLogout=${logout} />
    <main class="container-xl py-4" id="main">
      <${Page} parts=${route.parts} query=${route.query} key=${route.path} />
    </main>
  </${Session.Provider}>`;
}

render(html`<${App} />`, document.getElementById("app"));
