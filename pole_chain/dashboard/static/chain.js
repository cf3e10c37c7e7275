// Chain view: latest blocks, peers, block intervals (PoLe against idle) and test accuracy per task.

import { view } from "./api.js";
import { esc, pct, short } from "./format.js";
import { plot } from "./plots.js";

const COLORS = { PoLe: "#2f6fdb", idle: "#9aa3ae", dev: "#e0a030" };
const TASK_COLORS = ["#2f6fdb", "#1f8a4c", "#c0392b", "#8e44ad", "#e0a030", "#16a085"];
const TABLE_ROWS = 40;

export class ChainView {
  constructor() {
    this.table = document.querySelector("#block-table tbody");
    this.peers = document.getElementById("peer-list");
    this.lastHead = null;
  }

  async update(overview) {
    this.showPeers(overview.peers);
    if (this.lastHead === overview.headHash) return;
    const blocks = await view("blocks?count=200");
    this.lastHead = overview.headHash;
    this.showBlocks(blocks.slice(0, TABLE_ROWS));
    this.plotIntervals(blocks);
    this.plotAccuracy(blocks);
  }

  showBlocks(blocks) {
    this.table.innerHTML = blocks.map((b) => `
      <tr data-block="${b.number}" data-kind="${esc(b.kind)}">
        <td>${b.number}</td>
        <td><span class="pill ${esc(b.kind)}">${esc(b.kind)}</span></td>
        <td class="mono">${esc(short(b.hash, 10, 4))}</td>
        <td class="mono">${b.kind === "PoLe" ? esc(short(b.miner)) : "—"}</td>
        <td>${b.taskId ?? "—"}</td>
        <td>${pct(b.trainBps)}</td>
        <td>${pct(b.testBps)}</td>
        <td>${b.score}</td>
        <td>${b.txCount}</td>
        <td>${b.interval === null ? "—" : b.interval + " s"}</td>
      </tr>`).join("");
  }

  showPeers(peers) {
    if (!peers || !peers.list.length) {
      const why = peers && !peers.networking ? `: ${peers.note}` : "";
      this.peers.innerHTML = `<li class="muted" id="no-peers">no peers${esc(why)}</li>`;
      return;
    }
    this.peers.innerHTML = peers.list.map((p) => `
      <li><span class="mono">${esc(short(p.id, 10, 6))}</span> ${p.inbound ? "in" : "out"}
        ${esc(p.address ?? "")} head ${p.head ?? "?"} penalty ${p.penalty ?? 0}</li>`).join("");
  }

  plotIntervals(blocks) {
    const series = ["PoLe", "idle", "dev"].map((kind) => {
      const points = blocks
        .filter((b) => b.kind === kind && b.interval !== null)
        .map((b) => ({ x: b.number, y: b.interval, label: `#${b.number} ${kind}: ${b.interval} s` }))
        .reverse();
      const mean = points.length ? points.reduce((a, p) => a + p.y, 0) / points.length : 0;
      return { name: kind, color: COLORS[kind], points,
               legend: `${kind}${points.length ? ` (mean ${mean.toFixed(1)} s, ${points.length})` : ""}` };
    });
    plot(document.getElementById("interval-plot"), series,
         { xLabel: "block number", yLabel: "seconds since the parent block", xInteger: true,
           empty: "no block intervals yet" });
  }

  plotAccuracy(blocks) {
    const pole = blocks.filter((b) => b.kind === "PoLe").reverse();
    const t0 = pole.length ? pole[0].timestamp : 0;
    const byTask = new Map();
    for (const b of pole) {
      if (!byTask.has(b.taskId)) byTask.set(b.taskId, []);
      byTask.get(b.taskId).push({ x: b.timestamp - t0, y: b.testBps / 100,
                                  label: `task ${b.taskId}, block #${b.number}: test ${pct(b.testBps)}` });
    }
    const series = [...byTask.entries()].map(([task, points], i) => (
      { name: `task ${task}`, color: TASK_COLORS[i % TASK_COLORS.length], points }));
    series.push({ name: "trend", legend: "over time", color: "#b8bec7", line: true,
                  points: pole.map((b) => ({ x: b.timestamp - t0, y: b.testBps / 100, label: `task ${b.taskId}` })) });
    plot(document.getElementById("accuracy-plot"), series.reverse(),
         { xLabel: "seconds since the first PoLe block shown", yLabel: "test accuracy (%)",
           yMin: 0, yMax: 100, empty: "no PoLe block yet" });
  }
}
