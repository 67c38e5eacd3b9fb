// How values read on screen: times, sizes, durations, short ids and hashes.

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const STEPS = [
  ["year", 365 * 24 * 3600], ["month", 30 * 24 * 3600], ["week", 7 * 24 * 3600],
  ["day", 24 * 3600], ["hour", 3600], ["minute", 60], ["second", 1],
];

export function parseTime(text) {
  if (!text) return null;
  const at = new Date(text);
  return Number.isNaN(at.getTime()) ? null : at;
}

export function timeAgo(text, now = Date.now()) {
  const at = parseTime(text);
  if (!at) return "—";
  const seconds = Math.round((at.getTime() - now) / 1000);
  if (Math.abs(seconds) < 10) return "just now";
  const [unit, size] = STEPS.find(([, s]) => Math.abs(seconds) >= s) || STEPS.at(-1);
  return relative.format(Math.round(seconds / size), unit);
}

export function fullTime(text) {
  const at = parseTime(text);
  return at ? absolute.format(at) : "—";
}

export function bytes(count) {
  if (count === null || count === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function seconds(value) {
  if (value === null || value === undefined) return "—";
  return value < 10 ? `${value.toFixed(1)} s` : `${Math.round(value)} s`;
}

export function count(value) {
  return value === null || value === undefined ? "—" : value.toLocaleString();
}

export const shortId = (id) => (id ? id.slice(0, 8) : "");

export const shortHash = (hash) => {
  if (!hash) return "";
  const [kind, value] = hash.includes(":") ? hash.split(":", 2) : ["", hash];
  return kind ? `${kind}:${value.slice(0, 12)}` : hash.slice(0, 12);
};

/** Only http(s) links reach an href; anything else (javascript:, data:) is not a link. */
export function safeUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}
