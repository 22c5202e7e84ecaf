"""Running a trained model: the decoding loop and what makes it faster.

generate.py      GenerationConfig, logits processors, streaming, generate / generate_text
speculative.py   draft-and-verify greedy decoding
precision.py     the model in bf16/fp16, int8 weight-only quantization
bench.py         `gptlab bench generate`: every decode path timed side by side
"""
