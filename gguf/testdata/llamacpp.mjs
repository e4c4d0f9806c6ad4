// Runs llama.cpp (the prebuilt CPU binaries of the npm package
// node-llama-cpp) on a GGUF file for the gguf package's tests.
// Usage: node llamacpp.mjs NODE_MODULES < request.json
// The request is {"model": path, "tokenize": [strings], "generate":
// [{"tokens": [ids], "n": count, "lora": path (optional GGUF LoRA adapter
// applied with scale 1)}]}; the reply on stdout is {"tokens":
// [[ids] per string], "generated": [[ids] per request], "bos": id|null,
// "eos": id|null, "prependBos": bool}. Tokenizing parses special tokens in
// the text (as Hugging Face tokenizers does) and adds none; generation is
// greedy (temperature 0) from exactly the tokens given.
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const modules = process.argv[2];
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(join(modules, "node-llama-cpp", "dist", "index.js")).href);
const req = JSON.parse(readFileSync(0, "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: req.model, gpuLayers: 0});
const out = {
    tokens: (req.tokenize ?? []).map((s) => Array.from(model.tokenize(s, true))),
    generated: [],
    bos: model.tokens.bos ?? null,
    eos: model.tokens.eos ?? null,
    prependBos: model.tokens.shouldPrependBosToken,
};
for (const g of req.generate ?? []) {
    const context = await model.createContext({contextSize: 256, threads: 2, ...(g.lora ? {lora: g.lora} : {})});
    const seq = context.getSequence();
    const got = [];
    if (g.n > 0) {
        for await (const tok of seq.evaluate(g.tokens, {temperature: 0})) {
            got.push(tok);
            if (got.length >= g.n) break;
        }
    }
    out.generated.push(got);
    await context.dispose();
}
await model.dispose();
await llama.dispose();
process.stdout.write(JSON.stringify(out) + "\n");
