import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { buildImageTree, parseDockerfile } from "./image-tree";

describe("parseDockerfile", () => {
  it("joins continued lines, drops comments (also inside a continuation) and blank lines", () => {
    const text = [
      "# a comment",
      "FROM node:20 AS build",
      "",
      "RUN echo one \\",
      "# between continued lines",
      "      two",
      'ENTRYPOINT ["node", "x.js"]',
    ].join("\n");
    expect(parseDockerfile(text)).toEqual([
      { op: "FROM", args: "node:20 AS build", line: 2 },
      { op: "RUN", args: "echo one        two", line: 4 },
      { op: "ENTRYPOINT", args: '["node", "x.js"]', line: 7 },
    ]);
  });
});

describe("buildImageTree", () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "image-tree-"))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function context(files: Record<string, string>): string {
    const ctx = path.join(dir, "context");
    for (const [name, content] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(ctx, name)), { recursive: true });
      fs.writeFileSync(path.join(ctx, name), content);
    }
    return ctx;
  }

  it("copies as Docker does, runs RUN lines in WORKDIR with ENV, and returns the last stage", async () => {
    const ctx = context({
      "a.txt": "A",
      "b.txt": "B",
      "src/one.txt": "1",
      "src/sub/two.txt": "2",
      Dockerfile: [
        "FROM base AS build",
        "WORKDIR /app",
        "COPY src ./src",
        "ENV GREETING=hello",
        'RUN cat src/one.txt src/sub/two.txt > out.txt && printf "$GREETING" >> out.txt',
        "FROM base",
        "WORKDIR /srv",
        "COPY a.txt b.txt ./",
        "COPY src/one.txt .",
        "COPY --from=build /app/out.txt ./built/out.txt",
        "ENV MODE=production",
        "USER node",
        'ENTRYPOINT ["node", "main.js"]',
        'CMD ["--help"]',
      ].join("\n"),
    });
    const lines: string[] = [];
    const tree = await buildImageTree(path.join(ctx, "Dockerfile"), ctx, path.join(dir, "out"), l =>
      lines.push(l),
    );
    // A directory's contents go to the destination (not the directory itself).
    expect(fs.readdirSync(path.join(dir, "out", "stage-0", "app", "src")).sort()).toEqual([
      "one.txt",
      "sub",
    ]);
    expect(tree.workdir).toBe(path.join(tree.root, "srv"));
    expect(fs.readFileSync(path.join(tree.workdir, "a.txt"), "utf8")).toBe("A");
    expect(fs.readFileSync(path.join(tree.workdir, "b.txt"), "utf8")).toBe("B");
    // A file copied to an existing directory lands inside it.
    expect(fs.readFileSync(path.join(tree.workdir, "one.txt"), "utf8")).toBe("1");
    expect(fs.readFileSync(path.join(tree.workdir, "built", "out.txt"), "utf8")).toBe("12hello");
    expect(tree.entrypoint).toEqual(["node", "main.js"]);
    expect(tree.cmd).toEqual(["--help"]);
    expect(tree.env).toEqual({ MODE: "production" });
    expect(lines.some(l => l.startsWith("RUN cat"))).toBe(true);
  });

  it("names the line of a failing RUN, a missing source and an unsupported instruction", async () => {
    const build = (lines: string[]) => {
      const ctx = context({ Dockerfile: lines.join("\n") });
      return buildImageTree(path.join(ctx, "Dockerfile"), ctx, path.join(dir, "out"));
    };
    await expect(build(["FROM base", "RUN echo broken >&2; exit 3"])).rejects.toThrow(
      /Dockerfile line 2: RUN .* failed \(exit 3\):\nbroken/,
    );
    await expect(build(["FROM base", "COPY missing.txt ./"])).rejects.toThrow(
      "Dockerfile line 2: COPY missing.txt: no such file",
    );
    await expect(build(["FROM base", "COPY Dockerfile Dockerfile dest"])).rejects.toThrow(
      "Dockerfile line 2: COPY with several sources needs a destination ending in /",
    );
    await expect(build(["FROM base", 'ENV A="x y"'])).rejects.toThrow(
      "Dockerfile line 2: ENV with quotes or $ is not supported here",
    );
    await expect(build(["FROM base AS one", "FROM one"])).rejects.toThrow(
      "Dockerfile line 2: FROM one: flags and earlier stages as a base are not supported here",
    );
    await expect(build(["FROM base", "RUN true \\"])).rejects.toThrow(
      "Dockerfile line 2: the file ends inside a continued line",
    );
    await expect(build(["FROM base", "HEALTHCHECK NONE"])).rejects.toThrow(
      "Dockerfile line 2: HEALTHCHECK is not supported without a Docker engine",
    );
    await expect(build(["FROM base", "ENTRYPOINT node main.js"])).rejects.toThrow(
      "Dockerfile line 2: ENTRYPOINT must be a JSON array (exec form)",
    );
  });
});
