"""Fine-tuning a pretrained GPT: classifiers, instruction following, LoRA adapters.

options.py       the settings of a run, per task, loaded like run configs (TOML + key=value)
examples.py      labelled texts and Alpaca examples from files, splits, the pad id
trainable.py     which weights train (head | last-K | all, or LoRA) and the model made trainable
loop.py          the epoch loop shared by both tasks (AdamW, schedule, time budget)
classify.py      GPTClassifier (last real token -> linear head), batches, evaluation
confusion.py     the confusion matrix as table and PNG
instruct.py      the Alpaca template, prompt masking, answer generation
classify_job.py  `gptlab finetune classify` end to end
instruct_job.py  `gptlab finetune instruct` end to end

The LoRA layers live in gptlab.model.lora, the fine-tuned folder in gptlab.checkpoints.finetuned.
"""
