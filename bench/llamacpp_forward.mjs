// Times llama.cpp's forward (the prebuilt binaries of the npm package
// node-llama-cpp: CPU, or its Vulkan build) on GGUF files, for
// bench/forward_llamacpp_test.go and bench/vulkan_test.go.
// Usage: node llamacpp_forward.mjs NODE_MODULES < request.json
// The request is {"models": [paths], "lengths": [token counts], "reps": n,
// "threads": n, "gpu": false or "vulkan"}; the reply is {"seconds": {path:
// {length: [s per rep]}}, "gpu": the backend used, "devices": [names]}.
// Each rep evaluates one sequence of `length` tokens (ids 1..length) from an
// empty context without generating, in one batch, as a prompt is processed.
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const modules = process.argv[2];
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(join(modules, "node-llama-cpp", "dist", "index.js")).href);
const req = JSON.parse(readFileSync(0, "utf8"));
const gpu = req.gpu || false;
const llama = await getLlama({gpu, build: "never", logLevel: LlamaLogLevel.error});
const seconds = {};
for (const path of req.models) {
    const model = await llama.loadModel({modelPath: path, gpuLayers: gpu ? "max" : 0});
    seconds[path] = {};
    for (const n of req.lengths) {
        const context = await model.createContext({contextSize: Math.max(256, 2 * n), batchSize: n, threads: req.threads});
        const seq = context.getSequence();
        const tokens = Array.from({length: n}, (_, i) => 1 + (i % 1000));
        const times = [];
        for (let r = 0; r <= req.reps; r++) { // the first is a warm-up
            await seq.clearHistory();
            const t0 = process.hrtime.bigint();
            await seq.evaluateWithoutGeneratingNewTokens(tokens);
            const s = Number(process.hrtime.bigint() - t0) / 1e9;
            if (r > 0) times.push(s);
        }
        seconds[path][n] = times;
        await context.dispose();
    }
    await model.dispose();
}
const devices = gpu ? await llama.getGpuDeviceNames() : [];
const used = llama.gpu;
await llama.dispose();
process.stdout.write(JSON.stringify({seconds, gpu: used, devices}) + "\n");
