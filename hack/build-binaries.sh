#!/usr/bin/env bash
# Builds the real control-plane binaries (kube-apiserver, kubectl, etcd), the tests' Envoy-side
# ext_proc client (hack/envoy-side) and the benchmark's load generator (bench/loadgen) from the Go
# module proxy, and the model server llm-d-inference-sim from its source in ../shared/upstream-src, into a cache folder outside git,
# unless they are given by TEST_ASSET_* / KUBEBUILDER_ASSETS / LLM_D_INFERENCE_SIM or already cached. Rebuilds only
# what is missing. `build-binaries.sh prometheus` builds (once) and names only Prometheus, for
# machines without Debian's package; `build-binaries.sh --check` builds nothing and prints the same
# name=path lines plus prometheus= (a path that is not an executable file is still to be built).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"   # k8s.io/kubernetes release
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}" # go.etcd.io/etcd/server/v3
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.315.1}" # github.com/prometheus/prometheus: Prometheus 3.15.1
HELM_VERSION="${HELM_VERSION:-v3.22.1}" # helm.sh/helm/v3
CACHE="${MODELROLLOUT_CACHE:-$HOME/.cache/modelrollout}"
BIN="$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$BIN"

log() { printf '[build-binaries] %s\n' "$*" >&2; }

asset() { # name envvar -> path of a given binary, or empty
  local name=$1 var=$2
  if [ -n "${!var:-}" ] && [ -x "${!var}" ]; then echo "${!var}"; return; fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; then echo "$KUBEBUILDER_ASSETS/$name"; return; fi
  if [ -x "$BIN/$name" ]; then echo "$BIN/$name"; return; fi
}

need_go() {
  # Go installed but not on PATH (a non-login shell): use the usual install location.
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="$PATH:/usr/local/go/bin"; fi
  if ! command -v go >/dev/null 2>&1; then
    log "ERROR: $1 is missing and Go is not installed."
    log "Fix: install Go >= 1.26 (https://go.dev/dl) so hack/ can build it, or point KUBEBUILDER_ASSETS"
    log "     (or TEST_ASSET_KUBE_APISERVER / TEST_ASSET_ETCD / TEST_ASSET_KUBECTL) at prebuilt binaries."
    exit 1
  fi
}

