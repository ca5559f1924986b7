import * as fs from "node:fs";
import * as path from "node:path";
import {
  chrootCommand,
  contextSources,
  envFromConfig,
  externalBases,
  imageRef,
  inputsDigest,
  projectImages,
  resolveUser,
} from "./plan";

const repoRoot = path.resolve(__dirname, "..", "..");
const read = (rel: string) => fs.readFileSync(path.join(repoRoot, rel), "utf8");

describe("the project's Dockerfiles", () => {
  it("start from the one base hack/images.ts makes locally", () => {
    for (const { dockerfile } of Object.values(projectImages)) {
      expect(externalBases(read(dockerfile))).toEqual(["node:20-bookworm-slim"]);
    }
  });

  it("copy named files of the context, so the cache key covers exactly what is built", () => {
    expect(contextSources(read("picker/Dockerfile"))).toEqual([
      "capabilities/api",
      "package-lock.json",
      "package.json",
      "picker",
      "picker/proto",
      "tsconfig.json",
    ]);
    expect(contextSources(read("Dockerfile"))).toEqual(["package-lock.json", "package.json"]);
  });
});

describe("externalBases", () => {
  it("leaves out earlier stages and flags, keeps each outside image once", () => {
    const text = [
      "FROM --platform=linux/amd64 node:20 AS build",
      "RUN true",
      "FROM build AS test",
      "FROM Build",
      "FROM debian:bookworm",
      "FROM node:20",
    ].join("\n");
    expect(externalBases(text)).toEqual(["node:20", "debian:bookworm"]);
  });
});

describe("contextSources", () => {
  it("joins continued lines, skips comments and --from copies, normalizes paths", () => {
    const text = [
      "FROM x AS b",
      "# COPY ignored ./",
      "COPY --chown=1:1 a.json \\",
      "  # a comment inside",
      "  ./dir/ /dst/",
      "COPY --from=b /app/out ./out",
      "ADD z ./",
    ].join("\n");
    expect(contextSources(text)).toEqual(["a.json", "dir", "z"]);
  });

  it("refuses wildcards and paths outside the context, naming the line and the fix", () => {
    expect(() => contextSources("FROM x\nCOPY *.json ./")).toThrow(
      /Dockerfile line 2: COPY \*\.json: name files inside the build context without wildcards/,
    );
    expect(() => contextSources("FROM x\n\nADD ../secret ./")).toThrow(/line 3: ADD \.\.\/secret/);
    expect(() => contextSources("FROM x\nCOPY only")).toThrow(/line 2: COPY needs a source/);
    expect(() => contextSources("FROM x\nCOPY a \\")).toThrow(/ends inside a continued line/);
  });
});

describe("imageRef", () => {
  it("is ghcr.io/modelrollout/<name>:<version> unless the environment overrides it", () => {
    expect(imageRef("picker", "0.1.0", {})).toBe("ghcr.io/modelrollout/picker:0.1.0");
    expect(imageRef("operator", "0.1.0", { MODELROLLOUT_OPERATOR_IMAGE: " " })).toBe(
      "ghcr.io/modelrollout/operator:0.1.0",
    );
    expect(
      imageRef("operator", "0.1.0", { MODELROLLOUT_OPERATOR_IMAGE: "registry.local:5000/op:dev" }),
    ).toBe("registry.local:5000/op:dev");
  });

  it("refuses an override that is not an image reference, naming the variable", () => {
    expect(() => imageRef("picker", "1", { MODELROLLOUT_PICKER_IMAGE: "Has Spaces" })).toThrow(
      /MODELROLLOUT_PICKER_IMAGE=Has Spaces is not an image reference: use e\.g\./,
    );
    expect(() => imageRef("picker", "1", { MODELROLLOUT_PICKER_IMAGE: "repo/x:" })).toThrow(
      /not an image reference/,
    );
  });
});

describe("inputsDigest", () => {
  it("does not depend on the order of the inputs, and changes with any of them", () => {
    const a = inputsDigest({ "file:a": "1", "file:b": "2" });
    expect(inputsDigest({ "file:b": "2", "file:a": "1" })).toBe(a);
    expect(inputsDigest({ "file:a": "1", "file:b": "3" })).not.toBe(a);
    expect(inputsDigest({ "file:a": "1", "file:c": "2" })).not.toBe(a);
    // Key and value are separated: moving a character across them is another input.
    expect(inputsDigest({ ab: "c" })).not.toBe(inputsDigest({ a: "bc" }));
  });
});

describe("resolveUser", () => {
  const passwd = "root:x:0:0:root:/root:/bin/bash\nnode:x:1000:1000::/home/node:/bin/bash\n";
  const group = "root:x:0:\nnode:x:1000:\nstaff:x:50:\n";

  it("reads names, numbers and groups as a container runtime does", () => {
    expect(resolveUser("", passwd, group)).toEqual({ uid: 0, gid: 0, home: "/root" });
    expect(resolveUser("node", passwd, group)).toEqual({
      uid: 1000,
      gid: 1000,
      home: "/home/node",
    });
    expect(resolveUser("node:staff", passwd, group)).toEqual({
      uid: 1000,
      gid: 50,
      home: "/home/node",
    });
    // Pepr's 65532 has no passwd entry in the image: numbers need none.
    expect(resolveUser("65532:65532", passwd, group)).toEqual({
      uid: 65532,
      gid: 65532,
      home: "/",
    });
    expect(resolveUser("1000", passwd, group).home).toBe("/home/node");
  });

  it("refuses names the image does not know", () => {
    expect(() => resolveUser("app", passwd, group)).toThrow(
      /'app' is not in the image's \/etc\/passwd/,
    );
    expect(() => resolveUser("node:wheel", passwd, group)).toThrow(/group 'wheel'/);
  });
});

describe("chrootCommand", () => {
  const run = {
    root: "/var/lib/containers/x/merged",
    uid: 1000,
    gid: 1000,
    workdir: "/app",
    env: { PATH: "/usr/local/bin:/usr/bin", NODE_ENV: "production" },
    argv: ["node", "dist/picker.cjs", "--pool", "a b"],
  };

  it("mounts /proc and /dev privately, drops to the user and runs argv with only the image's env", () => {
    const { command, args } = chrootCommand(run);
    expect(command).toBe("unshare");
    expect(args.slice(0, 4)).toEqual(["--mount", "--propagation", "private", "--"]);
    const chroot = args.indexOf("chroot");
    expect(args.slice(chroot)).toEqual([
      "chroot",
      "--userspec=1000:1000",
      "--groups=",
      run.root,
      "/usr/bin/env",
      "-i",
      "-C",
      "/app",
      "PATH=/usr/local/bin:/usr/bin",
      "NODE_ENV=production",
      "node",
      "dist/picker.cjs",
      "--pool",
      "a b",
    ]);
    // The root reaches the shell as an argument, never inside the script's text.
    expect(args[args.indexOf("-c") + 1]).not.toContain(run.root);
    expect(args[args.indexOf("-c") + 3]).toBe(run.root);
  });

  it("refuses a relative root and an empty command", () => {
    expect(() => chrootCommand({ ...run, root: "merged" })).toThrow(/must be absolute/);
    expect(() => chrootCommand({ ...run, argv: [] })).toThrow(/no ENTRYPOINT or CMD/);
  });
});

describe("envFromConfig", () => {
  it("splits at the first =", () => {
    expect(envFromConfig(["A=1", "B=x=y", "broken", "=v"])).toEqual({ A: "1", B: "x=y" });
    expect(envFromConfig(null)).toEqual({});
  });
});
