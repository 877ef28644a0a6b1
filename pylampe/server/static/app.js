// The chat page: a document read on the server, questions answered as they stream, each turn's
// numbers, the conversation kept in the browser. Text from documents, questions and answers is
// only ever put into the page as text nodes (answers through markdown.js, which builds nodes).

import { Api, ApiError, requestId } from "./api.js";
import { render } from "./markdown.js";
import {
  emptyConversation, loadConversation, loadSettings, messages, saveConversation, saveSettings,
} from "./store.js";

const $ = (id) => document.getElementById(id);
const number = (n) => Number(n).toLocaleString("en-US");
const seconds = (s) => `${Number(s).toFixed(s < 10 ? 2 : 1)} s`;
const THEMES = ["auto", "light", "dark"];
const THEME_LABELS = { auto: "Auto", light: "Light", dark: "Dark" };
// prompt evaluations shorter than this (most questions) get no progress bar
const PROGRESS_MIN_TOKENS = 256;
const PROGRESS_POLL_MS = 250;
// the document text shown on the page (all of it is sent to the model)
const PREVIEW_CHARS = 200000;

const api = new Api(askKey);
let conversation = loadConversation();
let settings = loadSettings();
let busy = null; // {kind: "read" | "answer", id, abort, firstText}

// -- API key -------------------------------------------------------------------------

function askKey() {
  const dialog = $("key-dialog");
  $("key-error").hidden = !api.key; // a key was sent and refused
  $("key").value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve($("key").value.trim()), { once: true });
    dialog.showModal();
  });
}

// -- rendering -----------------------------------------------------------------------

function showInfo(lampe) {
  if (!lampe || !lampe.model) return;
  const state = lampe.state || {};
  const attention = state.status === "on" ? "LaMPE on" : `upstream attention (${state.status || "LaMPE off"})`;
  $("model-info").textContent = `${lampe.model} · context ${number(lampe.n_ctx)} tokens · `
    + `trained T ${number(lampe.n_ctx_train)} · ${attention}`;
}

function readLine(doc) {
  if (doc.how === "restored") return `Restored from the document cache in ${seconds(doc.read_seconds)}.`;
  if (doc.how === "kept") return "Already in the model's KV cache.";
  if (doc.how === "read") {
    const rate = doc.read_seconds > 0 ? `, ${number(Math.round(doc.tokens / doc.read_seconds))} tokens/s` : "";
    return `Read in ${seconds(doc.read_seconds)}${rate}${doc.saved ? "; saved to the document cache" : ""}.`;
  }
  return "Read with the first question.";
}

function renderDocument() {
  const doc = conversation.document;
  $("drop-hint").hidden = Boolean(doc) || conversation.turns.length > 0;
  $("document-card").hidden = !doc;
  if (!doc) return;
  $("document-name").textContent = doc.name;
  $("document-kind").textContent = doc.kind;
  const multiple = doc.multiple_of_T !== null ? ` (${doc.multiple_of_T.toFixed(1)} × T)` : "";
  $("document-facts").textContent = `${doc.describe} · ${number(doc.tokens)} tokens${multiple} `
    + `of a ${number(doc.n_ctx)}-token context`;
  $("document-facts").dataset.tokens = doc.tokens;
  $("document-read").textContent = readLine(doc);
  $("document-read").dataset.how = doc.how || "";
  const text = doc.text.length > PREVIEW_CHARS ? `${doc.text.slice(0, PREVIEW_CHARS)}\n…` : doc.text;
  $("document-text").textContent = text;
}

function statsLine(turn) {
  const parts = [];
  const s = turn.stats;
  if (s) {
    parts.push(`prompt ${number(s.prompt_tokens)} tokens: ${number(s.reused_tokens)} reused, `
      + `${number(s.prefill_tokens)} evaluated`);
    if (s.generated_tokens > 0) parts.push(`first token ${seconds(s.ttft_s)}`);
    if (s.decode_rate > 0) parts.push(`${s.decode_rate.toFixed(1)} tokens/s`);
    if (s.generated_tokens > 0) parts.push(`${number(s.generated_tokens)} generated`);
    if (s.lampe === "on") {
      parts.push(s.L > 0 ? `LaMPE L ${number(s.L)}, M ${number(s.M)}` : "LaMPE: exact attention inside T");
    }
  }
  return parts.join(" · ");
}