build_k8s() { # builds kube-apiserver and kubectl from k8s.io/kubernetes in a wrapper module
  need_go "kube-apiserver/kubectl"
  local minor=${K8S_VERSION#v1.}
  local staging_version="v0.$minor"
  local mod="$CACHE/src/k8s-$K8S_VERSION"
  mkdir -p "$mod"
  log "building kube-apiserver and kubectl $K8S_VERSION from the Go module proxy (first time: ~10-20 min on 2 cores)"
  # The staging repos are replaced by ./staging in k8s.io/kubernetes' own go.mod; a consumer must
  # repeat every replace with the published version (k8s.io/<staging> v0.X.Y).
  local gomod_src
  gomod_src=$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module modelrollout.local/k8sbuild"
    echo
    echo "go 1.26.0"
    echo
    grep '^godebug' "$gomod_src" || true
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod_src"
    echo ")"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$mod" && log "resolving modules (go mod tidy)" && go mod tidy -e >/dev/null 2>"$mod/tidy.log" || { cat "$mod/tidy.log" >&2; exit 1; })
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*} -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  for cmd in kube-apiserver kubectl; do
    if [ ! -x "$BIN/$cmd" ]; then
      log "go build $cmd (progress: compiled packages are listed in $mod/build-$cmd.log)"
      (cd "$mod" && go build -v -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" 2>"$mod/build-$cmd.log") || { tail -30 "$mod/build-$cmd.log" >&2; exit 1; }
      mv "$BIN/$cmd.tmp" "$BIN/$cmd"
      log "built $BIN/$cmd"
    fi
  done
}

build_etcd() {
  need_go "etcd"
  local mod="$CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  log "building etcd $ETCD_VERSION from the Go module proxy"
  cat >"$mod/go.mod" <<GOMOD
module modelrollout.local/etcdbuild

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$mod" && go mod tidy -e >/dev/null 2>"$mod/tidy.log" || { cat "$mod/tidy.log" >&2; exit 1; })
  (cd "$mod" && go build -v -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 2>"$mod/build.log") || { tail -30 "$mod/build.log" >&2; exit 1; }
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  log "built $BIN/etcd"
}

# Waits for a backgrounded `go build`/`go install -v 2>buildlog` (pid $1, called $2), logging its
# progress every 30 s; on failure prints the log's tail, removes $4 (its scratch dir) and exits.
wait_go_build() {
  local pid=$1 name=$2 buildlog=$3 scratch=$4 start=$5 next=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ "$SECONDS" -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
      next=$((next + 30))
      log "$name: $(grep -c '^go: downloading' "$buildlog" || true) modules downloaded, $(grep -vc '^go: ' "$buildlog" || true) packages compiled ($((SECONDS - start)) s)"
    fi
  done
  wait "$pid" || { tail -30 "$buildlog" >&2; rm -rf "$scratch"; exit 1; }
}

# A wrapper module in $1 that requires module $2 at $3 (`go install pkg@version` refuses a go.mod
# with replace or exclude directives): the module's own replace and exclude directives, repeated,
# give its build list.
wrapper_module() {
  local dir=$1 module=$2 version=$3 gomod_src
  gomod_src=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    printf 'module modelrollout.local/wrapper\n\ngo 1.26.0\n\nrequire %s %s\n\n' "$module" "$version"
    awk '/^(replace|exclude)/ { block = ($0 ~ /\($/); print; next } block { print; if ($0 ~ /^\)/) block = 0 }' "$gomod_src"
  } >"$dir/go.mod"
}

