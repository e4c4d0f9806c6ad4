// Package tokenizer reads Hugging Face tokenizer.json files (with the
// tokenizer_config.json beside them) and turns text into the same token ids
// as the Hugging Face tokenizers library and transformers' AutoTokenizer.
//
// Two families are supported, which between them cover the Llama, Qwen,
// Gemma and BLOOM checkpoints:
//
//   - byte-level BPE (Llama 3, Qwen2, Qwen2.5 and Qwen3, BLOOM and BLOOMZ,
//     GPT-2 style): the Split pre-tokenizers of Llama 3 and of Qwen (the
//     same pattern with single digits; both hand-written, because their
//     regexes need look-ahead) and of BLOOM (hand-written too: its nested
//     character class is read as Oniguruma reads it, every character but
//     white space, '(', '|', ')' and . , ! ? … 。 ， 、 । ۔ ،), the ByteLevel
//     pre-tokenizer, merges in either serialisation, ignore_merges;
//   - SentencePiece-style BPE (Llama 2, Mistral, Gemma 1 to 3): Prepend,
//     Replace and Unicode normalizers, the Metaspace pre-tokenizer, Split
//     on a string, byte_fallback, <unk> and fuse_unk.
//
// Added tokens are matched before normalisation (lstrip, rstrip, single_word
// and normalized are honoured); TemplateProcessing, ByteLevel and Sequence
// post-processors add the special tokens; for the LlamaTokenizer(Fast),
// CodeLlamaTokenizer(Fast) and GemmaTokenizer(Fast) classes add_bos_token and
// add_eos_token of tokenizer_config.json rebuild the template as transformers
// 4.x does (transformers 5 also rebuilds it for other classes when the keys
// are present; this package does not); add_prefix_space true, which makes
// BloomTokenizerFast rewrite the pre-tokenizer, is refused. Any component
// type this package does not implement is an error that names the type and
// the file: a tokenizer is loaded exactly or not at all.
//
// Where the JavaScript port used by the parity tests (@lenml/tokenizers)
// differs from the Rust library, this package follows Rust: \s means the
// Unicode White_Space property (U+0085 is space, U+FEFF is not), the
// case-insensitive contractions also match U+017F for 's', BLOOM's pattern
// leaves '(', '|' and ')' out of words (the port rewrites it and keeps
// them), and invalid UTF-8 met by the ByteFallback decoder becomes one
// U+FFFD per byte. The hand-written patterns are also checked against
// Oniguruma itself when libonig is installed.
//
// The Unicode normalizers follow UAX #15 as both references do, without
// the stream-safe limit of golang.org/x/text/unicode/norm, whose character
// data they use (Unicode 15.0: characters assigned since are left as they
// are).
//
// Invalid UTF-8 given to Encode is first replaced, one U+FFFD per maximal
// ill-formed subsequence (as Python's bytes.decode(errors="replace") and
// WHATWG do), so Decode(Encode(s)) returns that repaired string. Decode does
// not apply transformers' clean_up_tokenization_spaces, so that
// Decode(Encode(s)) == s for every valid UTF-8 s.
//
// Files are not trusted: tokenizer.json and tokenizer_config.json are read
// through size limits (MaxFileBytes, MaxConfigBytes), ids must be integers
// below MaxVocab and each id names one token, an added token must have the
// id Hugging Face tokenizers gives it (it numbers the added tokens itself),
// invalid UTF-8 and escapes of unpaired UTF-16 surrogates are refused, and
// the other counts and lengths a file sets are bounded (see the Max
// constants). A file past a limit is refused with one line naming the file,
// the token or component, and what is expected.
//
// EncodeReader encodes a stream of text in bounded memory, cutting it only
// where the ids provably do not change (see cutRules in stream.go), so that
// its ids are exactly those of Encode on the whole text.
//
// A Tokenizer is safe for concurrent use.
package tokenizer
