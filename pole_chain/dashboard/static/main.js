// The page: header facts, tabs (#data, #miner, #chain) and one polling loop for live updates.
// Each tick reads the node's overview and the visible view; nothing is reloaded.

import { ApiError, rpc, view } from "./api.js";
import { ChainView } from "./chain.js";
import { DataNodeView } from "./datanode.js";
import { clock } from "./format.js";
import { MinerView } from "./miner.js";

const POLL_MS = 1000;
const views = { data: new DataNodeView(), miner: new MinerView(), chain: new ChainView() };
let active = "data";
let busy = false;

function show(name) {
  if (!views[name]) name = "data";
  active = name;
  for (const key of Object.keys(views)) {
    document.getElementById(`view-${key}`).classList.toggle("hidden", key !== name);
    document.getElementById(`tab-${key}`).classList.toggle("active", key === name);
  }
  tick();
}

for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => { location.hash = button.dataset.view; });
}
window.addEventListener("hashchange", () => show(location.hash.slice(1).split("?")[0]));

function setText(id, text) {
  const node = document.getElementById(id);
  if (node.textContent !== text) node.textContent = text;
}

function header(overview) {
  setText("node-url", location.origin);
  setText("chain-id", overview.chainId);
  setText("node-mode", overview.dev
    ? `dev (${overview.blockTime ? `block every ${overview.blockTime} s` : "automine"})`
    : `full${overview.mineIdle ? ", mining idle blocks" : ""}`);
  setText("head-number", `#${overview.headNumber}`);
  setText("peer-count", overview.peers.networking ? String(overview.peers.list.length) : "no peers (networking off)");
  document.getElementById("p2p-fact").classList.toggle("hidden", !overview.peers.p2p);
  if (overview.peers.p2p) setText("node-p2p", overview.peers.p2p);
  setText("updated", clock(Date.now() / 1000));
}

async function tick() {
  if (busy) return;
  busy = true;
  const banner = document.getElementById("connection");
  try {
    const [overview, head] = await Promise.all([view("overview"), rpc("eth_blockNumber")]);
    overview.headNumber = Math.max(overview.headNumber, parseInt(head, 16));
    header(overview);
    views.data.setNode(overview);
    const tasks = await views.data.update();  // always: its notifications must not wait for a tab
    const announcers = [...new Set(tasks.flatMap((t) => t.announcements.map((a) => a.miner)))];
    views.miner.offer([...new Set([...announcers, ...overview.accounts.map((a) => a.address)])], announcers);
    if (active === "miner") await views.miner.update();
    if (active === "chain") await views.chain.update(overview);
    banner.classList.add("hidden");
    document.body.dataset.ready = "true";
  } catch (error) {
    banner.textContent = error instanceof ApiError
      ? `The node answered with an error: ${error.message}` : `Cannot reach the node: ${error.message}`;
    banner.classList.remove("hidden");
  } finally {
    busy = false;
  }
}

show(location.hash.slice(1).split("?")[0] || "data");
setInterval(tick, POLL_MS);
