#!/usr/bin/env bash
# `make compose-test` (also the last step of `make docker-test`): deploy/compose.yaml for real.
#  1. two api replicas (the built api image) behind nginx, on a models folder holding model A and
#     model B (A's weights with its labels rotated, so every answer's labels prove which model
#     computed it), the pointer on A;
#  2. traffic through nginx reaches both replicas, all answered by A;
#  3. the pointer is changed once, to B: both replicas answer with B within 30 s, and no request
#     fails meanwhile;
#  4. nginx's limits: a burst from one address past its rate gets 429 with JSON and Retry-After;
#  5. the stack is taken down.
# The replicas run as compose.yaml says: read-only root, no capabilities, bounded memory and pids.
# Model A is the folder models/latest_model_config.json names (or MODEL_DIR=models/trained/<folder>);
# it must have its serving graph. nginx is NGINX_IMAGE, else the official nginx:1.27 if present,
# else one built here from deploy/nginx.Dockerfile (Debian's nginx package on BASE_IMAGE).
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
API_IMAGE=${API_IMAGE:-bertclf-api}
project="bertclf-compose-test-$$"
say() { echo "compose-test: $*"; }
fail() { echo "compose-test: FAILED: $*" >&2; exit 1; }

if $DOCKER compose version >/dev/null 2>&1; then compose=("$DOCKER" compose)
elif command -v docker-compose >/dev/null; then compose=(docker-compose)
else fail "needs docker compose (the plugin) or docker-compose (Debian: apt-get install docker-compose)"; fi
if [ -z "${NGINX_IMAGE:-}" ]; then
    if $DOCKER image inspect nginx:1.27 >/dev/null 2>&1; then NGINX_IMAGE=nginx:1.27
    else
        NGINX_IMAGE=bertclf-nginx
        say "building $NGINX_IMAGE from Debian's nginx package (deploy/nginx.Dockerfile)"
        $DOCKER build -q ${DOCKER_BUILD_FLAGS:-} ${BASE_IMAGE:+--build-arg BASE_IMAGE=$BASE_IMAGE} \
            -f deploy/nginx.Dockerfile -t "$NGINX_IMAGE" deploy >/dev/null
    fi
fi

models=$(mktemp -d)
chmod 755 "$models"
UPSTREAM_HEADER_CONF="$models/upstream-header.conf"
echo 'add_header X-Upstream $upstream_addr always;' > "$UPSTREAM_HEADER_CONF"
compose+=(-p "$project" -f deploy/compose.yaml -f docker/compose-upstream-header.yaml)
export API_IMAGE NGINX_IMAGE MODELS_DIR="$models" PROXY_PORT UPSTREAM_HEADER_CONF
PROXY_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    "${compose[@]}" down --timeout 10 >/dev/null 2>&1 || true
    rm -rf "$models"
}
trap cleanup EXIT

# === 1. models A and B, the stack ===
python3 - "${MODEL_DIR:-}" "$models" <<'PY'
import json, shutil, sys
from pathlib import Path
given, target = sys.argv[1], Path(sys.argv[2])
source = Path(given) if given else Path("models") / json.load(open("models/latest_model_config.json"))["model_dir"]
if not (source / "serving" / "model.onnx").is_file():
    sys.exit(f"compose-test: {source} has no serving/model.onnx: python -m bertclf export-onnx --model_dir {source}")
for name in ("A", "B"):
    shutil.copytree(source, target / "trained" / name, ignore=shutil.ignore_patterns("*.weights.h5", "logs"))
    config = json.loads((target / "trained" / name / "model_config.json").read_text())
    config.update(id=f"model-{name}", name=f"compose test model {name}")
    (target / "trained" / name / "model_config.json").write_text(json.dumps(config))
labels = json.loads((target / "trained" / "B" / "labels.json").read_text())
(target / "trained" / "B" / "labels.json").write_text(json.dumps(labels[1:] + labels[:1]))
(target / "latest_model_config.json").write_text(json.dumps({"model_dir": "trained/A"}))
PY
chmod -R a+rX "$models"
say "starting 2 api replicas ($API_IMAGE) behind nginx ($NGINX_IMAGE) on 127.0.0.1:$PROXY_PORT"
"${compose[@]}" up -d --scale api=2 >/dev/null 2>&1 \
    || { "${compose[@]}" logs --tail 20; fail "the stack did not start"; }

# === 2-3. traffic, one pointer change, both replicas on B ===
python3 - "$PROXY_PORT" "$models" <<'PY' || { "${compose[@]}" logs --tail 30; fail "see above"; }
import json, os, sys, time, urllib.request
port, models = sys.argv[1], sys.argv[2]
url = f"http://127.0.0.1:{port}"
texts = ["How do I reverse a list in Python?", "git push says rejected", "SELECT the rows of the last week"]

def ask():
    time.sleep(0.06)  # under nginx's 20 requests a second per address (step 4 goes past it)
    request = urllib.request.Request(url + "/predict", data=json.dumps({"x": texts}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.headers["X-Upstream"], json.loads(answer.read())

deadline = time.monotonic() + 120
while True:
    try:
        ask()
        break
    except OSError as err:
        if time.monotonic() > deadline:
            sys.exit(f"compose-test: nginx did not answer /predict within 120 s ({err})")
        time.sleep(1)

seen = {}
for _ in range(40):
    upstream, answer = ask()
    seen.setdefault(upstream, set()).add(answer["model"])
assert len(seen) == 2 and all(models == {"compose test model A"} for models in seen.values()), seen
a_labels = answer["predictions"]
print(f"compose-test: 40 requests through nginx reached both replicas {sorted(seen)}, all answered by model A")

pointer = os.path.join(models, "latest_model_config.json")
with open(pointer + ".tmp", "w") as f:
    json.dump({"model_dir": "trained/B"}, f)
os.replace(pointer + ".tmp", pointer)
swapped, started, requests = {}, time.monotonic(), 0
while len(swapped) < 2 or min(swapped.values()) < 5:
    assert time.monotonic() - started < 30, f"not every replica answers with B after 30 s: {swapped}"
    upstream, answer = ask()  # any error fails the test: no request may fail during the swap
    requests += 1
    if answer["model"] == "compose test model B":
        swapped[upstream] = swapped.get(upstream, 0) + 1
        labels = json.load(open(os.path.join(models, "trained", "A", "labels.json")))
        rotated = labels[1:] + labels[:1]
        assert answer["predictions"] == [rotated[labels.index(p)] for p in a_labels], (answer, a_labels)
    else:
        assert answer["model"] == "compose test model A", answer
        assert not swapped.get(upstream), f"{upstream} went back from B to A"
print(f"compose-test: one pointer change: both replicas {sorted(swapped)} answer with model B after "
      f"{time.monotonic() - started:.1f} s; {requests} requests meanwhile, none failed")
PY

# === 4. nginx's limits per address ===
python3 - "$PROXY_PORT" <<'PY' || fail "nginx's rate limit"
import concurrent.futures, json, sys, urllib.error, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/health"
def get(_):
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, None, None
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Retry-After"), json.loads(err.read())
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    answers = list(pool.map(get, range(200)))
limited = [a for a in answers if a[0] == 429]
assert limited and {a[0] for a in answers} <= {200, 429}, {a[0] for a in answers}
assert all(a[1] == "1" and "too many requests" in a[2]["error"] for a in limited), limited[0]
print(f"compose-test: 200 requests at once from one address: {len(answers) - len(limited)} passed, "
      f"{len(limited)} got 429 with Retry-After and a JSON error")
PY

# === 5. down ===
"${compose[@]}" down --timeout 10 >/dev/null 2>&1
say "passed"
