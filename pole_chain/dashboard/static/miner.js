// Miner view: one coinbase address through each task, from public data only.

import { view } from "./api.js";
import { ActionLog, esc, pct, seconds, short } from "./format.js";

const TRACK = ["training", "announced", "released", "revealed", "won"];

export class MinerView {
  constructor() {
    this.input = document.getElementById("miner-address");
    this.log = new ActionLog(document.getElementById("miner-log"));
    this.address = "";
    this.input.addEventListener("change", () => this.select(this.input.value.trim()));
    const fromHash = new URLSearchParams(location.hash.split("?")[1] || "").get("address");
    if (fromHash) this.select(fromHash);
  }

  select(address) {
    if (address === this.address) return;
    this.address = address;
    this.input.value = address;
    this.log.clear();
  }

  // Addresses to pick from; the first miner seen announcing is shown until one is chosen.
  offer(addresses, announcers) {
    const list = document.getElementById("miner-addresses");
    const options = addresses.map((a) => `<option value="${esc(a)}"></option>`).join("");
    if (list.innerHTML !== options) list.innerHTML = options;
    if (!this.address && announcers.length) this.select(announcers[0]);
  }

  async update() {
    if (!this.address) return;
    const address = this.address;
    const m = await view(`miner?address=${encodeURIComponent(address)}`);
    if (address !== this.address) return;
    const cur = m.current;
    const state = cur ? cur.state : "waiting";
    const badge = document.getElementById("miner-state");
    badge.textContent = state;
    badge.className = `badge ${state}`;
    this.track(cur);
    set("miner-task", cur ? `task ${cur.taskId} (${cur.taskStatus}, reward ${cur.rewardText}, `
        + `needs ${pct(cur.minTrainBps)} training accuracy)` : "no task");
    set("miner-anchor", cur && cur.anchor ? `block #${cur.anchor.number} ${short(cur.anchor.hash, 10, 4)}` : "—");
    this.progress(cur);
    set("miner-train", cur && cur.trainBps !== null ? `${pct(cur.trainBps)} (announced)` : "—");
    set("miner-test", cur && cur.testBps !== null ? pct(cur.testBps) : "—");
    set("miner-balance", m.balanceText);
    set("miner-bond", m.bonded ? `${m.bondText} (bonded)` : `${m.bondText} (not bonded: data nodes will not admit it)`);
    set("miner-rewards", m.rewardsText);
    set("miner-blocks", m.sealedBlocks.length ? m.sealedBlocks.map((n) => `#${n}`).join(", ") : "none");
    document.querySelector("#miner-tasks tbody").innerHTML = [...m.tasks].reverse().map((t) => `
      <tr data-task="${t.taskId}"><td>${t.taskId}</td><td><span class="pill ${esc(t.taskStatus)}">${esc(t.taskStatus)}</span></td>
        <td class="miner-task-state"><span class="badge ${esc(t.state)}">${esc(t.state)}</span></td>
        <td>${pct(t.trainBps)}</td><td>${pct(t.testBps)}</td><td>${esc(t.rewardText)}</td></tr>`).join("");
    for (const t of m.tasks) {
      for (const step of t.steps) this.log.add(`${t.taskId}:${step.state}`, step.text);
    }
  }

  track(cur) {
    const reached = cur ? cur.steps.map((s) => s.state) : [];
    const last = reached[reached.length - 1];
    const names = last === "lost" ? [...TRACK.slice(0, -1), "lost"] : TRACK;
    document.getElementById("miner-track").innerHTML = names.map((name) => {
      const cls = name === last ? `current ${name}` : reached.includes(name) ? "done" : "";
      return `<li data-state="${name}" class="${cls}">${name}</li>`;
    }).join("");
  }

  progress(cur) {
    const bar = document.getElementById("miner-progress");
    if (!cur || !cur.anchor) {
      bar.style.width = "0";
      set("miner-time", "—");
      return;
    }
    const used = Math.max(0, Math.min(1, 1 - cur.secondsLeft / cur.timeLimit));
    bar.style.width = `${(used * 100).toFixed(0)}%`;
    set("miner-time", cur.taskStatus === "open" ? `deadline ${seconds(cur.secondsLeft)}` : cur.taskStatus);
  }
}

function set(id, text) {
  document.getElementById(id).textContent = text;
}
