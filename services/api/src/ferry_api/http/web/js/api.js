// The REST client: JSON over fetch with the session cookie, the CSRF header on every change,
// and the API's {"error", "message"} bodies turned into ApiError.

const BASE = new URL("api/v1", document.baseURI).pathname;
const CSRF_COOKIE = "ferry_csrf";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onSessionLost = () => {};

/** Called once with what to do when a request answers 401 (the session ended). */
export function whenSessionLost(handler) {
  onSessionLost = handler;
}

function csrfToken() {
  const prefix = `${CSRF_COOKIE}=`;
  const cookie = document.cookie.split("; ").find((c) => c.startsWith(prefix));
  return cookie ? decodeURIComponent(cookie.slice(prefix.length)) : "";
}

function urlOf(path, params) {
  const url = new URL(BASE + path, location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

async function request(method, path, { body, params } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method)) headers["X-CSRF-Token"] = csrfToken();
  let response;
  try {
    response = await fetch(urlOf(path, params), {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "network", `Ferry cannot be reached (${error.message}).`);
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data?.message || `${response.status} ${response.statusText}`;
    const error = new ApiError(response.status, data?.error || "error", message);
    if (response.status === 401 && !path.startsWith("/auth/")) onSessionLost(error);
    throw error;
  }
  return data;
}

export const api = {
  get: (path, params) => request("GET", path, { params }),
  post: (path, body = {}) => request("POST", path, { body }),
  patch: (path, body) => request("PATCH", path, { body }),
  del: (path) => request("DELETE", path),
};

export const session = {
  // The token comes back in the body too; it is not kept: the HttpOnly cookie carries it.
  login: async (username, password) => {
    const { user, expires_at: expiresAt } = await api.post("/auth/login",
      { username, password, cookie: true });
    return { user, expiresAt };
  },
  logout: () => api.del("/auth/session"),
  me: () => api.get("/me"),
};

const PROBLEM = /;\s(?=[A-Za-z_][\w.]*: )/;

/**
 * A 422's message ("reason: too short; ref: Value error, ...") split by field:
 * {reason: "too short", ref: "...", "": what names no field}. A dotted field (source.url,
 * hosts.1) is also filed under its first part, where a form shows it.
 */
export function fieldErrors(error) {
  const found = {};
  if (!(error instanceof ApiError) || error.status !== 422) return found;
  const add = (field, text) => {
    found[field] = found[field] ? `${found[field]}; ${text}` : text;
  };
  for (const problem of error.message.split(PROBLEM)) {
    const match = /^([A-Za-z_][\w.]*): ([\s\S]*)$/.exec(problem);
    if (!match) {
      add("", problem);
      continue;
    }
    const [, field, raw] = match;
    const text = raw.replace(/^Value error, /, "");
    add(field, text);
    const first = field.split(".")[0];
    if (first !== field) add(first, text);
  }
  return found;
}