function fillTurn(li, turn) {
  const answer = li.querySelector(".answer");
  if (turn.error && !turn.answer) {
    answer.replaceChildren();
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = turn.error;
    answer.append(p);
  } else {
    answer.replaceChildren(render(turn.answer || ""));
  }
  const stats = li.querySelector(".stats");
  stats.textContent = statsLine(turn);
  if (turn.stopped) {
    const stopped = document.createElement("span");
    stopped.className = "stopped";
    stopped.textContent = `${stats.textContent ? " · " : ""}stopped`;
    stats.append(stopped);
  }
  if (turn.error && turn.answer) stats.append(` · ${turn.error}`);
  li.dataset.state = turn.finished ? "done" : "writing";
}

function turnElement(turn) {
  const li = document.createElement("li");
  li.className = "turn";
  const question = document.createElement("div");
  question.className = "question";
  question.textContent = turn.question;
  const answer = document.createElement("div");
  answer.className = "answer";
  answer.setAttribute("aria-live", "polite");
  const stats = document.createElement("div");
  stats.className = "stats";
  li.append(question, answer, stats);
  fillTurn(li, turn);
  return li;
}

function renderConversation() {
  renderDocument();
  $("turns").replaceChildren(...conversation.turns.map(turnElement));
  scrollToEnd(true);
}

function scrollToEnd(force) {
  const main = $("chat");
  if (force || main.scrollHeight - main.scrollTop - main.clientHeight < 120) main.scrollTop = main.scrollHeight;
}

function persist() {
  if (!saveConversation(conversation)) {
    showError("This browser could not keep the conversation for a reload (its storage is full).");
  }
}

function showError(message) {
  $("document-error").textContent = message;
  $("document-error").hidden = !message;
}

// -- busy: one request at a time, a progress bar, Stop ---------------------------------

function setBusy(state) {
  busy = state;
  document.body.dataset.busy = state ? state.kind : "";
  $("send").hidden = Boolean(state);
  $("stop").hidden = !state;
  $("attach").disabled = Boolean(state);
  $("pick").disabled = Boolean(state);
  if (state) pollProgress(state);
  else $("progress").hidden = true;
}

async function pollProgress(state) {
  let seen = false; // the first snapshot that is this request's
  while (busy === state) {
    try {
      const p = await api.progress();
      if (busy !== state) break;
      const show = p.active && (state.kind === "read" || (!state.firstText && p.total >= PROGRESS_MIN_TOKENS));
      seen = seen || show;
      $("progress").hidden = !(show || (state.kind === "read" && !seen));
      if (show) {
        $("progress-bar").value = p.done / p.total;
        const rate = p.rate > 0 ? `, ${number(Math.round(p.rate))} tokens/s` : "";
        $("progress-text").textContent = `${state.label}: ${number(p.done)} of ${number(p.total)} tokens${rate}`;
      } else if (state.kind === "read" && !seen) {
        $("progress-bar").removeAttribute("value"); // converting the file: indeterminate
        $("progress-text").textContent = `${state.label}: converting…`;
      }
    } catch {
      // the next poll will tell
    }
    await new Promise((r) => setTimeout(r, PROGRESS_POLL_MS));
  }
}

function stop() {
  if (!busy) return;
  api.stop(busy.id).catch(() => {}); // also ends a prompt evaluation, which the abort cannot
  busy.abort.abort();
}

// -- a document ----------------------------------------------------------------------

async function readDocument(file) {
  if (busy || !file) return;
  showError("");
  const state = { kind: "read", id: requestId(), abort: new AbortController(), label: `Reading ${file.name}` };
  setBusy(state);
  try {
    const doc = await api.readDocument(file, {
      model: settings.model, maxTokens: settings.maxTokens, id: state.id, signal: state.abort.signal,
    });
    // a document starts a conversation about it
    conversation = { ...emptyConversation(), document: doc };
    persist();
    renderConversation();
  } catch (e) {
    showError(e.name === "AbortError" || (e instanceof ApiError && e.code === "stopped")
      ? `Stopped: ${file.name} was not read.` : e.message);
  } finally {
    setBusy(null);
    $("file").value = "";
    $("question").focus();
  }
}

// -- a question ----------------------------------------------------------------------

