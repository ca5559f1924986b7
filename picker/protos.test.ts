import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadExtProcDefinition, loadPackagedExtProcDefinition } from "./protos";

interface FieldDescriptor {
  name: string;
  number: number;
  type: string;
  typeName: string;
  label: string;
}
interface EnumDescriptor {
  name: string;
  value: { name: string; number: number }[];
}
interface Described {
  format?: string;
  type?: { field?: FieldDescriptor[]; enumType?: EnumDescriptor[] };
}

const ours = (p: string) =>
  p.startsWith("envoy.service.ext_proc.v3.") ||
  p.startsWith("envoy.extensions.filters.http.ext_proc.v3.");

/** Message definitions only (services have no `format`). */
const messages = (def: Record<string, Described>) =>
  Object.keys(def).filter(k => ours(k) && def[k].format !== undefined);

describe("ext_proc proto overlay", () => {
  const packaged = loadPackagedExtProcDefinition() as unknown as Record<string, Described>;
  const overlay = loadExtProcDefinition() as unknown as Record<string, Described>;

  it("keeps every packaged message field and enum value with the same number and type", () => {
    const names = messages(packaged);
    expect(names.length).toBeGreaterThanOrEqual(14);
    for (const name of names) {
      const before = packaged[name].type;
      const after = overlay[name]?.type;
      expect({ name, present: after !== undefined }).toEqual({ name, present: true });
      for (const f of before?.field ?? []) {
        const g = after?.field?.find(x => x.name === f.name);
        expect({
          name,
          field: f.name,
          number: g?.number,
          type: g?.type,
          typeName: g?.typeName,
          label: g?.label,
        }).toEqual({
          name,
          field: f.name,
          number: f.number,
          type: f.type,
          typeName: f.typeName,
          label: f.label,
        });
      }
      for (const e of before?.enumType ?? []) {
        const afterEnum = after?.enumType?.find(x => x.name === e.name);
        for (const v of e.value) {
          expect(afterEnum?.value.find(x => x.name === v.name)?.number).toBe(v.number);
        }
      }
    }
  });

  it("adds exactly the full-duplex wire facts", () => {
    const added: string[] = [];
    for (const name of messages(overlay)) {
      const before = packaged[name]?.type;
      if (!before) {
        added.push(name);
        continue;
      }
      for (const f of overlay[name].type?.field ?? []) {
        if (!before.field?.some(x => x.name === f.name))
          added.push(`${name}.${f.name}=${f.number}`);
      }
      for (const e of overlay[name].type?.enumType ?? []) {
        const beforeEnum = before.enumType?.find(x => x.name === e.name);
        for (const v of e.value) {
          if (!beforeEnum?.value.some(x => x.name === v.name)) {
            added.push(`${name}.${e.name}.${v.name}=${v.number}`);
          }
        }
      }
    }
    expect(added.sort()).toEqual([
      "envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode.FULL_DUPLEX_STREAMED=4",
      "envoy.service.ext_proc.v3.BodyMutation.streamed_response=3",
      "envoy.service.ext_proc.v3.ProcessingRequest.protocol_config=11",
      "envoy.service.ext_proc.v3.ProtocolConfiguration",
      "envoy.service.ext_proc.v3.StreamedBodyResponse",
    ]);
    const streamed = overlay["envoy.service.ext_proc.v3.StreamedBodyResponse"].type?.field;
    expect(streamed?.map(f => [f.name, f.number, f.type])).toEqual([
      ["body", 1, "TYPE_BYTES"],
      ["end_of_stream", 2, "TYPE_BOOL"],
    ]);
  });
});

describe("the generated ext_proc types (picker/generate-protos.sh)", () => {
  it("name every field of the loaded ext_proc messages, the overlay's additions included", () => {
    const overlay = loadExtProcDefinition() as unknown as Record<string, Described>;
    const checked: string[] = [];
    for (const name of messages(overlay)) {
      const path = `${join(__dirname, "generated", ...name.split("."))}.ts`;
      if (!existsSync(path)) continue; // a message the service does not reach
      const text = readFileSync(path, "utf8");
      for (const f of overlay[name].type?.field ?? []) {
        expect([name, f.name, new RegExp(`\\b${f.name}\\?:`).test(text)]).toEqual([
          name,
          f.name,
          true,
        ]);
      }
      checked.push(name);
    }
    expect(checked).toEqual(
      expect.arrayContaining([
        "envoy.service.ext_proc.v3.ProcessingRequest",
        "envoy.service.ext_proc.v3.ProcessingResponse",
        "envoy.service.ext_proc.v3.ProtocolConfiguration",
        "envoy.service.ext_proc.v3.StreamedBodyResponse",
      ]),
    );
  });
});
