"""Benchmarks that run as a verb (`gptlab bench ...`), above the code they measure.

generate.py   `gptlab bench generate`: the run (warm-up, interleaved repeats, perplexity)
rows.py       the rows: transformers, each cache, compile, bf16/fp16, int8, speculative, batches
measure.py    time and peak memory of a run, memory bandwidth, weight bytes read per token
report.py     the Markdown table with its limit line, and the plot
"""
