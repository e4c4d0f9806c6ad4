// Package lora owns LoRA adapters: configuration, PEFT-style initialisation, PEFT-compatible adapter files (adapter_config.json, adapter_model.safetensors), merge and unmerge into base weights, AdamW and the linear warm-up schedule.
//
// lora depends on llama, autograd, engine and kernels; it knows nothing of word pairs or the TLI method.
package lora
