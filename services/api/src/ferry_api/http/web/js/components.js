// The building blocks every page shares: loading and error states, empty states, dialogs,
// form fields, times and page headers.
import { html, useEffect, useRef, useState } from "./view.js";
import { fullTime, timeAgo } from "./format.js";

export function Spinner({ label = "Loading…" }) {
  return html`<div class="d-flex align-items-center gap-2 text-secondary py-4" role="status">
    <span class="spinner-border spinner-border-sm" aria-hidden="true"></span>
    <span>${label}</span>
  </div>`;
}

const WHAT_FAILED = {
  403: "Not allowed",
  404: "Not found",
  409: "Not possible right now",
  422: "Please check the input",
  0: "Connection problem",
};

export function ErrorAlert({ error, onRetry }) {
  if (!error) return null;
  const title = WHAT_FAILED[error.status] || "Something went wrong";
  return html`<div class="alert alert-danger d-flex gap-3 align-items-start" role="alert">
    <div class="flex-grow-1">
      <strong>${title}.</strong> <span class="error-message">${error.message}</span>
    </div>
    ${onRetry && html`<button type="button" class="btn btn-sm btn-outline-danger"
      onClick=${onRetry}>Try again</button>`}
  </div>`;
}

export function Empty({ title, children }) {
  return html`<div class="empty-state text-center text-secondary py-5 px-3">
    <div class="fw-semibold mb-1">${title}</div>
    ${children && html`<div class="small">${children}</div>`}
  </div>`;
}

export function useNow(every = 30000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), every);
    return () => clearInterval(timer);
  }, [every]);
  return now;
}

export function Time({ at }) {
  const now = useNow();
  if (!at) return html`<span class="text-secondary">—</span>`;
  return html`<time datetime=${at} title=${fullTime(at)}>${timeAgo(at, now)}</time>`;
}

export function PageHeader({ title, subtitle, children }) {
  return html`<div class="page-header d-flex flex-wrap align-items-center gap-2 mb-3">
    <div class="me-auto">
      <h1 class="h3 mb-0">${title}</h1>
      ${subtitle && html`<div class="text-secondary small mt-1">${subtitle}</div>`}
    </div>
    ${children}
  </div>`;
}

export function useTitle(title) {
  useEffect(() => {
    document.title = title ? `${title} · Ferry` : "Ferry";
  }, [title]);
}

/** A form field: label, the control (children), help, and the API's complaint about it. */
export function Field({ id, label, error, help, children, class: extra = "" }) {
  return html`<div class="mb-3 ${extra}">
    <label class="form-label" for=${id}>${label}</label>
    ${children}
    ${error && html`<div class="invalid-feedback d-block" id=${`${id}-error`}>${error}</div>`}
    ${help && !error && html`<div class="form-text">${help}</div>`}
  </div>`;
}

export const invalid = (error) => (error ? " is-invalid" : "");

const FOCUSABLE = "a[href], button:not([disabled]), input, textarea, select, [tabindex='0']";

/** Tab and Shift+Tab go round the dialog's own controls, never behind it. */
function keepFocusIn(box, event) {
  const inside = [...box.querySelectorAll(FOCUSABLE)];
  if (!inside.length) return;
  const [first, last] = [inside[0], inside.at(-1)];
  if (event.shiftKey && document.activeElement === first) {
    last.focus();
    event.preventDefault();
  } else if (!event.shiftKey && document.activeElement === last) {
    first.focus();
    event.preventDefault();
  }
}

/**
 * A dialog over the page: Escape or the close button ends it, Tab stays inside it, focus goes
 * to its first field (else to the dialog, so Enter confirms nothing by accident) and comes back
 * to where it was when it closes.
 */
export function Modal({ title, onClose, children, footer, wide = false }) {
  const box = useRef(null);
  useEffect(() => {
    const before = document.activeElement;
    const first = box.current?.querySelector("[autofocus], input, textarea, select");
    (first || box.current)?.focus();
    const onKey = (event) => {
      if (event.key === "Escape") onClose();
      if (event.key === "Tab" && box.current) keepFocusIn(box.current, event);
    };
    document.addEventListener("keydown", onKey);
    document.body.classList.add("modal-open");
    return () => {
      document.removeEventListener("keydown", onKey);
      document.body.classList.remove("modal-open");
      before?.focus?.();
    };
  }, []);
  const label = `modal-title-${title.replace(/\W+/g, "-")}`;
  return html`<div>
    <div class="modal-backdrop fade show"></div>
    <div class="modal fade show d-block" tabindex="-1" role="dialog" aria-modal="true"
         aria-labelledby=${label} onClick=${(e) => e.target === e.currentTarget && onClose()}>
      <div class="modal-dialog modal-dialog-centered ${wide ? "modal-lg" : ""}">
        <div class="modal-content" ref=${box} tabindex="-1">
          <div class="modal-header">
            <h2 class="modal-title h5" id=${label}>${title}</h2>
            <button type="button" class="btn-close" aria-label="Close" onClick=${onClose}></button>
          </div>
          <div class="modal-body">${children}</div>
          ${footer && html`<div class="modal-footer">${footer}</div>`}
        </div>
      </div>
    </div>
  </div>`;
}