async function ask(question) {
  if (busy || !question.trim()) return;
  showError("");
  const body = {
    messages: messages(conversation, question),
    max_tokens: settings.maxTokens,
    temperature: settings.temperature,
  };
  if (settings.model) body.model = settings.model;
  const turn = { question, answer: "" };
  conversation.turns.push(turn);
  renderDocument();
  const li = turnElement(turn);
  $("turns").append(li);
  scrollToEnd(true);
  const state = { kind: "answer", id: requestId(), abort: new AbortController(), label: "Reading the prompt" };
  setBusy(state);
  let frame = 0;
  try {
    await api.chat(body, {
      id: state.id,
      signal: state.abort.signal,
      onText: (piece) => {
        state.firstText = true;
        turn.answer += piece;
        if (!frame) {
          frame = requestAnimationFrame(() => { frame = 0; fillTurn(li, turn); scrollToEnd(false); });
        }
      },
    });
  } catch (e) {
    if (e.name === "AbortError" || (e instanceof ApiError && e.code === "stopped")) turn.stopped = true;
    else turn.error = e.message;
  }
  cancelAnimationFrame(frame);
  if (state.abort.signal.aborted) turn.stopped = true;
  try {
    const lampe = await api.lampe();
    showInfo(lampe);
    const last = lampe.last_request;
    if (last && !turn.error) {
      turn.stats = { ...last, lampe: lampe.state && lampe.state.status === "on" ? "on" : "off",
        L: lampe.state ? lampe.state.L : 0, M: lampe.state ? lampe.state.M : 0 };
    }
  } catch {
    // the answer stands without its numbers
  }
  turn.finished = true;
  fillTurn(li, turn);
  persist();
  setBusy(null);
  scrollToEnd(false);
}

// -- settings, theme, models --------------------------------------------------------

function applyTheme() {
  document.documentElement.dataset.theme = settings.theme;
  $("theme").textContent = THEME_LABELS[settings.theme];
}

function bindSettings() {
  $("max-tokens").value = settings.maxTokens;
  $("temperature").value = settings.temperature;
  $("max-tokens").addEventListener("change", (e) => {
    settings.maxTokens = Math.max(1, parseInt(e.target.value, 10) || settings.maxTokens);
    e.target.value = settings.maxTokens;
    saveSettings(settings);
  });
  $("temperature").addEventListener("change", (e) => {
    const t = parseFloat(e.target.value);
    settings.temperature = Number.isFinite(t) ? Math.min(2, Math.max(0, t)) : settings.temperature;
    e.target.value = settings.temperature;
    saveSettings(settings);
  });
  $("settings-toggle").addEventListener("click", () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    $("settings-toggle").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) $("max-tokens").focus();
  });
  $("theme").addEventListener("click", () => {
    settings.theme = THEMES[(THEMES.indexOf(settings.theme) + 1) % THEMES.length];
    saveSettings(settings);
    applyTheme();
  });
}

async function loadModels() {
  const models = (await api.models()).data.map((m) => m.id);
  if (!models.includes(settings.model)) settings.model = "";
  if (models.length > 1) {
    const select = $("model");
    select.replaceChildren(...models.map((id) => new Option(id, id)));
    select.value = settings.model || models[0];
    select.addEventListener("change", () => { settings.model = select.value; saveSettings(settings); });
    $("model-choice").hidden = false;
  }
}

// -- events --------------------------------------------------------------------------

function bindEvents() {
  const question = $("question");
  $("ask").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = question.value;
    if (!text.trim() || busy) return;
    question.value = "";
    question.style.height = "";
    ask(text);
  });
  question.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("ask").requestSubmit();
    }
  });
  question.addEventListener("input", () => {
    question.style.height = "";
    question.style.height = `${question.scrollHeight + 2}px`;
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && busy && !$("key-dialog").open) { e.preventDefault(); stop(); }
  });
  $("stop").addEventListener("click", stop);
  for (const id of ["attach", "pick"]) $(id).addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", (e) => readDocument(e.target.files[0]));
  $("new-conversation").addEventListener("click", () => {
    stop();
    conversation = emptyConversation();
    persist();
    showError("");
    renderConversation();
    question.focus();
  });

  // drop a file anywhere on the page
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types).includes("Files");
  window.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth++;
    $("drop-overlay").hidden = false;
  });
  window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) $("drop-overlay").hidden = true; });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    $("drop-overlay").hidden = true;
    readDocument(e.dataTransfer.files[0]);
  });
}

async function main() {
  applyTheme();
  bindSettings();
  bindEvents();
  renderConversation();
  try {
    await loadModels();
    showInfo(await api.lampe());
  } catch (e) {
    $("model-info").textContent = `server: ${e.message}`;
  }
  document.body.dataset.ready = "true";
}

main();
