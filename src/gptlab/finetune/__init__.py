"""Fine-tuning a pretrained GPT: classifiers, instruction following, LoRA adapters.

datasets.py      labelled texts and Alpaca examples from files, splits, padding
trainable.py     which weights train: head | last-K | all
lora.py          low-rank adapters: add, merge, save and load on their own
loop.py          the epoch loop shared by both tasks (AdamW, schedule, time budget)
classify.py      GPTClassifier (last real token -> linear head), batches, evaluation
confusion.py     the confusion matrix as table and PNG
instruct.py      the Alpaca template, -100 masking, answer generation
checkpoint.py    --init loading and the fine-tuned folder (model folder + task.json + head/adapter)
setup.py         options and model preparation shared by both tasks
run_classify.py  `gptlab finetune classify` end to end
run_instruct.py  `gptlab finetune instruct` end to end
"""
