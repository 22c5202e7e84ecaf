"""Everything gptlab writes a model into, and the one way to load any of them.

model_folder.py   DIR/model.safetensors + config.json + tokenizer.json (save_model, load_model_folder)
run.py            RUN/checkpoints/step-N/: a model folder plus the training state, atomically
finetuned.py      a fine-tuned folder: a model folder plus task.json, a classifier head, an adapter
adapter_folder.py what a fine-tuned folder says about itself (task.json, an unmerged adapter)
hf_hub.py         Hugging Face GPT-2 weights by folder or hub name (the one network download)
open.py           open_model(spec): any model a user can name (folders, RUN@N, hf:NAME, preset:NAME)
load.py           load_model(path): the public loader, open_model with the tokenizer optional
"""
