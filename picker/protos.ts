// Loading of the Envoy ext_proc and gRPC health protos with @grpc/proto-loader.
//
// The Envoy API protos come from @grpc/grpc-js-xds (deps/envoy-api, xds, googleapis,
// protoc-gen-validate). Its 1.14 copy predates full-duplex streaming, so picker/proto holds an
// overlay of two files that adds the missing wire facts. We shadow files by include order
// (proto-loader resolves an import from the first include dir that has it) instead of patching
// the loaded descriptors: proto-loader builds its serializers from protobufjs reflection inside
// loadSync and offers no hook to change types before that, so a patch would have to reach into
// private objects. The overlay is plain text, and protos.test.ts pins that it is a strict superset
// of the packaged files.

import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";

export const EXT_PROC_PROTO = "envoy/service/ext_proc/v3/external_processor.proto";
export const HEALTH_PROTO = "grpc/health/v1/health.proto";

export const loaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

function moduleDir(): string {
  // __dirname exists when this file runs as CommonJS (tsx, jest, the esbuild bundle).
  return typeof __dirname === "string" ? __dirname : process.cwd();
}

/** Directory of the overlay protos: $PICKER_PROTO_DIR, next to this file, or ./picker/proto. */
export function overlayProtoDir(): string {
  const candidates = [
    process.env.PICKER_PROTO_DIR,
    path.join(moduleDir(), "proto"),
    path.join(moduleDir(), "..", "picker", "proto"),
    path.join(process.cwd(), "picker", "proto"),
  ].filter((p): p is string => typeof p === "string" && p !== "");
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, EXT_PROC_PROTO))) return dir;
  }
  throw new Error(`picker protos not found in ${candidates.join(", ")}; set PICKER_PROTO_DIR`);
}

/** Include dirs of the packaged Envoy API protos in @grpc/grpc-js-xds. */
export function envoyProtoDirs(): string[] {
  const require = createRequire(path.join(moduleDir(), "noop.js"));
  let depsDir: string;
  try {
    depsDir = path.join(path.dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
  } catch {
    depsDir = path.join(process.cwd(), "node_modules", "@grpc", "grpc-js-xds", "deps");
  }
  const dirs = ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map(d =>
    path.join(depsDir, d),
  );
  for (const dir of dirs) {
    if (!fs.existsSync(dir)) throw new Error(`Envoy protos missing: ${dir}`);
  }
  return dirs;
}

/** ext_proc with the full-duplex additions (overlay first). */
export function loadExtProcDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(EXT_PROC_PROTO, {
    ...loaderOptions,
    includeDirs: [overlayProtoDir(), ...envoyProtoDirs()],
  });
}

/** ext_proc exactly as packaged in @grpc/grpc-js-xds (no overlay), for comparison and tests. */
export function loadPackagedExtProcDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(EXT_PROC_PROTO, { ...loaderOptions, includeDirs: envoyProtoDirs() });
}

export function loadHealthDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(HEALTH_PROTO, { ...loaderOptions, includeDirs: [overlayProtoDir()] });
}

/**
 * The same protos as protobufjs reflection, resolved as proto-loader resolves them (include dirs
 * in order, field names as in the proto): what extproc/codec compiles its codec from.
 */
export function loadExtProcRoot(): protobuf.Root {
  const includeDirs = [overlayProtoDir(), ...envoyProtoDirs()];
  const root = new protobuf.Root();
  const resolveDefault = root.resolvePath.bind(root);
  root.resolvePath = (origin, target) => {
    if (path.isAbsolute(target)) return target;
    const found = includeDirs.map(dir => path.join(dir, target)).find(p => fs.existsSync(p));
    return found ?? resolveDefault(origin, target);
  };
  root.loadSync(EXT_PROC_PROTO, { keepCase: true });
  root.resolveAll();
  return root;
}
