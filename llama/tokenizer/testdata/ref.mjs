// ref.mjs produces reference token ids with @lenml/tokenizers (a JavaScript
// port of Hugging Face tokenizers) for the Go parity tests.
//
// usage: node ref.mjs NODE_MODULES < request.json > answer.json
//
// request: {"jobs": [{"name": "...", "tokenizer": "path/tokenizer.json",
//   "config": "path/tokenizer_config.json", "override": {"FIELD": value} | null,
//   "texts": ["..."]}]}
// (override replaces top-level fields of tokenizer.json, e.g. post_processor)
// answer: {"NAME": {"ids": [[...]], "plain": [[...]], "decoded": ["..."],
//   "decoded_skip": ["..."]}} where ids are encoded with special tokens,
// plain without, and decoded/decoded_skip decode ids (without clean-up).
// With "split_texts" the answer also has "split": {"llama3": [[pieces]],
// "qwen2": [[pieces]], "gpt2": [[pieces]], "bloom": [[matches]]}, the
// matches of the pre-tokenizer regexes; with "normalize_texts" it has "normalize":
// {"NFC": ["..."], "NFD": ..., "NFKC": ..., "NFKD": ...}, the texts in the
// four Unicode normalisation forms (String.prototype.normalize).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const lib = await import(
  pathToFileURL(join(modules, "@lenml", "tokenizers", "dist", "main.mjs")).href
);
const req = JSON.parse(readFileSync(0, "utf8"));
const out = {};
for (const job of req.jobs ?? []) {
  const tokenizerJSON = JSON.parse(readFileSync(job.tokenizer, "utf8"));
  const tokenizerConfig = JSON.parse(readFileSync(job.config, "utf8"));
  Object.assign(tokenizerJSON, job.override ?? {});
  const tok = lib.TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  const res = { ids: [], plain: [], decoded: [], decoded_skip: [] };
  for (const text of job.texts) {
    const ids = tok.encode(text);
    res.ids.push(ids);
    res.plain.push(tok.encode(text, { add_special_tokens: false }));
    const dec = (skip) =>
      ids.length === 0
        ? ""
        : tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });
    res.decoded.push(dec(false));
    res.decoded_skip.push(dec(true));
  }
  out[job.name] = res;
}
// The pre-tokenizer regexes alone, with JavaScript's engine (which has
// look-ahead): the Llama 3 and Qwen2 patterns with their (?i:...) group
// spelt out, as @lenml does, and the GPT-2 pattern of the ByteLevel
// pre-tokenizer.
const patterns = {
  llama3:
    /(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu,
  qwen2:
    /(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu,
  gpt2: /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu,
  // BLOOM's  ?[^(\s|[.,!?…。，、।۔،])]+ as Oniguruma reads it (a nested
  // class; '(', '|' and ')' literal; \s the White_Space property).
  bloom: / ?[^\p{White_Space}()|.,!?…。，、।۔،]+/gu,
};
out.split = {};
for (const [name, re] of Object.entries(patterns)) {
  out.split[name] = (req.split_texts ?? []).map((t) => t.match(re) ?? []);
}
out.normalize = {};
for (const form of ["NFC", "NFD", "NFKC", "NFKD"]) {
  out.normalize[form] = (req.normalize_texts ?? []).map((t) => t.normalize(form));
}
process.stdout.write(JSON.stringify(out));