# Prometheus for a machine without Debian's package (not root, or no apt-get; see
# hack/env/prerequisites.ts): cmd/prometheus from the Go module proxy, where module v0.3XX.Y is
# Prometheus 3.XX.Y. Built with remove_all_sd (file and static discovery only: what the local
# environment uses) and without the web UI's assets (the HTTP API is all the project queries).
PROMETHEUS_BIN="$CACHE/bin/prometheus-$PROMETHEUS_VERSION/prometheus"
build_prometheus() {
  need_go "prometheus"
  local minor=${PROMETHEUS_VERSION#v0.}
  minor=${minor%%.*}
  local release="$((minor / 100)).$((minor % 100)).${PROMETHEUS_VERSION##*.}"
  local mod="$CACHE/src/prometheus-$PROMETHEUS_VERSION.$$" buildlog="$CACHE/src/prometheus-$PROMETHEUS_VERSION-build.log"
  local v=github.com/prometheus/common/version start=$SECONDS
  mkdir -p "$mod"
  log "building Prometheus $release (github.com/prometheus/prometheus $PROMETHEUS_VERSION) from the Go module proxy (first time: ~4 min on 2 cores; log: $buildlog)"
  wrapper_module "$mod" github.com/prometheus/prometheus "$PROMETHEUS_VERSION"
  # -mod=mod resolves (and checks against the checksum database) only what this build imports.
  (cd "$mod" && go build -mod=mod -v -trimpath -tags remove_all_sd -o prometheus \
    -ldflags "-s -w -X $v.Version=$release -X $v.Revision=$PROMETHEUS_VERSION -X $v.Branch=HEAD -X $v.BuildUser=modelrollout" \
    github.com/prometheus/prometheus/cmd/prometheus 2>"$buildlog") &
  wait_go_build $! prometheus "$buildlog" "$mod" "$start"
  mv "$mod/prometheus" "$PROMETHEUS_BIN"
  rm -rf "$mod"
  log "built $PROMETHEUS_BIN in $((SECONDS - start)) s"
}

# helm (cmd/helm of helm.sh/helm/v3) for the chart's tests (deploy/chart: lint, template, install
# onto the local apiserver). A wrapper module, like Prometheus': helm's own replace directives,
# repeated, give its build list. Progress every 30 s; ~3-5 min on 2 cores the first time.
HELM_BIN="$CACHE/bin/helm-$HELM_VERSION/helm"
build_helm() {
  need_go "helm"
  local mod="$CACHE/src/helm-$HELM_VERSION.$$" buildlog="$CACHE/src/helm-$HELM_VERSION-build.log" start=$SECONDS
  mkdir -p "$mod" "$(dirname "$HELM_BIN")"
  log "building helm $HELM_VERSION (helm.sh/helm/v3) from the Go module proxy (first time: ~3-5 min on 2 cores; log: $buildlog)"
  wrapper_module "$mod" helm.sh/helm/v3 "$HELM_VERSION"
  local v=helm.sh/helm/v3/internal/version
  (cd "$mod" && CGO_ENABLED=0 go build -mod=mod -v -trimpath -o helm \
    -ldflags "-s -w -X $v.version=$HELM_VERSION -X $v.gitTreeState=clean" helm.sh/helm/v3/cmd/helm 2>"$buildlog") &
  wait_go_build $! helm "$buildlog" "$mod" "$start"
  mv "$mod/helm" "$HELM_BIN"
  rm -rf "$mod"
  log "built $HELM_BIN in $((SECONDS - start)) s"
}

# hack/envoy-side: Envoy's side of ext_proc for the picker's tests (its package exchange, written
# against the Go types go-control-plane generates from Envoy's API), and bench/loadgen:
# bench/picker's load generator, which plays Envoy with the same package (its go.mod replaces
# modelrollout.local/envoy-side with ../../hack/envoy-side). Built together, cached under one hash
# of both modules' sources.
ENVOY_SIDE_SRC="$(cd "$(dirname "$0")" && pwd)/envoy-side"
LOADGEN_SRC="$(cd "$(dirname "$0")/.." && pwd)/bench/loadgen"
GO_TOOLS_HASH=$(cd "$ENVOY_SIDE_SRC/../.." && find hack/envoy-side bench/loadgen -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-12)
ENVOY_SIDE="$CACHE/bin/envoy-side-$GO_TOOLS_HASH"
LOADGEN="$CACHE/bin/loadgen-$GO_TOOLS_HASH"
build_envoy_side() {
  need_go "envoy-side"
  log "building hack/envoy-side and bench/loadgen (go-control-plane, grpc-go) from the Go module proxy (first time: ~1 min)"
  local src out tmp # builds of their own: two builds at once do not share a file
  for src in "$ENVOY_SIDE_SRC:$ENVOY_SIDE" "$LOADGEN_SRC:$LOADGEN"; do
    out=${src#*:} && src=${src%%:*} && tmp="$out.$$.tmp"
    (cd "$src" && go build -trimpath -o "$tmp" . 2>"$CACHE/envoy-side-build.log") || { tail -30 "$CACHE/envoy-side-build.log" >&2; exit 1; }
    mv "$tmp" "$out"
    log "built $out"
  done
}

# llm-d-inference-sim: the upstream vLLM simulator, the model server of the local environment,
# the tests, the benchmarks and the demo. The Go module proxy refuses github.com/llm-d/*, so its
# exact source is kept in the `shared` folder beside the repo (shared/upstream-src/SOURCES.md;
# MODELROLLOUT_SHARED moves it). Cached under the tarball's sha256; LLM_D_INFERENCE_SIM names a
# prebuilt binary instead.
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${MODELROLLOUT_SHARED:-$(dirname "$REPO_ROOT")/shared}"
SIM_TARBALL="$SHARED/upstream-src/llm-d-inference-sim-eec055a.tar.gz"
sim_binary() { # -> the cache path of the simulator built from SIM_TARBALL (empty if there is no tarball)
  if [ -n "${LLM_D_INFERENCE_SIM:-}" ] && [ -x "$LLM_D_INFERENCE_SIM" ]; then echo "$LLM_D_INFERENCE_SIM"; return; fi
  if [ -f "$SIM_TARBALL" ]; then echo "$CACHE/bin/llm-d-inference-sim-$(sha256sum "$SIM_TARBALL" | cut -c1-12)"; fi
}
preflight_sim() { # for --check: what the simulator's build would lack, before any build starts
  if [ ! -f "$SIM_TARBALL" ]; then
    echo "problem=llm-d-inference-sim's source $SIM_TARBALL is missing | fix: put the shared/ folder beside the repo (or set MODELROLLOUT_SHARED to it), or set LLM_D_INFERENCE_SIM to a prebuilt binary"
  fi
}
build_sim() {
  if [ ! -f "$SIM_TARBALL" ]; then
    log "ERROR: llm-d-inference-sim's source is missing: $SIM_TARBALL"
    log "Fix: put the shared/ folder beside the repo (or set MODELROLLOUT_SHARED to it), or set"
    log "     LLM_D_INFERENCE_SIM to a prebuilt llm-d-inference-sim binary."
    exit 1
  fi
  need_go "llm-d-inference-sim"
  local out work
  out=$(sim_binary)
  work="$CACHE/src/$(basename "$out")"
  log "building llm-d-inference-sim from $SIM_TARBALL (first time: ~5 min on 2 cores; progress: compiled packages are listed in $work.log)"
  rm -rf "$work" && mkdir -p "$work"
  tar -xzf "$SIM_TARBALL" -C "$work"
  # Its one llm-d dependency (llm-d-router) comes from shared/upstream-src/goproxy, checked
  # against the simulator's go.sum; everything else from the Go module proxy.
  (cd "$work/llm-d-inference-sim" &&
    GOPROXY="file://$SHARED/upstream-src/goproxy,$(go env GOPROXY)" GONOSUMDB=github.com/llm-d \
      CGO_ENABLED=0 go build -v -trimpath -o "$out.$$.tmp" ./cmd/llm-d-inference-sim >"$work.log" 2>&1) ||
    { tail -30 "$work.log" >&2; exit 1; }
  mv "$out.$$.tmp" "$out"
  rm -rf "$work"
  log "built $out"
}

# The upstream endpoint picker: sigs.k8s.io/gateway-api-inference-extension cmd/epp, whose last
# release is v1.5.0 (later versions moved it to llm-d-router). It watches v1
# inference.networking.k8s.io InferencePools; the local gateway calls it over ext_proc like Envoy.
# Its go.mod has no replace directives, so `go install pkg@version` builds it as released.
EPP_VERSION="${EPP_VERSION:-v1.5.0}"
EPP_BIN="$CACHE/bin/epp-$EPP_VERSION/epp"
build_epp() {
  need_go "epp (the upstream endpoint picker)"
  local gobin="$CACHE/src/epp-$EPP_VERSION.$$" buildlog="$CACHE/src/epp-$EPP_VERSION-build.log" start=$SECONDS
  mkdir -p "$gobin" "$(dirname "$EPP_BIN")"
  log "building the upstream endpoint picker (sigs.k8s.io/gateway-api-inference-extension/cmd/epp $EPP_VERSION) from the Go module proxy (first time: ~6 min on 2 cores; log: $buildlog)"
  (GOBIN="$gobin" go install -v -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/gateway-api-inference-extension/cmd/epp@$EPP_VERSION" 2>"$buildlog") &
  wait_go_build $! epp "$buildlog" "$gobin" "$start"
  mv "$gobin/epp" "$EPP_BIN"
  rm -rf "$gobin"
  log "built $EPP_BIN in $((SECONDS - start)) s"
}

# The lightweight reference picker of the same project, cmd/lwepp (v1.6.2: round-robin over the
# pool's ready pods, nothing else), for bench/picker's side-by-side part. Its go.mod has no replace
# directives either, so `go install pkg@version` builds it as released. Flags to serve a pool:
# --pool-name, --pool-namespace, --grpc-port, --grpc-health-port, --metrics-port,
# --secure-serving=false (TLS is on by default); the pods' port comes from the pool's targetPorts.
LWEPP_VERSION="${LWEPP_VERSION:-v1.6.2}"
LWEPP_BIN="$CACHE/bin/lwepp-$LWEPP_VERSION/lwepp"
build_lwepp() {
  need_go "lwepp (the upstream lightweight reference picker)"
  local gobin="$CACHE/src/lwepp-$LWEPP_VERSION.$$" buildlog="$CACHE/src/lwepp-$LWEPP_VERSION-build.log" start=$SECONDS
  mkdir -p "$gobin" "$(dirname "$LWEPP_BIN")"
  log "building the upstream lightweight picker (sigs.k8s.io/gateway-api-inference-extension/cmd/lwepp $LWEPP_VERSION) from the Go module proxy (first time: ~3 min on 2 cores; log: $buildlog)"
  (GOBIN="$gobin" CGO_ENABLED=0 go install -v -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/gateway-api-inference-extension/cmd/lwepp@$LWEPP_VERSION" 2>"$buildlog") &
  wait_go_build $! lwepp "$buildlog" "$gobin" "$start"
  mv "$gobin/lwepp" "$LWEPP_BIN"
  rm -rf "$gobin"
  log "built $LWEPP_BIN in $((SECONDS - start)) s"
}

case "${1:-}" in
  "") ;;
  prometheus)
    mkdir -p "$(dirname "$PROMETHEUS_BIN")"
    if [ ! -x "$PROMETHEUS_BIN" ]; then build_prometheus; fi
    echo "prometheus=$PROMETHEUS_BIN"
    exit 0
    ;;
  --check) # no build_X builds: the lines below name what is there and what would be built. A
    # build's preflight_X, if defined, runs instead and prints `problem=<what> | fix: <fix>` for
    # each thing that build would lack (hack/env/prerequisites.ts reports them before any build).
    echo "prometheus=$PROMETHEUS_BIN"
    for f in $(declare -F | awk '$3 ~ /^build_/ { print $3 }'); do
      if declare -F "preflight_${f#build_}" >/dev/null; then eval "$f() { preflight_${f#build_}; }"; else eval "$f() { :; }"; fi
    done
    ;;
  *)
    log "usage: build-binaries.sh [prometheus | --check]"
    exit 2
    ;;
