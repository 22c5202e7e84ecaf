"""Everything gptlab writes a model into, and the one way to load any of them.

model_folder.py   DIR/model.safetensors + config.json + tokenizer.json
run.py            RUN/checkpoints/step-N/: a model folder plus the training state, atomically
finetuned.py      a fine-tuned folder: a model folder plus task.json, a classifier head, an adapter
load.py           load_model(path): a model folder, a training run or a fine-tuned folder
"""
