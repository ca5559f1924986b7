#!/usr/bin/env bash
# Regenerates generated/modelrollout-v1alpha1.ts from crds/modelrollout.yaml with kubernetes-fluent-client
# (quicktype). Run after every CRD change: `capabilities/modelrollout/generate-types.sh`.
# The generator emits `any` for int-or-string and preserve-unknown fields, so the file gets an
# eslint-disable header; types.ts maps its Date/enum types to what the API really sends (strings).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/capabilities/modelrollout/generated"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && npx kubernetes-fluent-client crd "$root/crds/modelrollout.yaml" "$tmp" >/dev/null)
{
  echo "/* eslint-disable @typescript-eslint/no-explicit-any */"
  grep -v '^ *// eslint-disable-next-line @typescript-eslint/no-explicit-any$' "$tmp/modelrollout-v1alpha1.ts"
} >"$out/modelrollout-v1alpha1.ts"
(cd "$root" && npx prettier --write "$out/modelrollout-v1alpha1.ts" >/dev/null)
echo "wrote $out/modelrollout-v1alpha1.ts"
