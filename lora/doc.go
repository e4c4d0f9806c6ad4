// Package lora owns LoRA adapters: configuration, PEFT-style initialisation, PEFT-compatible adapter files (adapter_config.json, adapter_model.safetensors), merge and unmerge into base weights, AdamW and the linear warm-up schedule.
//
// An Adapter holds one autograd.LoRA per adapted (layer, module), with
// parameters named by their PEFT tensor names; Adapter.Adapters feeds
// llama.Model.ForwardTrain. AdamW reproduces torch.optim.AdamW and
// LinearSchedule transformers' get_linear_schedule_with_warmup; the parity
// test trains against internal/ref/train_ref.py (PyTorch).
//
// lora depends on llama, autograd, engine and kernels; it knows nothing of word pairs or the TLI method.
package lora
