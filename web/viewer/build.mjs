// Bundles the viewer into one folder the gateway serves (scripts/build-viewer runs this):
//   node build.mjs OUT_DIR
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error("usage: node build.mjs OUT_DIR");
  process.exit(2);
}
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "viewer"), { recursive: true });
for (const [entry, name] of [["src/main.js", "viewer.js"], ["src/docs.js", "docs.js"]]) {
  await build({
    entryPoints: [join(here, entry)], bundle: true, minify: true, sourcemap: true,
    format: "iife", target: ["es2020"], outfile: join(out, "viewer", name),
    loader: { ".proto": "text" }, logLevel: "warning",
  });
}
copyFileSync(join(here, "viewer.css"), join(out, "viewer", "viewer.css"));
copyFileSync(join(here, "index.html"), join(out, "index.html"));
copyFileSync(join(here, "docs.html"), join(out, "docs.html"));
console.log(`build-viewer: ${out}`);
