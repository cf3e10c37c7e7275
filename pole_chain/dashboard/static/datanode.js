// Data-node view: post a task, follow it, release it, receive the delivered model.
//
// Posting runs the data node's Python logic in the node process (POST api/post-task), on a
// dev node with its dev accounts only. On any other node the page shows the equivalent
// `pole task post` command: the user signs with their own key on their own machine.

import { action, view } from "./api.js";
import { ActionLog, esc, pct, seconds, short } from "./format.js";

export class DataNodeView {
  constructor() {
    this.form = document.getElementById("post-form");
    this.message = document.getElementById("post-message");
    this.log = new ActionLog(document.getElementById("data-log"));
    this.dev = null;
    this.accounts = [];
    this.requested = new Set(); // deliveries this page asked for
    this.wanted = new Set(); // settled tasks of others whose model the user asked to fetch
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.submit(); });
    byId("model").addEventListener("change", () => this.toggleInputs());
    byId("dataset").addEventListener("change", () => this.toggleInputs());
    byId("model-template").addEventListener("click", () => this.template());
    document.querySelector("#task-table tbody").addEventListener("click", (event) => {
      const button = event.target.closest("button.release");
      if (button) this.release(Number(button.dataset.task), button);
      const fetchButton = event.target.closest("button.fetch");
      if (fetchButton) {
        fetchButton.disabled = true;
        this.wanted.add(Number(fetchButton.dataset.task));
      }
    });
    this.toggleInputs();
  }

  // ------------------------------------------------------------------ node facts

  setNode(overview) {
    const select = byId("account");
    if (this.dev !== overview.dev) {
      this.dev = overview.dev;
      byId("post-button").textContent = this.dev ? "Post task" : "Show the command";
      select.disabled = !this.dev;
      if (!this.dev) select.innerHTML = `<option value="">your own key (pole task post --key)</option>`;
    }
    if (this.dev) {
      const chosen = select.value || "0";
      const options = overview.accounts.map((a) => (
        `<option value="${a.index}">(${a.index}) ${esc(a.address)} — ${esc(a.balanceText)}</option>`)).join("");
      if (select.dataset.options !== options) {
        select.innerHTML = options;
        select.dataset.options = options;
        select.value = chosen;
      }
      this.accounts = overview.accounts;
    }
  }

  get address() {
    const account = this.accounts.find((a) => String(a.index) === byId("account").value);
    return account ? account.address : null;
  }

  toggleInputs() {
    byId("model-custom").classList.toggle("hidden", byId("model").value !== "custom");
    byId("dataset-upload").classList.toggle("hidden", byId("dataset").value !== "upload");
  }

  async template() {
    const dataset = byId("dataset").value === "upload" ? "digits" : byId("dataset").value;
    try {
      const answer = await view(`spec-template?dataset=${dataset}&model=mlp`);
      byId("model-json").value = JSON.stringify(answer.spec, null, 1);
    } catch (error) {
      this.say("error", error.message);
    }
  }

  // ------------------------------------------------------------------ posting

  say(kind, text) {
    this.message.className = `message ${kind}`;
    this.message.textContent = text;
  }

  async payload() {
    const model = byId("model").value;
    const dataset = byId("dataset").value;
    const form = {
      account: byId("account").value,
      reward: byId("reward").value,
      accuracy: byId("accuracy").value,
      timeLimit: byId("time-limit").value,
      solutions: byId("solutions").value,
      testFraction: byId("test-fraction").value,
      autoRelease: byId("auto-release").checked,
      encrypted: byId("encrypted").checked,
      model: model === "custom" ? { json: byId("model-json").value } : model,
      dataset,
    };
    if (dataset === "upload") {
      const file = byId("dataset-file").files[0];
      if (!file) throw new Error("dataset: choose a .npz or .csv file to upload");
      form.dataset = { name: file.name, data: await base64(file) };
    }
    return form;
  }

  async submit() {
    if (!this.dev) {
      this.showCommand();
      return;
    }
    const button = byId("post-button");
    button.disabled = true;
    this.say("busy", "Posting: splitting the dataset, uploading the training set and the spec, sending the escrow…");
    try {
      const form = await this.payload();
      const posted = await action("post-task", form);
      this.say("ok", `Task ${posted.taskId} posted from ${posted.poster}.`);
      this.log.add(`posted:${posted.taskId}`, `task ${posted.taskId} posted; its test set stays on this node until the release`);
    } catch (error) {
      this.say("error", `Not posted: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  showCommand() {
    const model = byId("model").value;
    const dataset = byId("dataset").value;
    const file = byId("dataset-file").files[0];
    const parts = [
      "POLE_KEY=<your key> pole task post", `--rpc ${location.origin}`,
      `--dataset ${dataset === "upload" ? (file ? file.name : "PATH.npz") : dataset}`,
      `--model ${model === "custom" ? "spec.json" : model}`,
      `--reward ${byId("reward").value}`, `--accuracy ${byId("accuracy").value}`,
      `--time-limit ${byId("time-limit").value}`, `--solutions ${byId("solutions").value}`,
      `--test-fraction ${byId("test-fraction").value}`,
    ];
    if (byId("encrypted").checked) parts.push("--encrypt");
    let text = parts.join(" \\\n    ");
    if (model === "custom") text = "# save the architecture as spec.json first\n" + text;
    if (byId("auto-release").checked) {
      text += `\n# then, with the task id it prints:\nPOLE_KEY=<your key> pole task release TASK --auto --rpc ${location.origin}`;
    }
    byId("post-command").textContent = text;
    byId("post-command-box").classList.remove("hidden");
  }

  async release(taskId, button) {
    button.disabled = true;
    try {
      const answer = await action("release", { taskId });
      this.log.add(`release:${taskId}`, `task ${taskId}: released to ${answer.admitted} solution(s)`);
    } catch (error) {
      this.log.add(`release-failed:${taskId}:${Date.now()}`, `task ${taskId}: release refused: ${error.message}`);
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ following tasks

  async update() {
    const [answer, log] = await Promise.all([view("tasks"), view("log")]);
    for (const entry of log) this.log.add(`srv:${entry.time}:${entry.text}`, entry.text, entry.time);
    const tasks = answer.tasks;
    this.showTasks(tasks);
    this.showAnnouncements(tasks);
    await this.notify(tasks);
    return tasks;
  }

  mine(task) {
    return task.postedHere || (this.address && task.poster === this.address);
  }

  showTasks(tasks) {
    const rows = [...tasks].reverse().map((t) => {
      const releasable = t.status === "open" && t.anchor && t.announcements.length && !t.release;
      let button = releasable && t.postedHere && this.dev
        ? `<button class="release" data-task="${t.id}">Release</button>` : "";
      if (t.status === "settled" && !this.mine(t) && !t.delivery && !this.wanted.has(t.id)) {
        button = `<button class="fetch" data-task="${t.id}">Fetch model</button>`;
      }
      const release = t.release ? `admits ${t.release.admitted.length}`
        : t.autoRelease === "waiting" ? "automatic, waiting" : t.autoRelease && t.autoRelease.startsWith("failed") ? esc(t.autoRelease) : "—";
      const result = t.result
        ? `${esc(short(t.result.winner))}: train ${pct(t.result.trainBps)}, test ${pct(t.result.testBps)}` : "—";
      return `<tr data-task="${t.id}" class="${this.mine(t) ? "mine" : ""}">
        <td>${t.id}</td><td class="state"><span class="pill ${esc(t.status)}">${esc(t.status)}</span></td>
        <td class="mono">${esc(short(t.poster))}</td><td>${esc(t.rewardText)}</td><td>${esc(t.valueText)}</td>
        <td>${pct(t.minTrainBps)}</td><td class="data">${dataKind(t.encrypted)}</td>
        <td>${t.status === "open" ? seconds(t.secondsLeft) : "—"}</td>
        <td>${t.announcements.length} of ${t.solutionsWanted}</td><td class="release-state">${release}</td>
        <td class="result">${result}</td><td>${button}</td></tr>`;
    });
    document.querySelector("#task-table tbody").innerHTML = rows.join("") ||
      `<tr><td colspan="12" class="muted">no tasks yet</td></tr>`;
    const held = tasks.filter((t) => t.status === "open" && !this.dev && this.mine(t));
    const note = byId("release-command");
    note.classList.toggle("hidden", !held.length);
    if (held.length) note.textContent = `Release from your machine: POLE_KEY=<your key> pole task release ${held[0].id} --rpc ${location.origin}`;
  }

  showAnnouncements(tasks) {
    const parts = tasks.filter((t) => t.announcements.length).reverse().map((t) => `
      <div class="announcements" data-task="${t.id}"><strong>task ${t.id}</strong>
        ${t.anchor ? `at anchor #${t.anchor.number}` : ""}
        <table><thead><tr><th>miner</th><th>model commitment</th><th>training acc.</th><th>bond</th><th>admitted</th><th>revealed</th></tr></thead><tbody>
        ${t.announcements.map((a) => `<tr><td class="mono">${esc(a.miner)}</td>
          <td class="mono">${esc(short(a.modelCommitment, 12, 6))}</td><td>${pct(a.trainBps)}</td>
          <td>${a.bonded ? "bonded" : "no bond"}</td>
          <td>${t.release ? (t.release.admitted.includes(a.modelCommitment) ? "yes" : "no") : "—"}</td>
          <td>${a.revealed ? "yes" : "no"}</td></tr>`).join("")}
        </tbody></table></div>`);
    byId("announcements").innerHTML = parts.join("") || `<p class="muted">None yet.</p>`;
    for (const t of tasks) {
      for (const a of t.announcements) {
        if (this.mine(t)) this.log.add(`ann:${t.id}:${a.modelCommitment}`,
          `task ${t.id}: solution announced by ${short(a.miner)}, training accuracy ${pct(a.trainBps)}`);
      }
    }
  }

  async notify(tasks) {
    const box = byId("notifications");
    const settled = tasks.filter((t) => t.status === "settled" && (this.mine(t) || this.wanted.has(t.id) || t.delivery));
    byId("no-notifications").classList.toggle("hidden", settled.length > 0);
    for (const t of settled) {
      // a delivery is of one winner: a better sibling of the settling block can still take
      // the head, and then the task has a new winner, its own model and its own card
      const winner = `${t.id}:${t.result.modelCommitment}`;
      if (!t.delivery && !this.requested.has(winner)) {
        this.requested.add(winner);
        this.log.add(`settled:${winner}`, `task ${t.id} settled: won by ${short(t.result.winner)}, test accuracy ${pct(t.result.testBps)}; fetching the model`);
        t.delivery = await action("deliver", { taskId: t.id });
      }
      let card = box.querySelector(`.notification[data-task="${t.id}"]`);
      if (!card) {
        card = document.createElement("div");
        card.dataset.task = t.id;
        box.prepend(card);
      }
      const state = t.delivery ? t.delivery.state : "running";
      if (card.dataset.state === state && card.dataset.winner === winner) continue;
      card.dataset.state = state;
      card.dataset.winner = winner;
      card.className = `notification ${state}`;
      card.innerHTML = this.card(t, state);
      if (state === "delivered") this.log.add(`delivered:${winner}`, `task ${t.id}: model delivered and checked`);
    }
  }

  card(t, state) {
    const r = t.result;
    const head = `<div class="accuracies">winner <span class="mono">${esc(r.winner)}</span> in block #${r.blockNumber};
      training accuracy ${pct(r.trainBps)}, test accuracy ${pct(r.testBps)}</div>`;
    if (state === "running") return `<h3>Task ${t.id} is settled: fetching and checking its model…</h3>${head}`;
    if (state === "failed") return `<h3>Task ${t.id}: the model could not be delivered</h3>${head}<div class="error">${esc(t.delivery.error)}</div>`;
    const meta = t.delivery.meta;
    const checked = meta.test_accuracy_checked
      ? `re-checked on the released test set: ${pct(meta.checked_test_bps)}` : `NOT re-checked: ${esc(meta.test_accuracy_unchecked_reason)}`;
    const links = t.delivery.files.map((name) => (
      `<a class="download" data-file="${esc(name)}" href="api/model/${t.id}/${esc(name)}" download="${esc(name)}">${esc(name)}</a>`)).join("");
    return `<h3>Task ${t.id}: your model is ready</h3>${head}
      <div class="commitment">commitment ${esc(short(meta.model_commitment, 12, 6))} ✓ the model hashes to it
        (keccak(model ‖ winner ‖ anchor) = the on-chain commitment)</div>
      <div class="checked">test accuracy ${checked}</div>
      <div class="downloads">download: ${links}</div>
      <div class="muted small">model.safetensors / model.pt: the torch state dict of a module that predicts on raw
        features (load it with pole_chain.clients.model_delivery.load_delivered_model); model.plmd: the committed blob.</div>`;
  }
}

// What the task's training blob is, as a miner fetching it sees it (views.py decodes it).
function dataKind(encrypted) {
  if (encrypted === null || encrypted === undefined) return `<span class="muted">not here yet</span>`;
  return encrypted ? `<span class="pill encrypted">encrypted</span>` : "clear";
}

function byId(id) {
  return document.getElementById(id);
}

async function base64(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}
