"""GET /: a page to try the served model: a text box, the labels with probability bars, and the
words highlighted by POST /explain (green: for the label, red: against it). GET /report: the
served model's report.html (training/report.py), protected like /model, under a policy that runs
no script.

One self-contained page (no CDN, no external file: it works offline and in the api image) that
calls this server's own /predict and /explain. The page itself holds no data and needs no token;
when the server answers 401 it asks for the API token and keeps it in the page's memory only (never
in storage or a cookie), sending it as Authorization: Bearer. Texts are shown with textContent,
never as HTML, so a text cannot run in the page.
"""

import base64
import hashlib
import re

from flask import Blueprint, Response

from bertclf.serve.errors import ApiError
from bertclf.serve.routes import LOADING, state

bp = Blueprint("page", __name__)
REPORT_FILE = "report.html"  # training/report.py writes it into every model folder
# The report runs nothing: no script at all; its styles are inline and its one picture a data: URI.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bertclf: try the model</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  textarea { width: 100%; min-height: 7rem; font: inherit; padding: .5rem; box-sizing: border-box; }
  button { font: inherit; padding: .4rem 1.2rem; margin-top: .5rem; cursor: pointer; }
  #token-box { display: none; margin: 1rem 0; padding: .75rem; background: #fff6dd; border: 1px solid #e5c766; }
  #token { width: 60%; font: inherit; }
  .row { display: flex; align-items: center; gap: .75rem; margin: .25rem 0; }
  .name { width: 12rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar { height: 1rem; background: #3b7dd8; border-radius: 2px; }
  .value { width: 4rem; text-align: right; font-variant-numeric: tabular-nums; }
  #words span { padding: 0 .15rem; border-radius: 3px; }
  #status { color: #666; min-height: 1.5rem; }
  .error { color: #b00020; }
</style>
</head>
<body>
<h1>Try the model</h1>
<p id="model"></p>
<label for="text">Text to classify</label>
<textarea id="text" placeholder="Paste a ticket, an issue, a question..."></textarea>
<button id="go" type="button">Classify</button>
<div id="token-box">
  <p>This server needs an API token. It is kept in this page only and sent with each request.</p>
  <input id="token" type="password" autocomplete="off" placeholder="API token">
  <button id="token-go" type="button">Use token</button>
</div>
<p id="status"></p>
<div id="labels"></div>
<h2 id="why-title" hidden>Why</h2>
<p id="words"></p>
<script>
"use strict";
let token = null;  // only here, in memory: gone when the page closes
const $ = (id) => document.getElementById(id);

async function call(path, body) {
  const headers = {"Content-Type": "application/json"};
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, {method: "POST", headers: headers, body: JSON.stringify(body)});
  let answer = {};
  try { answer = await response.json(); } catch (e) { answer = {error: response.statusText}; }
  return {status: response.status, answer: answer};
}

function say(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function showLabels(answer) {
  const box = $("labels");
  box.replaceChildren();
  const scores = Object.entries(answer.scores[0]).sort((a, b) => b[1] - a[1]).slice(0, 8);
  for (const [name, p] of scores) {
    const row = document.createElement("div");
    row.className = "row label";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = Math.max(1, Math.round(p * 300)) + "px";
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = p.toFixed(3);
    row.append(label, bar, value);
    box.append(row);
  }
  const prediction = answer.predictions[0];
  $("model").textContent = "model: " + answer.model;
  say(prediction === null ? "the model abstains: below its confidence threshold" : "");
}

function showWords(explanation) {
  const box = $("words");
  box.replaceChildren();
  const top = Math.max(1e-6, ...explanation.words.map((w) => Math.abs(w.weight)));
  for (const w of explanation.words) {
    const span = document.createElement("span");
    span.textContent = w.word;
    const strength = Math.min(1, Math.abs(w.weight) / top);
    const colour = w.weight >= 0 ? "46, 160, 67" : "215, 58, 73";
    span.style.background = "rgba(" + colour + ", " + (0.6 * strength).toFixed(3) + ")";
    span.title = (w.weight >= 0 ? "+" : "") + w.weight.toFixed(3) + (w.read ? "" : " (past max_seq_len: not read)");
    span.dataset.weight = w.weight;
    box.append(span, document.createTextNode(" "));
  }
  $("why-title").hidden = false;
  $("why-title").textContent = "Why " + explanation.label;
}

async function classify() {
  const text = $("text").value;
  if (!text.trim()) { say("type a text first", true); return; }
  say("classifying...");
  const predicted = await call("/predict", {x: [text], return_scores: true});
  if (predicted.status === 401) {
    $("token-box").style.display = "block";
    say(token ? "that token is not valid here" : "this server needs an API token", true);
    return;
  }
  if (predicted.status !== 200) { say(predicted.answer.error || ("error " + predicted.status), true); return; }
  $("token-box").style.display = "none";
  showLabels(predicted.answer);
  const explained = await call("/explain", {x: [text]});
  if (explained.status === 200) { showWords(explained.answer.explanations[0]); }
  else { say("no explanation: " + (explained.answer.error || explained.status), true); }
}

$("go").addEventListener("click", classify);
$("token-go").addEventListener("click", () => {
  token = $("token").value.trim() || null;
  $("token").value = "";
  classify();
});
$("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) classify(); });
</script>
</body>
</html>
"""


def _sha256(tag: str) -> str:
    """The CSP source for the page's one inline <tag> block: its SHA-256, so nothing else can run."""
    match = re.search(rf"<{tag}>(.*?)</{tag}>", PAGE, re.S)
    assert match is not None
    return "'sha256-" + base64.b64encode(hashlib.sha256(match.group(1).encode()).digest()).decode() + "'"


# The page runs only its own script and style (by hash) and talks only to this server.
POLICY = (
    f"default-src 'none'; script-src {_sha256('script')}; style-src {_sha256('style')}; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/")
def page():
    response = Response(PAGE, mimetype="text/html")
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/report")
def report():
    """The served model's report.html (protected like /model)."""
    predictor = state().manager.predictor
    if predictor is None:
        raise ApiError(503, LOADING)
    path = predictor.folder / REPORT_FILE
    if not path.is_file():
        raise ApiError(404, f"the model {predictor.name} was exported before models had a report.html")
    response = Response(path.read_bytes(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = REPORT_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
