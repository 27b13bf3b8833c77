// pepx serve: the page. Plain JavaScript, no build step, no outside requests: it only calls this server's
// /v1/ API. Each image is its own request, so several images share the server's dynamic batches.
"use strict";

const MAX_IN_FLIGHT = 4;        // uploads at once from this page
const MAX_RETRIES = 3;          // on 503 (server busy), after its Retry-After

const state = { token: sessionStorage.getItem("pepx-token") || "", model: null, queue: [], inFlight: 0 };
const $ = (id) => document.getElementById(id);

function authHeaders() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

function pct(p) {
  return (100 * p).toFixed(1) + "%";
}

// ------------------------------------------------------------------ the model
async function loadModel() {
  let response;
  try {
    response = await fetch("/v1/model", { headers: authHeaders() });
  } catch (err) {
    $("model-line").textContent = "Cannot reach the server: " + err.message;
    return;
  }
  if (response.status === 401) {
    $("token-form").hidden = false;
    $("model-line").textContent = "This server needs an access token.";
    if (state.token) $("token-msg").textContent = "That token was not accepted.";
    $("token").focus();
    return;
  }
  if (!response.ok) {
    $("model-line").textContent = "The server answered " + response.status + " for /v1/model.";
    return;
  }
  state.model = await response.json();
  $("token-form").hidden = true;
  const m = state.model;
  $("model-line").textContent = `${m.id} ${m.version} · ${m.image_size} px · runtime ${m.runtime} · ` +
    `classes: ${m.class_display.join(", ")}`;
  $("model-line").dataset.modelId = m.id;
  if (m.card_html) $("card-text").innerHTML = m.card_html;  // rendered by the server, raw HTML escaped
  else $("card-text").textContent = "(this bundle has no model card)";
  $("card-open").disabled = false;
  drainQueue();
}

// ------------------------------------------------------------------ results
function addResult(file) {
  const node = $("result-template").content.firstElementChild.cloneNode(true);
  node.querySelector(".name").textContent = file.name;
  node.querySelector(".message").textContent = "Waiting…";
  $("results").appendChild(node);
  return node;
}

function showError(node, status, detail) {
  node.dataset.state = "error";
  node.dataset.code = String(status);
  const message = node.querySelector(".message");
  message.textContent = `Not classified (${status}): ${detail}`;
  message.classList.add("error-text");
}

// The input gate's verdict in plain words. A rejected image shows no class at all; an unfamiliar one shows its
// class greyed out, with the reason.
function showRejected(node, p) {
  node.dataset.state = "rejected";
  node.dataset.gate = "rejected";
  const message = node.querySelector(".message");
  message.textContent = "Not classified: this does not look like a frontal chest X-ray, so no class is " +
    "given. Why: " + (p.gate_reason || "the input gate rejected it") + ".";
  message.classList.add("rejected-text");
}

function showPrediction(node, p) {
  if (p.gate === "rejected") {
    showRejected(node, p);
    return;
  }
  node.dataset.state = "ok";
  node.dataset.label = p.label;
  node.dataset.gate = p.gate || "off";
  node.querySelector(".message").textContent = "";
  node.querySelector(".body").hidden = false;
  if (p.gate === "unfamiliar") {
    node.classList.add("unfamiliar");
    const note = node.querySelector(".gate-note");
    note.hidden = false;
    note.textContent = "Low trust: this film is " + (p.gate_reason || "unlike the training films") + ".";
  }
  node.querySelector(".label").textContent = p.label_display;
  if (p.flagged.length) {
    const names = state.model ? Object.fromEntries(state.model.classes.map((c, i) => [c, state.model.class_display[i]])) : {};
    node.querySelector(".flags").textContent = "· flagged: " + p.flagged.map((c) => names[c] || c).join(", ") +
      " (its probability reached the class's operating point, whether or not it is the most probable class)";
  }
  if (p.caveat) {
    const caveat = node.querySelector(".caveat");
    caveat.hidden = false;
    caveat.textContent = "Model card: " + p.caveat;
  }
  const bars = node.querySelector(".bars");
  const display = state.model ? state.model.class_display : Object.keys(p.probabilities);
  const classes = state.model ? state.model.classes : Object.keys(p.probabilities);
  classes.forEach((cls, i) => {
    const value = p.probabilities[cls];
    const row = $("bar-template").content.firstElementChild.cloneNode(true);
    row.dataset.class = cls;
    row.dataset.prob = String(value);
    if (cls === p.label) row.classList.add("best");
    row.querySelector(".cls").textContent = display[i];
    row.querySelector(".fill").style.width = (100 * value).toFixed(2) + "%";
    row.querySelector(".pct").textContent = pct(value);
    bars.appendChild(row);
  });
  if (p.cam) showCam(node, p.cam);
  const t = p.timing_ms;
  node.querySelector(".timing").textContent =
    `decode ${t.decode} ms · queue ${t.queue} ms · inference ${t.inference} ms (batch of ${p.batch_size})` +
    (t.cam !== undefined ? ` · Grad-CAM ${t.cam} ms` : "");
}