esac
apiserver=$(asset kube-apiserver TEST_ASSET_KUBE_APISERVER)
kubectl=$(asset kubectl TEST_ASSET_KUBECTL)
etcd=$(asset etcd TEST_ASSET_ETCD)
if [ ! -x "$ENVOY_SIDE" ] || [ ! -x "$LOADGEN" ]; then build_envoy_side; fi
sim=$(sim_binary)
if [ -z "$sim" ] || [ ! -x "$sim" ]; then build_sim; sim=$(sim_binary); fi
if [ -z "$apiserver" ] || [ -z "$kubectl" ]; then build_k8s; fi
if [ -z "$etcd" ]; then build_etcd; fi
if [ ! -x "$HELM_BIN" ]; then build_helm; fi
if [ ! -x "$EPP_BIN" ]; then build_epp; fi
if [ ! -x "$LWEPP_BIN" ]; then build_lwepp; fi
apiserver=$(asset kube-apiserver TEST_ASSET_KUBE_APISERVER)
kubectl=$(asset kubectl TEST_ASSET_KUBECTL)
etcd=$(asset etcd TEST_ASSET_ETCD)
# Machine-readable result for hack/ TypeScript: one line per binary.
echo "kube-apiserver=$apiserver"
echo "kubectl=$kubectl"
echo "etcd=$etcd"
echo "envoy-side=$ENVOY_SIDE"
echo "loadgen=$LOADGEN"
echo "llm-d-inference-sim=$sim"
echo "helm=$HELM_BIN"
echo "epp=$EPP_BIN"
echo "lwepp=$LWEPP_BIN"
