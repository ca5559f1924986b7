// The ext_proc front door's settings (flags in picker/config.ts).

export type BodyMode = "buffered" | "full-duplex";

export interface ExtProcConfig {
  /** Request body mode assumed when Envoy does not announce it in `protocol_config`. */
  bodyMode: BodyMode;
  /** Largest streamed_response chunk. */
  chunkBytes: number;
  destinationHeader: string;
  metadataNamespace: string;
  /** Extra endpoints appended to the destination as a comma list (0: a single endpoint). */
  fallbackCount: number;
  /** Non-streamed response bodies are kept up to this size to read `usage`. */
  maxResponseBufferBytes: number;
}

export const defaultExtProcConfig: ExtProcConfig = {
  bodyMode: "full-duplex",
  chunkBytes: 62_000,
  destinationHeader: "x-gateway-destination-endpoint",
  metadataNamespace: "envoy.lb",
  fallbackCount: 0,
  maxResponseBufferBytes: 4 << 20,
};
