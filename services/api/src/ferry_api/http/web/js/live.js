// The live feed: one EventSource on /api/v1/events/stream for the whole page. Pages subscribe
// with useLive(); after every (re)connect they get a "resync" so nothing between their last
// fetch and the stream's start is missed.
import { useEffect, useRef, useState } from "./view.js";

const STREAM = new URL("api/v1/events/stream", document.baseURI).pathname;
const RESYNC = { type: "ferry.resync", stream: "" };
const listeners = new Set();
const statusListeners = new Set();
let source = null;
let status = "off";
let lastId = null;
let retryTimer = null;
let backoff = 1000;

function setStatus(next) {
  status = next;
  for (const listener of statusListeners) listener(next);
}

function emit(event) {
  for (const listener of listeners) listener(event);
}

export function startLive() {
  if (source) return;
  const url = lastId === null ? STREAM : `${STREAM}?after=${encodeURIComponent(lastId)}`;
  source = new EventSource(url, { withCredentials: true });
  setStatus("connecting");
  source.onopen = () => {
    backoff = 1000;
    setStatus("live");
    emit(RESYNC);
  };
  source.onmessage = (message) => {
    if (message.lastEventId) lastId = message.lastEventId;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    emit(event);
  };
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) {
      setStatus("connecting"); // the browser reconnects by itself, with Last-Event-ID
      return;
    }
    source.close();
    source = null;
    setStatus("offline");
    retryTimer = setTimeout(startLive, backoff);
    backoff = Math.min(backoff * 2, 30000);
  };
}

export function stopLive() {
  clearTimeout(retryTimer);
  source?.close();
  source = null;
  lastId = null;
  setStatus("off");
}

/**
 * Calls `onChange` (at most every `wait` ms) when an event matching `matches(event)` arrives,
 * and after each reconnect.
 */
export function useLive(matches, onChange, wait = 150) {
  const latest = useRef({ matches, onChange });
  latest.current = { matches, onChange };
  useEffect(() => {
    let timer = null;
    const listener = (event) => {
      if (event !== RESYNC && !latest.current.matches(event)) return;
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        latest.current.onChange(event);
      }, wait);
    };
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      clearTimeout(timer);
    };
  }, [wait]);
}

export function useLiveStatus() {
  const [current, setCurrent] = useState(status);
  useEffect(() => {
    statusListeners.add(setCurrent);
    setCurrent(status);
    return () => statusListeners.delete(setCurrent);
  }, []);
  return current;
}
