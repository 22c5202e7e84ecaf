"""Running a trained model: the decoding loop and what makes it faster.

decode.py        decode_steps: the one decoding loop, a generator every caller shares
generate.py      generate / generate_text: decode_steps run to the end
config.py        GenerationConfig and the finish reasons
sampling.py      the logits processors and the choice of the next token
forward.py       the model side: padding, KV caches, the context window, the compiled step
text_stream.py   tokens -> text as they arrive, stop strings
speculative.py   draft-and-verify greedy decoding
precision.py     the model in bf16/fp16, int8 weights (dynamic quantization)
weight_layout.py fp32 linears stored input-major: a CPU's fastest matrix-vector product
(the decode benchmark, `gptlab bench generate`, lives one floor up in gptlab/bench/)
"""
