// bench.mjs times @lenml/tokenizers on the prose of BenchmarkEncode, as the
// peer figure for the Go benchmark (run both on the same machine, at the
// same time of day).
//
// usage: node bench.mjs NODE_MODULES < texts.json
// texts.json: {"NAME": "text", ...}; prints "NAME tokens/s" lines.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const lib = await import(
  pathToFileURL(join(modules, "@lenml", "tokenizers", "dist", "main.mjs")).href
);
const dir = join(modules, "@lenml", "tokenizer-llama3", "models");
const tok = lib.TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")),
});
const texts = JSON.parse(readFileSync(0, "utf8"));
for (const [name, text] of Object.entries(texts)) {
  const n = tok.encode(text, { add_special_tokens: false }).length;
  let iters = 0;
  const start = performance.now();
  while (performance.now() - start < 2000) {
    tok.encode(text, { add_special_tokens: false });
    iters++;
  }
  const secs = (performance.now() - start) / 1000;
  console.log(`${name} ${Math.round((n * iters) / secs)} tokens/s`);
}
