// Inline SVG plots in plain JavaScript: axes, grid, points and lines, a legend. No library.

const NS = "http://www.w3.org/2000/svg";
const W = 520, H = 260, M = { left: 50, right: 14, top: 44, bottom: 34 };

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function compact(t) {
  const a = Math.abs(t);
  if (a >= 1e6) return `${+(t / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(t / 1e3).toFixed(1)}k`;
  return String(+t.toFixed(2));
}

function niceTicks(lo, hi, count = 5, integer = false) {
  if (hi <= lo) hi = lo + 1;
  let raw = (hi - lo) / count;
  if (integer) raw = Math.max(raw, 1);
  const step = [1, 2, 2.5, 5, 10].map((f) => f * 10 ** Math.floor(Math.log10(raw))).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) ticks.push(+t.toFixed(10));
  return ticks;
}

// series: [{name, color, points: [{x, y, label}], line: bool}]
export function plot(svg, series, { xLabel = "", yLabel = "", yMin = null, yMax = null, xInteger = false, empty = "no data yet" } = {}) {
  svg.innerHTML = "";
  const all = series.flatMap((s) => s.points);
  if (!all.length) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, empty));
    return;
  }
  let x0 = Math.min(...all.map((p) => p.x)), x1 = Math.max(...all.map((p) => p.x));
  let y0 = yMin ?? Math.min(0, ...all.map((p) => p.y)), y1 = yMax ?? Math.max(...all.map((p) => p.y));
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) y1 = y0 + 1;
  const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const sy = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);

  for (const t of niceTicks(y0, y1)) {
    svg.append(el("line", { x1: M.left, x2: W - M.right, y1: sy(t), y2: sy(t), class: "grid" }));
    svg.append(el("text", { x: M.left - 6, y: sy(t) + 4, "text-anchor": "end" }, compact(t)));
  }
  for (const t of niceTicks(x0, x1, 6, xInteger)) {
    svg.append(el("text", { x: sx(t), y: H - M.bottom + 14, "text-anchor": "middle" }, compact(t)));
  }
  svg.append(el("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }));
  svg.append(el("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis" }));
  svg.append(el("text", { x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle" }, xLabel));
  svg.append(el("text", { x: 8, y: 14 }, yLabel));

  let legendX = M.left;
  for (const s of series) {
    if (!s.points.length) continue;
    if (s.line && s.points.length > 1) {
      const d = s.points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join("");
      svg.append(el("path", { d, fill: "none", stroke: s.color, "stroke-width": 1.5 }));
    }
    for (const p of s.points) {
      const dot = el("circle", { cx: sx(p.x), cy: sy(p.y), r: 3.5, fill: s.color, "data-series": s.name });
      dot.append(el("title", {}, p.label ?? `${s.name}: ${p.y}`));
      svg.append(dot);
    }
    svg.append(el("rect", { x: legendX, y: 21, width: 10, height: 10, fill: s.color }));
    const label = el("text", { x: legendX + 14, y: 30 }, s.legend ?? s.name);
    svg.append(label);
    legendX += 24 + 6.5 * (s.legend ?? s.name).length;
  }
}
