// Hash routes (#/tickets/<id>?x=y): the server serves one index.html, the hash picks the page.
import { useEffect, useState } from "./view.js";

export function currentRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  return { path, parts, query: new URLSearchParams(query) };
}

export function useRoute() {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const changed = () => setRoute(currentRoute());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

/** "#/a/b?x=1" from ("a", "b") and {x: 1}; empty query values are left out. */
export function href(parts, query = {}) {
  const path = "#/" + [].concat(parts).filter((p) => p !== "").map(encodeURIComponent).join("/");
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

export function navigate(parts, query) {
  location.hash = href(parts, query);
}
