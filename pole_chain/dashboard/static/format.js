// Small formatting helpers shared by the views.

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export function pct(bps) {
  return bps === null || bps === undefined ? "—" : `${(bps / 100).toFixed(2)} %`;
}

export function short(hex, head = 8, tail = 4) {
  if (!hex) return "—";
  return hex.length <= head + tail + 1 ? hex : `${hex.slice(0, head)}…${hex.slice(-tail)}`;
}

export function seconds(s) {
  if (s === null || s === undefined) return "—";
  const a = Math.abs(s);
  const text = a >= 3600 ? `${(a / 3600).toFixed(1)} h` : a >= 120 ? `${Math.round(a / 60)} min` : `${a} s`;
  return s >= 0 ? `in ${text}` : `${text} ago`;
}

export function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

// Append entries to a <ul class="log"> (newest first), each once by key.
export class ActionLog {
  constructor(element) {
    this.element = element;
    this.seen = new Set();
  }
  add(key, text, when = Date.now() / 1000) {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    const li = document.createElement("li");
    li.innerHTML = `<time>${esc(clock(when))}</time>${esc(text)}`;
    this.element.prepend(li);
    return true;
  }
  clear() {
    this.seen.clear();
    this.element.innerHTML = "";
  }
}