function showCam(node, cam) {
  const figure = node.querySelector(".cam");
  figure.hidden = false;
  const film = figure.querySelector(".film-img");
  film.src = cam.film;
  film.alt = "The uploaded radiograph with a Grad-CAM heat map for " + (cam.class_display || cam.class);
  const heat = figure.querySelector(".heat-img");
  heat.src = cam.heatmap;
  figure.querySelector(".cam-caption").textContent =
    `Grad-CAM for “${cam.class_display || cam.class}” at ${cam.layer}: where the network's evidence for that class lies, ` +
    "warm = more. A heat map is not a finding and can point at shortcuts such as text or borders." +
    (cam.cropped ? " The network saw a centred square of the film: the parts outside it have no colour." : "");
  const slider = figure.querySelector(".opacity");
  const output = figure.querySelector(".opacity-value");
  const apply = () => {
    heat.style.opacity = slider.value;
    output.textContent = Math.round(100 * slider.value) + "%";
  };
  slider.addEventListener("input", apply);
  apply();
}

// ------------------------------------------------------------------ uploads
function enqueue(files) {
  const list = Array.from(files);
  if (!list.length) return;
  list.forEach((file) => state.queue.push({ file, node: addResult(file), tries: 0 }));
  $("status").textContent = `${list.length} image${list.length > 1 ? "s" : ""} added.`;
  drainQueue();
}

function drainQueue() {
  if (!state.model) return;   // wait for the model (and the token, when one is needed)
  while (state.inFlight < MAX_IN_FLIGHT && state.queue.length) {
    const job = state.queue.shift();
    state.inFlight += 1;
    upload(job).finally(() => {
      state.inFlight -= 1;
      drainQueue();
      if (!state.inFlight && !state.queue.length) $("status").textContent = "All images done.";
    });
  }
}

async function upload(job) {
  job.node.querySelector(".message").textContent = "Classifying…";
  const form = new FormData();
  form.append("file", job.file, job.file.name);
  let response;
  try {
    response = await fetch("/v1/predict?cam=true", { method: "POST", body: form, headers: authHeaders() });
  } catch (err) {
    showError(job.node, "network", err.message);
    return;
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = { detail: response.statusText };
  }
  if (response.status === 503 && job.tries < MAX_RETRIES) {
    job.tries += 1;
    const wait = Number(response.headers.get("Retry-After") || "1");
    job.node.querySelector(".message").textContent = `Server busy; retrying in ${wait} s…`;
    await new Promise((resolve) => setTimeout(resolve, 1000 * wait));
    return upload(job);
  }
  if (response.status === 401) {
    state.model = null;
    state.queue.unshift(job);
    job.node.querySelector(".message").textContent = "Waiting for an access token…";
    loadModel();
    return;
  }
  const prediction = body && body.predictions ? body.predictions[0] : null;
  if (response.ok && prediction && prediction.status === "ok") {
    showPrediction(job.node, prediction);
  } else {
    showError(job.node, response.status, (body && body.detail) || response.statusText);
  }
}

// ------------------------------------------------------------------ wiring
function init() {
  $("files").addEventListener("change", (event) => {
    enqueue(event.target.files);
    event.target.value = "";
  });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    enqueue(event.dataTransfer.files);
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("pepx-token", state.token);
    $("token-msg").textContent = "";
    loadModel();
  });
  const dialog = $("card");
  $("card-open").addEventListener("click", () => {
    dialog.showModal();
    $("card-close").focus();
  });
  $("card-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => $("card-open").focus());
  loadModel();
}

document.addEventListener("DOMContentLoaded", init);
